"""Rendering a channel-neutral reply as plain text, for channels without buttons."""

from __future__ import annotations

from flows.catalog import Catalog
from flows.types import Reply

KEYCAPS = ("1️⃣", "2️⃣", "3️⃣", "4️⃣", "5️⃣", "6️⃣", "7️⃣", "8️⃣", "9️⃣", "🔟")


def option_number(n: int) -> str:
    """A button's number, drawn unlike the "1." lists that step texts use."""
    return KEYCAPS[n - 1] if n <= len(KEYCAPS) else f"[{n}]"


def numbered_text(catalog: Catalog, reply: Reply) -> str:
    """Text, links and image reference, then the buttons as a numbered list."""
    parts = [reply.text]
    if reply.image:
        parts.append(f"[{reply.image}]")
    parts += [f"🔗 {link.label}: {link.url}" for link in reply.links]
    if reply.buttons:
        options = "\n".join(f"{option_number(n)} {button.label}" for n, button in enumerate(reply.buttons, start=1))
        parts.append(f"{options}\n({catalog.say('reply_with_number', count=len(reply.buttons))})")
    return "\n\n".join(parts)
