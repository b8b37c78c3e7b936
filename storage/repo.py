"""The queries the dispatcher needs inside its one transaction."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from storage.db import conflict_insert
from storage.households import delete_if_empty
from storage.models import (
    AppSecret,
    ChannelIdentity,
    Conversation,
    OutboxMessage,
    OutboxStatus,
    ParticipationEvent,
    Person,
    Priority,
    ProcessedInbound,
)

PENDING_ADDED = "outbox_pending_added"  # session.info key: this transaction queued rows for the sender

# The statements of every dispatcher turn are built once, with their values as parameters: building one
# (columns, comparisons, IN lists) cost SQLAlchemy more than running it, and a statement built once also
# keeps its cache key. Core tables where no ORM object is needed.
_IDENTITIES = ChannelIdentity.__table__
_OUTBOX = OutboxMessage.__table__
_CONVERSATIONS = Conversation.__table__
_CLAIM_INBOUND = {
    name: dialect.insert(ProcessedInbound.__table__)
    .on_conflict_do_nothing(index_elements=["channel", "event_id"])
    .returning(ProcessedInbound.channel, ProcessedInbound.event_id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_FIND_PEOPLE = (
    select(ChannelIdentity.external_id, Person)
    .join(Person, Person.id == ChannelIdentity.person_id)
    .where(
        ChannelIdentity.channel == bindparam("channel"),
        ChannelIdentity.external_id.in_(bindparam("externals", expanding=True)),
    )
)
_LOCK_STATES = (
    select(_CONVERSATIONS.c.person_id, _CONVERSATIONS.c.state, _CONVERSATIONS.c.version)
    .where(_CONVERSATIONS.c.person_id.in_(bindparam("ids", expanding=True)))
    .order_by(_CONVERSATIONS.c.person_id)
    .with_for_update()
)
_SAVE_STATE = (
    update(_CONVERSATIONS)
    .where(_CONVERSATIONS.c.person_id == bindparam("id"), _CONVERSATIONS.c.version == bindparam("read"))
    .values(state=bindparam("state"), updated_at=bindparam("at"), version=_CONVERSATIONS.c.version + 1)
)
_RECORD_INBOUND = (
    update(_IDENTITIES)
    .where(
        _IDENTITIES.c.channel == bindparam("on_channel"),
        _IDENTITIES.c.external_id.in_(bindparam("externals", expanding=True)),
    )
    .values(last_inbound_at=bindparam("at"))
)
_REPLIES_WAITING = (
    select(_OUTBOX.c.recipient)
    .where(
        _OUTBOX.c.channel == bindparam("channel"),
        _OUTBOX.c.recipient.in_(bindparam("recipients", expanding=True)),
        _OUTBOX.c.priority <= Priority.REPLY,
        _OUTBOX.c.status.in_([OutboxStatus.PENDING, OutboxStatus.CLAIMED, OutboxStatus.SENDING]),
    )
    .distinct()
)
_ENQUEUE = insert(_OUTBOX)
_LOG_EVENTS = insert(ParticipationEvent.__table__)
_ENQUEUE_TAKEN = insert(_OUTBOX).returning(_OUTBOX.c.id, sort_by_parameter_order=True)


async def claim_inbound(session: AsyncSession, keys: list[tuple[str, str]], now: dt.datetime) -> set[tuple[str, str]]:
    """Record inbound (channel, event id) keys; return the ones never seen before."""
    unique = list(dict.fromkeys(keys))
    statement = _CLAIM_INBOUND[session.get_bind().dialect.name]
    # Parameters given apart (SQLAlchemy's "insertmanyvalues"): one cached statement whatever the count.
    rows = [{"channel": channel, "event_id": event_id, "received_at": now} for channel, event_id in unique]
    return {(channel, event_id) for channel, event_id in await session.execute(statement, rows)}


async def find_people(session: AsyncSession, accounts: list[tuple[str, str]]) -> dict[tuple[str, str], Person]:
    """The people behind (channel, external id) accounts; accounts never seen (or deleted) are absent."""
    unique = list(dict.fromkeys(accounts))
    found: dict[tuple[str, str], Person] = {}
    for channel in {channel for channel, _ in unique}:
        externals = [external for c, external in unique if c == channel]
        rows = await session.execute(_FIND_PEOPLE, {"channel": channel, "externals": externals})
        found.update({(channel, external): person for external, person in rows})
    return found


@dataclass
class StoredState:
    """A person's engine state as this transaction read it; ``version`` is None until it is stored."""

    state: dict[str, Any] | None
    version: int | None = None


