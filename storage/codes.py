"""Short codes people read aloud and type on old phones (household, mentor and invite codes)."""

from __future__ import annotations

import secrets

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L


def normalise_code(text: str) -> str:
    """What a person typed as a code: upper case, without spaces and dashes."""
    return "".join(ch for ch in text.upper() if ch.isalnum())


def new_code(length: int) -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))
