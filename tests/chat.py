"""A resident, volunteer or officer talking to the dispatcher, reading back what the bot queued for them."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.dispatcher import Dispatcher, Envelope
from flows.catalog import Catalog
from flows.types import Inbound, InboundKind, Reply
from storage.areas import seed_areas
from storage.db import create_engine, make_sessionmaker
from storage.migrate import upgrade
from storage.models import ChannelIdentity, Conversation, OutboxMessage, Person
from tests.helpers import T0

_event_ids = itertools.count(1)


@dataclass
class Chat:
    """One account on one channel; ``send``/``tap`` return the replies that event queued."""

    dispatcher: Dispatcher
    sessions: async_sessionmaker[AsyncSession]
    user: str
    channel: str = "console"
    at: dt.datetime = T0
    seen: int = field(default=0)

    async def send(self, text: str) -> list[Reply]:
        return await self.deliver(Inbound(InboundKind.TEXT, self.at, text=text))

    async def tap(self, button_id: str) -> list[Reply]:
        return await self.deliver(Inbound(InboundKind.BUTTON, self.at, button_id=button_id))

    async def choose(self, label: str) -> list[Reply]:
        """Tap the button with this label on the last message."""
        last = (await self.replies())[-1]
        matching = [b.id for b in last.buttons if b.label == label]
        assert matching, f"no button {label!r} in {[b.label for b in last.buttons]}"
        return await self.tap(matching[0])

    async def agree(self) -> list[Reply]:
        """First contact and consent; the village question is left unanswered."""
        await self.send("xin chào")
        return await self.tap("consent:yes")

    async def join(self, village: str = "Thôn Đông") -> list[Reply]:
        """First contact, consent and a village: a resident ready to learn."""
        await self.agree()
        return await self.send(village)

    async def person(self) -> Person | None:
        async with self.sessions() as session:
            return await session.scalar(
                select(Person)
                .join(ChannelIdentity, ChannelIdentity.person_id == Person.id)
                .where(ChannelIdentity.channel == self.channel, ChannelIdentity.external_id == self.user)
            )

    async def state(self) -> dict:
        """The engine state stored for this account's person."""
        async with self.sessions() as session:
            return await session.scalar(
                select(Conversation.state)
                .join(ChannelIdentity, ChannelIdentity.person_id == Conversation.person_id)
                .where(ChannelIdentity.channel == self.channel, ChannelIdentity.external_id == self.user)
            )

    async def replies(self, after: int = 0) -> list[Reply]:
        """Everything queued for this account (after an outbox id)."""
        return [reply for _, reply in await self._rows(after)]

    async def _rows(self, after: int) -> list[tuple[int, Reply]]:
        async with self.sessions() as session:
            rows = await session.execute(
                select(OutboxMessage.id, OutboxMessage.payload)
                .where(
                    OutboxMessage.channel == self.channel,
                    OutboxMessage.recipient == self.user,
                    OutboxMessage.id > after,
                )
                .order_by(OutboxMessage.id)
            )
            return [(row_id, Reply.from_dict(payload)) for row_id, payload in rows]

    async def deliver(self, inbound: Inbound) -> list[Reply]:
        """Handle one inbound as a new event; the replies it queued."""
        envelope = Envelope(self.channel, f"{self.user}-{next(_event_ids)}", self.user, inbound)
        assert await self.dispatcher.handle(envelope)
        rows = await self._rows(self.seen)
        if rows:
            self.seen = rows[-1][0]
        return [reply for _, reply in rows]


async def reference_turns(catalog: Catalog, inbounds: list[Inbound], db_path: Path) -> list[list[Reply]]:
    """What the bot answers one new account for each of these inbounds, on a scratch database with the
    content's areas: the expected side of channel tests and benches."""
    engine = create_engine(f"sqlite+aiosqlite:///{db_path}")
    try:
        await upgrade(engine)
        sessions = make_sessionmaker(engine)
        async with sessions.begin() as session:
            await seed_areas(session, catalog.areas, T0)
        chat = Chat(Dispatcher(catalog, sessions, clock=lambda: T0), sessions, f"reference-{next(_event_ids)}")
        return [await chat.deliver(inbound) for inbound in inbounds]
    finally:
        await engine.dispose()


async def reference_replies(catalog: Catalog, inbounds: list[Inbound], db_path: Path) -> list[Reply]:
    """:func:`reference_turns`, all replies in order."""
    return [reply for turn in await reference_turns(catalog, inbounds, db_path) for reply in turn]


def texts(replies: list[Reply]) -> str:
    return "\n".join(r.text for r in replies)


def labels(replies: list[Reply]) -> list[str]:
    return [b.label for b in replies[-1].buttons] if replies else []
