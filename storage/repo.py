"""The queries the dispatcher needs inside its one transaction."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import AppSecret, ChannelIdentity, OutboxMessage, OutboxStatus, Person, ProcessedInbound


async def claim_inbound(session: AsyncSession, keys: list[tuple[str, str]], now: dt.datetime) -> set[tuple[str, str]]:
    """Record inbound (channel, event id) keys; return the ones never seen before."""
    unique = list(dict.fromkeys(keys))
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(ProcessedInbound)
        .values([{"channel": channel, "event_id": event_id, "received_at": now} for channel, event_id in unique])
        .on_conflict_do_nothing(index_elements=["channel", "event_id"])
        .returning(ProcessedInbound.channel, ProcessedInbound.event_id)
    )
    return {(channel, event_id) for channel, event_id in await session.execute(statement)}


async def people_for_accounts(
    session: AsyncSession, accounts: list[tuple[str, str]], now: dt.datetime
) -> dict[tuple[str, str], int]:
    """Map (channel, external id) to person ids, creating person and identity on first contact."""
    unique = list(dict.fromkeys(accounts))
    found: dict[tuple[str, str], int] = {}
    for channel in {channel for channel, _ in unique}:
        rows = await session.execute(
            select(ChannelIdentity.external_id, ChannelIdentity.person_id).where(
                ChannelIdentity.channel == channel,
                ChannelIdentity.external_id.in_([external for c, external in unique if c == channel]),
            )
        )
        found.update({(channel, external): person_id for external, person_id in rows})
    missing = [account for account in unique if account not in found]
    if missing:
        people = [Person(created_at=now) for _ in missing]
        session.add_all(people)
        await session.flush()
        session.add_all(
            ChannelIdentity(person_id=person.id, channel=channel, external_id=external, created_at=now)
            for person, (channel, external) in zip(people, missing, strict=True)
        )
        found.update({account: person.id for account, person in zip(missing, people, strict=True)})
    return found


@dataclass(frozen=True)
class Outgoing:
    """A message to queue in the outbox."""

    channel: str
    recipient: str
    person_id: int | None
    payload: dict[str, Any]
    priority: int


async def enqueue(session: AsyncSession, messages: Sequence[Outgoing], now: dt.datetime) -> None:
    """Queue messages in the caller's transaction (one statement); the sender delivers them after commit."""
    if not messages:
        return
    await session.execute(
        insert(OutboxMessage),
        [
            {
                "channel": m.channel,
                "recipient": m.recipient,
                "person_id": m.person_id,
                "payload": m.payload,
                "priority": m.priority,
                "status": OutboxStatus.PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for m in messages
        ],
    )


async def app_secret(sessions: async_sessionmaker[AsyncSession], name: str) -> str:
    """An installation secret (hex), created on first use and then kept."""
    async with sessions.begin() as session:
        secret = await session.get(AppSecret, name)
        if secret is None:
            secret = AppSecret(name=name, value=secrets.token_hex(32))
            session.add(secret)
        return secret.value


async def set_reachable(
    sessions: async_sessionmaker[AsyncSession], channel: str, external_id: str, reachable: bool, now: dt.datetime
) -> None:
    """Record that a channel account blocked (or unblocked) the bot."""
    async with sessions.begin() as session:
        await session.execute(
            update(ChannelIdentity)
            .where(ChannelIdentity.channel == channel, ChannelIdentity.external_id == external_id)
            .values(unreachable_since=None if reachable else now)
        )
