"""Secrets in what people type: found, and redactable; menu numbers, phones and years are not secrets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.safety import SecretKind, find_secrets, redact


def kinds(text: str) -> list[str]:
    return [s.kind.value for s in find_secrets(text)]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("123456", SecretKind.OTP),
        ("mã OTP của tôi là 482913", SecretKind.OTP),
        ("ma otp 482 913", SecretKind.OTP),
        ("ma xac nhan: 8812", SecretKind.OTP),
        ("passcode 246810", SecretKind.OTP),
        ("code 55213 nhe", SecretKind.OTP),
        ("001234567890", SecretKind.ID_NUMBER),
        ("so cccd cua toi 0791 2345 6789", SecretKind.ID_NUMBER),
        ("số CMND 123456789", SecretKind.ID_NUMBER),
        ("the cua toi 4111 1111 1111 1111", SecretKind.CARD_NUMBER),
        ("4539-1488-0343-6467", SecretKind.CARD_NUMBER),
        ("mật khẩu của tôi là Hoa@1960", SecretKind.PASSWORD),
        ("mk la Minh1990", SecretKind.PASSWORD),
        ("pass: abc123", SecretKind.PASSWORD),
    ],
)
def test_secrets_are_found(text: str, kind: SecretKind) -> None:
    assert kind.value in kinds(text)


@pytest.mark.parametrize(
    "text",
    [
        "1",
        "12",
        "số 2",
        "sinh năm 1960",
        "mà năm 2024 tôi chưa có",  # "mà" (but) is not "mã" (code)
        "sdt cua minh la 0912345678",
        "gọi 156",
        "tôi 70 tuổi",
        "ngày 20/11/2024",
        "500.000đ",
        "mat khau la gi",
        "quên mật khẩu là làm sao",
        "muc 2",
    ],
)
def test_ordinary_numbers_and_questions_are_not_secrets(text: str) -> None:
    assert kinds(text) == []


def test_redact_masks_only_the_secret() -> None:
    assert redact("mã OTP  là 482913 nhé") == "mã OTP là ••• nhé"
    assert redact("the 4111 1111 1111 1111, mk la Hoa@1960") == "the •••, mk la •••"
    assert redact("không có gì") == "không có gì"


@given(st.integers(min_value=0, max_value=99))
def test_a_bare_menu_number_is_never_a_secret(number: int) -> None:
    assert find_secrets(str(number)) == ()
    assert find_secrets(f"{number}.") == ()


@given(st.from_regex(r"0[35789]\d{8}", fullmatch=True))
def test_a_phone_number_alone_is_not_a_secret(phone: str) -> None:
    assert find_secrets(f"so dien thoai cua toi la {phone}") == ()


@given(st.text(max_size=300))
def test_redacted_text_holds_no_secret(text: str) -> None:
    assert find_secrets(redact(text)) == ()
