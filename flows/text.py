"""Normalising what people type and matching it to choices."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from functools import lru_cache

from rapidfuzz import fuzz, process

MAX_INPUT_CHARS = 1000
_SPACES = re.compile(r"\s+")
_NUMBER = re.compile(r"^\s*(?:so\s*)?(\d{1,4})\s*[.)]?\s*$")
_PUNCT = re.compile(r"[^\w\s]")


def clean(text: str) -> str:
    """Drop control characters and collapse whitespace; keep diacritics."""
    kept = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in unicodedata.normalize("NFC", text))
    return _SPACES.sub(" ", kept).strip()


def fold(text: str) -> str:
    """Lower-case, remove Vietnamese diacritics and punctuation: "Cài VNeID?" -> "cai vneid"."""
    decomposed = unicodedata.normalize("NFD", clean(text).lower().replace("đ", "d"))
    bare = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    return _SPACES.sub(" ", _PUNCT.sub(" ", bare)).strip()


@lru_cache(maxsize=8192)
def fold_phrase(phrase: str) -> str:
    """:func:`fold` for content phrases, which come back on every message: remembered."""
    return fold(phrase)


def parse_number(text: str) -> int | None:
    """Return the number if the message is only a number ("2", "2.", "so 2")."""
    match = _NUMBER.match(fold(text) if text else "")
    return int(match.group(1)) if match else None


def exact_match(text: str, choices: Mapping[str, Iterable[str]]) -> str | None:
    """Return the key with a phrase equal to ``text`` once both are folded, or None."""
    folded = fold(text)
    if not folded:
        return None
    return next((key for key, phrases in choices.items() if any(fold_phrase(p) == folded for p in phrases)), None)


def best_match(text: str, choices: Mapping[str, Iterable[str]], threshold: float = 85.0) -> str | None:
    """Return the key whose phrases best match ``text``, or None.

    A phrase matches when it equals the folded text, when the text contains it
    as whole words, or when rapidfuzz scores it at least ``threshold``.
    """
    folded = fold(text)
    if not folded:
        return None
    padded = f" {folded} "
    phrases: dict[str, str] = {}
    for key, key_phrases in choices.items():
        for phrase in key_phrases:
            folded_phrase = fold_phrase(phrase)
            if not folded_phrase:
                continue
            if folded_phrase == folded:
                return key
            phrases.setdefault(folded_phrase, key)
    contained = [p for p in phrases if f" {p} " in padded]
    if contained:
        return phrases[max(contained, key=len)]
    found = process.extractOne(folded, list(phrases), scorer=fuzz.token_sort_ratio, score_cutoff=threshold)
    return phrases[found[0]] if found else None
