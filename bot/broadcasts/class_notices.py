"""Messages about community classes that nobody asked for at that moment: reminders before a class,
"a seat is free for you", "the class is called off".

Reminders follow ``classes.reminder_hours`` (content/community.yaml): never during quiet hours (one due
then goes when they end, if the class has not started), never after "dừng nhận tin", at most one per
reminder and person (claimed with a conditional UPDATE before queueing). The two notices answer a
request the person made (a place on the waiting list, a seat): they go to everyone concerned, as bulk
messages, so the sender also holds them during quiet hours.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flows.catalog import Catalog
from flows.types import Button, Reply
from storage.classes import due_reminders, fill_seats, mark_reminded, open_with_waiting
from storage.clock import LOCAL_TZ, local_text
from storage.models import CommunityClass, Priority
from storage.repo import Outgoing, accounts_of, enqueue

CLASSES_ACTION = "classes"


def class_values(klass: CommunityClass) -> dict[str, Any]:
    """What the class texts show of a class."""
    return {"topic": klass.topic, "when": local_text(klass.starts_at), "place": klass.place}


def _reply(catalog: Catalog, text: str) -> Reply:
    buttons = (
        Button(CLASSES_ACTION, catalog.action_label(CLASSES_ACTION)),
        Button("menu", catalog.action_label("menu")),
    )
    return Reply(text=text, buttons=buttons)


async def notify(
    session: AsyncSession,
    catalog: Catalog,
    person_ids: Sequence[int],
    key: str,
    klass: CommunityClass,
    now: dt.datetime,
) -> int:
    """Queue ``key`` about ``klass`` for these people (on the account they added last); returns how many."""
    accounts = await accounts_of(session, person_ids)
    payload = _reply(catalog, catalog.say(key, **class_values(klass))).to_dict()
    messages = [
        Outgoing(channel, external, person_id, payload, Priority.BULK)
        for person_id, (channel, external) in accounts.items()
    ]
    return await enqueue(session, messages, now)


def _day(catalog: Catalog, klass: CommunityClass, now: dt.datetime) -> str:
    days = (klass.starts_at.astimezone(LOCAL_TZ).date() - now.astimezone(LOCAL_TZ).date()).days
    if days == 0:
        return catalog.say("class_day_today")
    if days == 1:
        return catalog.say("class_day_tomorrow")
    local = klass.starts_at.astimezone(LOCAL_TZ)
    return f"{local.day}/{local.month}"


async def send_reminders(sessions: async_sessionmaker[AsyncSession], catalog: Catalog, now: dt.datetime) -> int:
    """Queue the class reminders due now; returns how many."""
    rules = catalog.community
    if rules.quiet_hours.contains(now.astimezone(LOCAL_TZ).time()):
        return 0
    async with sessions.begin() as session:
        due = await due_reminders(session, rules.classes.reminder_hours, now)
        if not due:
            return 0
        claimed = await mark_reminded(session, due)
        due = [d for d in due if d.signup_id in claimed]
        classes = {
            c.id: c
            for c in await session.scalars(
                select(CommunityClass).where(CommunityClass.id.in_({d.class_id for d in due}))
            )
        }
        accounts = await accounts_of(session, [d.person_id for d in due])
        messages = []
        for reminder in due:
            klass = classes[reminder.class_id]
            if reminder.person_id not in accounts:
                continue
            text = catalog.say("class_reminder", day=_day(catalog, klass, now), **class_values(klass))
            channel, external = accounts[reminder.person_id]
            messages.append(
                Outgoing(channel, external, reminder.person_id, _reply(catalog, text).to_dict(), Priority.BULK)
            )
        return await enqueue(session, messages, now)


async def fill_waiting_lists(sessions: async_sessionmaker[AsyncSession], catalog: Catalog, now: dt.datetime) -> int:
    """Seat people waiting where a seat is free (a cancellation that raced a sign-up) and tell them."""
    seated = 0
    async with sessions.begin() as session:
        for klass in await open_with_waiting(session, now):
            people = await fill_seats(session, klass, now)
            if people:
                seated += await notify(session, catalog, people, "class_promoted", klass, now)
    return seated
