"""Reading chat-style Vietnamese and routing it to a module, a command or "out of scope"."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.catalog import Catalog
from flows.explain import describe
from flows.normalize import is_syllable, slash_command
from flows.router import OUT_OF_SCOPE, RouteKind


def words(catalog: Catalog, text: str) -> str:
    return " ".join(catalog.router.normalizer.words(text))


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("e ko dc", "em khong duoc"),
        ("k bit", "khong biet"),
        ("hk hiểu", "khong hieu"),
        ("Đc không", "duoc khong"),
        ("lm j", "lam gi"),
        ("cai vneid ntn", "cai vneid nhu the nao"),
        ("bn tiền", "bao nhieu tien"),
        ("giúp mk vs", "giup minh voi"),
        ("quen mk", "quen mat khau"),
        ("a ơi ad", "anh oi admin"),
        ("dki hoc bdhvs", "dang ky hoc binh dan hoc vu so"),
        ("login dvc", "dang nhap dich vu cong"),
    ],
)
def test_chat_abbreviations_and_english_are_expanded(shipped: Catalog, typed: str, meant: str) -> None:
    assert words(shipped, typed) == meant


def test_typos_and_glued_words_are_read_as_meant(shipped: Catalog) -> None:
    assert words(shipped, "cai vnied") == "cai vneid"
    assert words(shipped, "dichvucong") == "dich vu cong"
    assert words(shipped, "giadinhso") == "gia dinh so"
    assert words(shipped, "Cài VNeID thế nào?") == "cai vneid the nao"


def test_real_words_are_never_corrected(shipped: Catalog) -> None:
    # "lia", "bong" are real syllables: leave them rather than guess.
    assert words(shipped, "bong da") == "bong da"
    assert words(shipped, "nam 2024") == "nam 2024"


def test_vietnamese_syllable_shape() -> None:
    assert all(is_syllable(w) for w in ("nghieng", "quay", "gi", "a", "khuyen", "truong"))
    assert not any(is_syllable(w) for w in ("vneid", "cogn", "dichvucong", "xyz", "bdhvs"))


def test_slash_commands_with_or_without_a_bot_name() -> None:
    assert slash_command("/menu") == "/menu"
    assert slash_command(" /DUNG@hocvuso_bot ") == "/dung"
    assert slash_command("/menu nhe") is None
    assert slash_command("menu") is None


@pytest.mark.parametrize(
    ("text", "destination"),
    [
        ("cai vneid ntn", "mod:vneid"),
        ("bi goi dien tu xung cong an", "mod:lua_dao"),
        ("dki hoc bdhvs o dau", "mod:binh_dan_hoc_vu_so"),
        ("nộp hồ sơ khai sinh online", "mod:dich_vu_cong"),
        ("tiêu chí gia đình số", "mod:gia_dinh_so"),
        ("kiểm tra giúp tôi tin nhắn này", "scam_check"),
        ("/menu", "menu"),
        ("Quay lại", "back"),
        ("/trogiup", "help"),
        ("gặp người hỗ trợ", "human"),
        ("dừng nhận tin", "stop"),
        ("/dung", "stop"),
        ("nhận tin trở lại", "subscribe"),
    ],
)
def test_clear_messages_go_straight_to_their_destination(shipped: Catalog, text: str, destination: str) -> None:
    route = shipped.router.route(text)
    assert route.kind is RouteKind.GO, describe(shipped, text)
    assert route.destination == destination


@pytest.mark.parametrize("text", ["thời tiết hôm nay thế nào", "gia vang hom nay", "ket qua bong da toi qua"])
def test_out_of_scope_questions_are_recognised(shipped: Catalog, text: str) -> None:
    route = shipped.router.route(text)
    assert route.kind is RouteKind.OUT_OF_SCOPE, describe(shipped, text)
    assert route.destination == OUT_OF_SCOPE


@pytest.mark.parametrize("text", ["asdfgh qwerty", "😀😀", "...", "zzz"])
def test_nonsense_is_below_the_floor(shipped: Catalog, text: str) -> None:
    assert shipped.router.route(text).kind is RouteKind.UNKNOWN


def test_an_ambiguous_message_gets_at_most_three_in_scope_suggestions(shipped: Catalog) -> None:
    route = shipped.router.route("giấy tờ")
    suggestions = route.suggestions()
    assert 1 <= len(suggestions) <= 3
    assert OUT_OF_SCOPE not in suggestions
    assert all(len(s.encode()) <= 32 and s.isascii() for s in suggestions)


def test_ranking_is_best_first_and_scores_are_bounded(shipped: Catalog) -> None:
    ranked = shipped.router.rank("cai vneid tren dien thoai")
    assert ranked[0].destination == "mod:vneid"
    assert [s.score for s in ranked] == sorted((s.score for s in ranked), reverse=True)
    assert all(0 < s.score < 100 for s in ranked)


def test_describe_shows_the_top_three_and_the_decision(shipped: Catalog) -> None:
    report = describe(shipped, "cai vneid ntn", explain=True)
    assert report.splitlines()[0] == "read as: cai vneid nhu the nao"
    assert "1. mod:vneid" in report
    assert "decision: goes straight to mod:vneid" in report
    assert "vneid (" in report


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_routing_never_fails(shipped: Catalog, text: str) -> None:
    route = shipped.router.route(text)
    assert len(route.suggestions()) <= 3
    assert all(0 <= s.score <= 100 for s in route.ranked)
