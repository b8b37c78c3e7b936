"""'Kiểm tra tin nhắn': red flags in a pasted message, explained; never a verdict of safety."""

from __future__ import annotations

import pytest

from flows.catalog import Catalog
from flows.engine import advance
from flows.scam_check import scan
from flows.types import ConversationState, Mode
from tests.helpers import run, tap, text

POLICE = (
    "Cong an thong bao: ban lien quan den vu an rua tien, yeu cau chuyen tien vao tai khoan tam giu "
    "trong 24h, neu khong se bi bat giam. Lien he ngay."
)
BANK = "Vietcombank: Tai khoan cua quy khach bi tam khoa. Xac thuc ngay tai https://vietcombank-xacthuc.top de mo lai."
VNEID = "Bộ Công an yêu cầu cập nhật VNeID mức 2, tải ứng dụng tại vneid-gov.apk.link/cai-dat rồi quét khuôn mặt."
PRIZE = "Chuc mung ban trung thuong xe SH! Nop phi 500k de nhan qua tai bit.ly/3xYz"


def flags(catalog: Catalog, message: str) -> tuple[str, ...]:
    return scan(message, catalog.scam_signals, catalog.router.normalizer)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (POLICE, {"impersonation", "asks_money", "urgency"}),
        (BANK, {"lookalike_domain", "odd_domain", "urgency", "impersonation"}),
        (VNEID, {"app_install", "face_scan", "impersonation", "lookalike_domain"}),
        (PRIZE, {"shortener", "prize", "asks_money"}),
        ("Bam vao example.com de xem", {"link"}),
        ("Ma OTP cua ban la 482913, doc cho nhan vien de xac minh", {"asks_secret"}),
        ("Truy cap dichvucong.gov.vn.xyz de nhan tien ho tro", {"lookalike_domain", "odd_domain", "prize"}),
    ],
)
def test_red_flags_are_found(shipped: Catalog, message: str, expected: set[str]) -> None:
    assert expected <= set(flags(shipped, message))


def test_official_addresses_are_not_called_look_alikes(shipped: Catalog) -> None:
    found = flags(shipped, "Xem huong dan tai https://dichvucong.gov.vn va vneid.gov.vn")
    assert "link" in found  # still: do not tap links in messages
    assert "lookalike_domain" not in found
    assert "odd_domain" not in found


def test_disguised_letters_are_look_alikes(shipped: Catalog) -> None:
    assert "lookalike_domain" in flags(shipped, "vào vnеid.gov.vn.com ngay")  # a Cyrillic "е"


def test_gap_urgency_needs_the_right_diacritics(shipped: Catalog) -> None:
    assert "urgency" in flags(shipped, "Cần xử lý gấp")
    assert "urgency" not in flags(shipped, "Hẹn gặp bạn ở xã")


def test_flags_come_in_content_order_without_repeats(shipped: Catalog) -> None:
    found = flags(shipped, BANK)
    order = list(shipped.scam.flags)
    assert list(found) == sorted(found, key=order.index)
    assert len(set(found)) == len(found)


def test_the_check_explains_each_flag_and_never_says_safe(shipped: Catalog) -> None:
    entered = run(shipped, [text("Kiểm tra tin nhắn")])[-1]
    assert entered.state.scam_check
    assert entered.replies[0].text == shipped.say("scam_check_prompt")
    result = advance(shipped, entered.state, text(BANK))
    findings, footer = (r.text for r in result.replies)
    for flag in flags(shipped, BANK):
        assert shipped.scam.flags[flag].explain in findings
    assert footer == shipped.say("scam_footer")
    assert result.replies[0].buttons == ()
    assert not result.state.scam_check
    assert result.state.offer[0] == "scam_check"
    assert [b.id for b in result.replies[-1].buttons] == ["scam_check", "mod:lua_dao", "menu"]


def test_a_message_with_no_known_sign_is_still_not_called_safe(shipped: Catalog) -> None:
    state = run(shipped, [tap("scam_check")])[-1].state
    result = advance(shipped, state, text("Chao chi, mai 7 gio hop to dan pho o nha van hoa"))
    findings, footer = (r.text for r in result.replies)
    assert findings == shipped.say("scam_none")
    assert "KHÔNG có nghĩa là tin nhắn an toàn" in findings
    assert footer.startswith("Tôi không thể khẳng định một tin nhắn là an toàn")


def test_the_longest_possible_result_fits_in_one_zalo_message_each(shipped: Catalog) -> None:
    signs = [flag.explain for flag in shipped.scam.flags.values()]
    assert len(shipped.say("scam_found", count=len(signs), signs=signs)) <= 2000
    assert len(shipped.say("scam_footer")) <= 2000


def test_the_pasted_message_leaves_no_trace_in_the_state_or_replies(shipped: Catalog) -> None:
    state = run(shipped, [tap("scam_check")])[-1].state
    pasted = "Ma OTP 739184 cua ban. Goi 0987654321 hoac vao vietcombank-xacthuc.top"
    result = advance(shipped, state, text(pasted))
    stored = str(result.state.to_dict()) + "".join(r.text + str(r.buttons) for r in result.replies)
    for piece in ("739184", "0987654321", "vietcombank-xacthuc", "Ma OTP"):
        assert piece not in stored
    assert result.replies[0].text == shipped.say("secret_warning")  # the pasted message held an OTP


def test_commands_still_work_in_scam_check_mode(shipped: Catalog) -> None:
    state = run(shipped, [tap("mod:vneid"), text("kiem tra tin nhan")])[-1].state
    assert state.scam_check
    assert state.mode is Mode.STEP
    back = advance(shipped, state, text("quay lại"))
    assert not back.state.scam_check
    assert back.state.step == "intro"
    assert advance(shipped, state, text("2")).state.mode is Mode.MENU  # [back, menu]
    assert advance(shipped, state, text("/menu")).state.mode is Mode.MENU
    stopped = advance(shipped, state, text("dừng nhận tin"))
    assert stopped.state.subscribed is False


def test_the_anti_scam_module_offers_the_check_on_its_first_and_last_step(shipped: Catalog) -> None:
    first = advance(shipped, ConversationState(), tap("mod:lua_dao"))
    ids = [b.id for b in first.replies[0].buttons]
    assert "scam_check" in ids
    assert ids[-3:] == ["stuck", "back", "menu"]
