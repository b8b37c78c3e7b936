"""Normalising and matching what residents type."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from flows.text import best_match, clean, fold, parse_number


def test_fold_removes_diacritics_case_and_punctuation() -> None:
    assert fold("Cài VNeID thế nào?") == "cai vneid the nao"
    assert fold("ĐĂNG KÝ   mức 2!!") == "dang ky muc 2"
    assert fold("Tôi bị kẹt") == fold("toi bi ket")


def test_clean_drops_control_characters_keeps_text() -> None:
    assert clean("\x00xin\tchào\x1b\n") == "xin chào"
    assert clean("\u200b") == ""


def test_parse_number_accepts_only_a_bare_number() -> None:
    assert parse_number("2") == 2
    assert parse_number(" 3. ") == 3
    assert parse_number("số 4") == 4
    assert parse_number("2 cai") is None
    assert parse_number("muc 2") is None


def test_best_match_prefers_exact_then_longest_contained_then_fuzzy() -> None:
    choices = {"done": ["xong", "xong roi"], "not_done": ["chua xong"], "menu": ["menu chinh"]}
    assert best_match("Xong rồi", choices) == "done"
    assert best_match("tôi chưa xong", choices) == "not_done"
    assert best_match("menu chin", choices) == "menu"
    assert best_match("hôm nay trời mưa", choices) is None
    assert best_match("", choices) is None


@given(st.text())
def test_fold_is_idempotent_and_ascii_for_vietnamese(text: str) -> None:
    once = fold(text)
    assert fold(once) == once
