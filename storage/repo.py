"""The queries the dispatcher needs inside its one transaction."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.models import AppSecret, ChannelIdentity, OutboxMessage, OutboxStatus, Person, ProcessedInbound


async def claim_inbound(session: AsyncSession, channel: str, event_id: str, now: dt.datetime) -> bool:
    """Record an inbound event id; False if it was seen before (then change nothing)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(ProcessedInbound)
        .values(channel=channel, event_id=event_id, received_at=now)
        .on_conflict_do_nothing(index_elements=["channel", "event_id"])
    )
    result = await session.execute(statement)
    return result.rowcount == 1


async def person_for_identity(session: AsyncSession, channel: str, external_id: str, now: dt.datetime) -> int:
    """Return the person behind a channel account, creating both on first contact."""
    found = await session.scalar(
        select(ChannelIdentity.person_id).where(
            ChannelIdentity.channel == channel, ChannelIdentity.external_id == external_id
        )
    )
    if found is not None:
        return found
    person = Person(created_at=now)
    session.add(person)
    await session.flush()
    session.add(ChannelIdentity(person_id=person.id, channel=channel, external_id=external_id, created_at=now))
    return person.id


def enqueue(
    session: AsyncSession,
    *,
    channel: str,
    recipient: str,
    person_id: int | None,
    payloads: Iterable[dict],
    priority: int,
    now: dt.datetime,
) -> None:
    """Queue messages in the caller's transaction; the sender delivers them after commit."""
    session.add_all(
        OutboxMessage(
            channel=channel,
            recipient=recipient,
            person_id=person_id,
            payload=payload,
            priority=priority,
            status=OutboxStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        for payload in payloads
    )


async def app_secret(sessions: async_sessionmaker[AsyncSession], name: str) -> str:
    """An installation secret (hex), created on first use and then kept."""
    async with sessions.begin() as session:
        secret = await session.get(AppSecret, name)
        if secret is None:
            secret = AppSecret(name=name, value=secrets.token_hex(32))
            session.add(secret)
        return secret.value