async def lock_states(session: AsyncSession, person_ids: Collection[int]) -> dict[int, StoredState]:
    """The stored states of these people, locked until commit on PostgreSQL (in id order: no deadlocks)."""
    rows = await session.execute(_LOCK_STATES, {"ids": list(person_ids)})
    return {person_id: StoredState(state, version) for person_id, state, version in rows}


async def save_states(session: AsyncSession, states: dict[int, StoredState], now: dt.datetime) -> None:
    """Write the states read with :func:`lock_states`, and new ones, in two statements however many.

    (The ORM writes rows that have a version column one statement each.) A row whose version changed
    since it was read raises StaleDataError where the driver counts an executemany's rows (SQLite);
    on PostgreSQL the rows read are locked until commit, so none can change.
    """
    new = [
        {"person_id": i, "state": s.state, "version": 1, "updated_at": now}
        for i, s in states.items()
        if s.version is None
    ]
    old = [
        {"id": i, "read": s.version, "state": s.state, "at": now} for i, s in states.items() if s.version is not None
    ]
    if new:
        await session.execute(insert(_CONVERSATIONS), new)
    if old:
        result = await session.execute(_SAVE_STATE, old)
        if session.get_bind().dialect.supports_sane_multi_rowcount and result.rowcount != len(old):
            raise StaleDataError(f"{len(old) - result.rowcount} of {len(old)} conversations changed meanwhile")
    for state in states.values():
        state.version = (state.version or 0) + 1


async def record_inbound(session: AsyncSession, channel: str, external_ids: Sequence[str], now: dt.datetime) -> None:
    """Remember when these accounts last wrote (Zalo OA only sends within a window after that)."""
    externals = list(dict.fromkeys(external_ids))
    await session.execute(_RECORD_INBOUND, {"on_channel": channel, "externals": externals, "at": now})


async def touch_account(
    sessions: async_sessionmaker[AsyncSession], channel: str, external_id: str, now: dt.datetime
) -> None:
    """:func:`record_inbound` for one account, in its own transaction (an interaction without a message)."""
    async with sessions.begin() as session:
        await record_inbound(session, channel, [external_id], now)


