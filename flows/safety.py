"""Spotting secrets people should never type to anyone: OTP codes, passwords, card and ID numbers.

A bare one- or two-digit number is a menu choice, a phone number is not a
secret, a year ("năm 1960") is not a code: only digits in the right shape and
context count. When a message holds a secret the engine warns and does not act
on it; the host never stores inbound text, and :func:`redact` is there for any
place that ever would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

from flows.text import clean, fold

# Digits, possibly grouped by single spaces, dots or dashes: "0912 345 678", "1234-5678-9012-3456".
_DIGITS = re.compile(r"(?<![\w])\d(?:[ .\-]?\d)*(?![\w])")
_WORD = re.compile(r"\w+")
# "mật khẩu (của tôi) là Hoa@1960": the value after a password word.
_PASSWORD = re.compile(
    r"\b(?:mat khau|mk|pass|password|passcode|ma pin|pin)\b(?:\s+(?:cua|moi)\s+\w+)?\s*(?:la|:|=)\s*(\S+)"
)
_VALUE_SIGNS = re.compile(r"[\d@#$%^&*!?_+=~]")
# Words that make a 4-8 digit number a code ("mã", not "mà"; "otp", "passcode"...).
_CODE_WORDS = frozenset({"otp", "code", "pin", "passcode", "pass", "password", "mk", "khau", "xac", "kich", "ma"})
_ID_WORDS = frozenset({"cccd", "cmnd", "cmt", "cuoc", "danh"})  # căn cước, định danh
_NEAR = 4  # words either side that count as "near"
MAX_TOKEN_VALUE = 40


class SecretKind(StrEnum):
    """What a secret looks like."""

    OTP = "otp"
    PASSWORD = "password"
    CARD_NUMBER = "card_number"
    ID_NUMBER = "id_number"


@dataclass(frozen=True)
class Secret:
    """A secret found in a cleaned message, by character span."""

    kind: SecretKind
    start: int
    end: int


def find_secrets(text: str) -> tuple[Secret, ...]:
    """Every secret-looking part of ``clean(text)``, in order."""
    cleaned = clean(text)
    lowered = cleaned.lower()
    words = [(m.start(), m.end(), m.group()) for m in _WORD.finditer(lowered)]
    found: list[Secret] = []
    for match in _DIGITS.finditer(lowered):
        kind = _digits_kind(match, lowered, words)
        if kind is not None:
            found.append(Secret(kind, match.start(), match.end()))
    found += _passwords(lowered)
    return tuple(sorted(found, key=lambda s: s.start))


def redact(text: str, mask: str = "•••") -> str:
    """``clean(text)`` with every secret replaced by ``mask``."""
    cleaned = clean(text)
    out, last = [], 0
    for secret in find_secrets(cleaned):
        if secret.start >= last:
            out += [cleaned[last : secret.start], mask]
            last = secret.end
    return "".join([*out, cleaned[last:]])


def _digits_kind(match: re.Match[str], lowered: str, words: list[tuple[int, int, str]]) -> SecretKind | None:
    digits = re.sub(r"\D", "", match.group())
    count = len(digits)
    if count == 12:
        return SecretKind.ID_NUMBER
    if count == 16 or (13 <= count <= 19 and _luhn(digits)):
        return SecretKind.CARD_NUMBER
    near = _near_words(match.start(), match.end(), words)
    if 9 <= count <= 12 and near & _ID_WORDS:
        return SecretKind.ID_NUMBER
    if 4 <= count <= 8:
        alone = not _WORD.search(lowered[: match.start()] + lowered[match.end() :])
        if alone or near & _CODE_WORDS:
            return SecretKind.OTP
    return None


def _near_words(start: int, end: int, words: list[tuple[int, int, str]]) -> set[str]:
    """Folded words within a few words of a span; "mà" (but) is not "mã" (code)."""
    before = [w for w in words if w[1] <= start][-_NEAR:]
    after = [w for w in words if w[0] >= end][:_NEAR]
    near = set()
    for _, _, word in (*before, *after):
        folded = fold(word)
        if folded == "ma" and word not in ("ma", "mã"):
            continue
        near.add(folded)
    return near


def _passwords(lowered: str) -> list[Secret]:
    """Password values after "mật khẩu là ...", with positions in ``lowered``."""
    folded = "".join(_fold_char(ch) for ch in lowered)  # same length, so positions carry over
    found = []
    for match in _PASSWORD.finditer(folded):
        value = lowered[match.start(1) : match.end(1)]
        if _VALUE_SIGNS.search(value) and len(value) <= MAX_TOKEN_VALUE:
            found.append(Secret(SecretKind.PASSWORD, match.start(1), match.end(1)))
    return found


@lru_cache(maxsize=512)
def _fold_char(ch: str) -> str:
    """One character without its diacritics ("ế" -> "e"); anything else unchanged."""
    folded = fold(ch)
    return folded if len(folded) == 1 else ch


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0
