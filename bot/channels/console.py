"""The terminal chat: one resident, stdin in, stdout out; buttons shown as numbers."""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import TextIO

from sqlalchemy import select

from bot.app import App
from bot.dispatcher import Envelope
from bot.ratelimit import RateLimits
from bot.render import numbered_text
from flows.catalog import Catalog
from flows.engine import resume
from flows.types import ConversationState, Inbound, InboundKind, Reply
from storage.clock import utc_now
from storage.models import ChannelIdentity, Conversation

CHANNEL = "console"
SEPARATOR = "─" * 40


class ConsoleTransport:
    """Prints messages to a text stream."""

    channel = CHANNEL
    limits = RateLimits()

    def __init__(self, catalog: Catalog, out: TextIO) -> None:
        self._catalog = catalog
        self._out = out

    async def send(self, recipient: str, reply: Reply) -> None:
        self._out.write(f"{numbered_text(self._catalog, reply)}\n{SEPARATOR}\n")
        self._out.flush()


async def run_console(app: App, user: str, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> None:
    """Chat until end of input. A restart resumes where the person stopped."""
    app.sender.add_transport(ConsoleTransport(app.catalog, stdout))
    await app.sender.recover()
    delivered = await app.sender.drain()  # committed before a crash, not yet shown
    state = await _stored_state(app, user)
    if state is None:
        await _dispatch(app, user, Inbound(InboundKind.START, utc_now()))
    elif not delivered:
        await ConsoleTransport(app.catalog, stdout).send(user, resume(app.catalog, state)[1])
    interactive = stdin.isatty()
    while True:
        if interactive:
            stdout.write("> ")
            stdout.flush()
        line = await asyncio.to_thread(stdin.readline)
        if not line:
            return
        text = line.rstrip("\r\n")
        kind = InboundKind.START if text.strip().lower() == "/start" else InboundKind.TEXT
        await _dispatch(app, user, Inbound(kind, utc_now(), text=text))


async def _dispatch(app: App, user: str, inbound: Inbound) -> None:
    await app.dispatcher.handle(Envelope(CHANNEL, uuid.uuid4().hex, user, inbound))
    await app.sender.drain()


async def _stored_state(app: App, user: str) -> ConversationState | None:
    async with app.sessions() as session:
        stored = await session.scalar(
            select(Conversation.state)
            .join(ChannelIdentity, ChannelIdentity.person_id == Conversation.person_id)
            .where(ChannelIdentity.channel == CHANNEL, ChannelIdentity.external_id == user)
        )
    return None if stored is None else ConversationState.from_dict(stored)