async def log_events(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Add participation log rows (dicts of ParticipationEvent's columns, the same keys in each)."""
    if rows:
        await session.execute(_LOG_EVENTS, rows)


def new_subject() -> int:
    """A random key for a person's log rows: after deletion it links to nothing."""
    return secrets.randbits(62)


async def create_person(
    session: AsyncSession, now: dt.datetime, account: tuple[str, str] | None = None, name: str | None = None
) -> Person:
    """A person who has just agreed; with ``account``, reachable on that channel."""
    person = Person(created_at=now, consented_at=now, subject=new_subject(), display_name=name)
    session.add(person)
    await session.flush()
    if account is not None:
        channel, external = account
        session.add(ChannelIdentity(person_id=person.id, channel=channel, external_id=external, created_at=now))
        await session.flush()
    return person


async def delete_person(session: AsyncSession, person: Person) -> None:
    """Delete a person's data: identities, conversation, roles and messages go; the log keeps only
    anonymous rows (subject and area); a household left empty goes with its label."""
    household_id = person.household_id
    accounts = (
        await session.execute(
            select(ChannelIdentity.channel, ChannelIdentity.external_id).where(ChannelIdentity.person_id == person.id)
        )
    ).all()
    await session.execute(delete(OutboxMessage).where(OutboxMessage.person_id == person.id))
    for channel, external in accounts:  # messages sent before they agreed carry no person id
        await session.execute(
            delete(OutboxMessage).where(OutboxMessage.channel == channel, OutboxMessage.recipient == external)
        )
    await session.execute(delete(Person).where(Person.id == person.id))
    if person in session:
        session.expunge(person)
    if household_id is not None:
        await delete_if_empty(session, household_id)


async def accounts_of(session: AsyncSession, person_ids: Sequence[int]) -> dict[int, tuple[str, str]]:
    """Each person's (channel, external id) to write to: the account added last that still reaches them."""
    found: dict[int, tuple[str, str]] = {}
    for person_id, channel, external_id in await session.execute(
        select(ChannelIdentity.person_id, ChannelIdentity.channel, ChannelIdentity.external_id)
        .where(ChannelIdentity.person_id.in_(list(person_ids)), ChannelIdentity.unreachable_since.is_(None))
        .order_by(ChannelIdentity.id)
    ):
        found[person_id] = (channel, external_id)
    return found


@dataclass(frozen=True)
class Outgoing:
    """A message to queue in the outbox."""

    channel: str
    recipient: str
    person_id: int | None
    payload: dict[str, Any]
    priority: int
    run_id: int | None = None  # the broadcast run a bulk message belongs to


async def enqueue(session: AsyncSession, messages: Sequence[Outgoing], now: dt.datetime) -> int:
    """Queue messages in the caller's transaction (one statement); the sender delivers them after commit.

    A broadcast run's message to a person who already has one in that run is skipped (the unique
    (run_id, person_id) index): enqueueing a run again after a crash adds only what is missing.
    Returns how many rows were added.
    """
    if not messages:
        return 0
    session.info[PENDING_ADDED] = True  # the dispatcher wakes the sender only when something waits
    rows = _outbox_rows(messages, now, OutboxStatus.PENDING, attempts=0)
    if all(m.run_id is None for m in messages):
        await session.execute(_ENQUEUE, rows)
        return len(rows)
    statement = (
        conflict_insert(session, OutboxMessage)
        .on_conflict_do_nothing(index_elements=["run_id", "person_id"])
        .returning(OutboxMessage.id)
    )
    return len((await session.execute(statement, rows)).all())


async def enqueue_taken(session: AsyncSession, messages: Sequence[Outgoing], now: dt.datetime) -> list[int]:
    """Queue replies that this process's sender takes at commit (bot.sender.OutboxSender.take), as
    "sending": it calls the platform right away, so after a crash they count as interrupted (and,
    being replies, are sent again). Returns their ids, in order."""
    if not messages:
        return []
    rows = _outbox_rows(messages, now, OutboxStatus.SENDING, attempts=1)
    return list((await session.execute(_ENQUEUE_TAKEN, rows)).scalars())


def _outbox_rows(messages: Sequence[Outgoing], now: dt.datetime, status: str, attempts: int) -> list[dict[str, Any]]:
    return [
        {
            "channel": m.channel,
            "recipient": m.recipient,
            "person_id": m.person_id,
            "payload": m.payload,
            "priority": m.priority,
            "status": status,
            "attempts": attempts,
            "next_attempt_at": now,
            "created_at": now,
            "run_id": m.run_id,
        }
        for m in messages
    ]


async def replies_waiting(session: AsyncSession, channel: str, recipients: Sequence[str]) -> set[str]:
    """Recipients on ``channel`` with a reply not yet sent: a new reply to them must wait its turn."""
    unique = list(dict.fromkeys(recipients))
    return set((await session.execute(_REPLIES_WAITING, {"channel": channel, "recipients": unique})).scalars())


async def app_secret(sessions: async_sessionmaker[AsyncSession], name: str) -> str:
    """An installation secret (hex), created on first use and then kept."""
    async with sessions.begin() as session:
        return await app_secret_in(session, name)


async def app_secret_in(session: AsyncSession, name: str) -> str:
    """:func:`app_secret` in the caller's transaction (e.g. during a dispatcher turn)."""
    secret = await session.get(AppSecret, name)
    if secret is None:
        secret = AppSecret(name=name, value=secrets.token_hex(32))
        session.add(secret)
        await session.flush()
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
