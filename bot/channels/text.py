"""Text helpers every chat channel shares: splitting under a length limit, and what can be stored."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n")


def split_text(text: str, limit: int) -> list[str]:
    """Split into pieces under ``limit`` characters, at sentence or line ends where possible."""
    text = unicodedata.normalize("NFC", text).strip()
    pieces: list[str] = []
    while len(text) > limit:
        window = text[:limit]
        cuts = [m.end() for m in _SENTENCE_END.finditer(window)] or [window.rfind(" ") + 1]
        cut = cuts[-1] if cuts[-1] > limit // 2 else limit
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text or not pieces:
        pieces.append(text)
    return pieces


def storable(text: str) -> bool:
    """Text every database stores: no NUL, no lone surrogate."""
    return "\x00" not in text and not any("\ud800" <= ch <= "\udfff" for ch in text)


def event_key(kind: str, *parts: str) -> str:
    """A short event id made of several fields (for events without an id of their own): fits the
    dedupe column (100 characters) whatever the fields' lengths."""
    return f"{kind}:" + hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:40]
