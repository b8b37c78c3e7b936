"""Nudges for residents who started a module and stopped (content/community.yaml ``reminders``).

Nudge number k is due once the person has been silent for ``after_days[k-1]`` days and is still in
a module; each (person, module, k) is sent at most once (a unique row in ``reminders``), so a
person gets at most ``len(after_days)`` nudges per module, whatever happens. When several are due
at once (the bot was down), only the last one is sent. Never during quiet hours (the sender also
holds bulk messages then), never after "dừng nhận tin", never without consent.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flows.catalog import Catalog
from flows.screen import unfinished_module
from flows.types import Button, ConversationState, Reply
from storage.clock import LOCAL_TZ
from storage.db import conflict_insert
from storage.models import Conversation, Person, Priority, ReminderSent
from storage.repo import Outgoing, accounts_of, enqueue

BATCH = 500
LOOKBACK_DAYS = 14  # past the last delay: people silent longer than this are not nudged any more


@dataclass(frozen=True)
class Stalled:
    person_id: int
    name: str | None
    area_code: str | None
    module: str
    step: str
    silent_since: dt.datetime


async def stalled(
    session: AsyncSession, catalog: Catalog, now: dt.datetime, silent_for: dt.timedelta, areas: set[str] | None = None
) -> list[Stalled]:
    """People inside a module whose last message is older than ``silent_for`` (and not older than the
    look-back), oldest silence first; only consenting people who did not opt out."""
    delays = catalog.community.reminders.after_days
    oldest = now - dt.timedelta(days=(delays[-1] if delays else 0) + LOOKBACK_DAYS)
    query = (
        select(Person.id, Person.display_name, Person.area_code, Conversation.state, Conversation.updated_at)
        .join(Conversation, Conversation.person_id == Person.id)
        .where(
            Person.consented_at.is_not(None),
            Person.opted_out_at.is_(None),
            Conversation.updated_at <= now - silent_for,
            Conversation.updated_at >= oldest,
        )
        .order_by(Conversation.updated_at)
    )
    if areas is not None:
        query = query.where(Person.area_code.in_(areas))
    found = []
    for person_id, name, area_code, state, updated_at in await session.execute(query):
        conversation = ConversationState.from_dict(state)
        module = unfinished_module(catalog, conversation)
        if module:
            found.append(Stalled(person_id, name, area_code, module, conversation.step, updated_at))
    return found


def _due_number(delays: list[float], silent: dt.timedelta) -> int:
    """How many nudges are due for this long a silence (0: none yet)."""
    return sum(1 for days in delays if silent >= dt.timedelta(days=days))


async def send_due(sessions: async_sessionmaker[AsyncSession], catalog: Catalog, now: dt.datetime) -> int:
    """Queue the nudges due now; returns how many."""
    delays = catalog.community.reminders.after_days
    if not delays or catalog.community.quiet_hours.contains(now.astimezone(LOCAL_TZ).time()):
        return 0
    async with sessions() as session:
        candidates = await stalled(session, catalog, now, dt.timedelta(days=delays[0]))
    queued = 0
    for start in range(0, len(candidates), BATCH):
        queued += await _queue(sessions, catalog, candidates[start : start + BATCH], delays, now)
    return queued


async def _queue(
    sessions: async_sessionmaker[AsyncSession],
    catalog: Catalog,
    batch: list[Stalled],
    delays: list[float],
    now: dt.datetime,
) -> int:
    async with sessions.begin() as session:
        ids = [s.person_id for s in batch]
        sent = {
            (person_id, module): number
            for person_id, module, number in await session.execute(
                select(ReminderSent.person_id, ReminderSent.module, func.max(ReminderSent.number))
                .where(ReminderSent.person_id.in_(ids))
                .group_by(ReminderSent.person_id, ReminderSent.module)
            )
        }
        accounts = await accounts_of(session, ids)
        rows, messages = [], []
        for person in batch:
            number = _due_number(delays, now - person.silent_since)
            if number <= sent.get((person.person_id, person.module), 0) or person.person_id not in accounts:
                continue
            rows.append({"person_id": person.person_id, "module": person.module, "number": number, "sent_at": now})
            text = catalog.say(
                "reminder_nudge",
                name=person.name or catalog.label("broadcast.you"),
                module=catalog.modules[person.module].title,
                last=number == len(delays),
            )
            title = catalog.modules[person.module].title
            buttons = (
                Button("continue", catalog.action_label("continue", title=title)),
                Button("menu", catalog.action_label("menu")),
            )
            channel, external_id = accounts[person.person_id]
            messages.append(
                Outgoing(
                    channel, external_id, person.person_id, Reply(text=text, buttons=buttons).to_dict(), Priority.BULK
                )
            )
        if not rows:
            return 0
        inserted = await session.execute(
            conflict_insert(session, ReminderSent).on_conflict_do_nothing().returning(ReminderSent.person_id), rows
        )
        fresh = {person_id for (person_id,) in inserted}  # another worker's nudges are not sent twice
        await enqueue(session, [m for m in messages if m.person_id in fresh], now)
        return len(fresh)
