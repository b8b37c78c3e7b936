"""Broadcasts: a draft with its preview, confirmed once, sent in runs through the outbox, counted.

A run is the sending of a broadcast at one due time (a yearly campaign has one a year). Starting a
run writes the recipients' messages to the outbox in chunks, each chunk its own short transaction,
then marks the run queued. A crash in between leaves a run without ``queued_at``; starting it again
adds only the messages still missing (the unique (run, person) index), so nobody gets two.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.transport import outside_window
from flows.broadcast_template import CompiledTemplate, compile_template
from flows.catalog import Catalog
from flows.screen import unfinished_module
from flows.surveys import SURVEY_BUTTON_PREFIX
from flows.types import Button, ConversationState, Reply
from storage.audience import Audience, HouseholdFilter, Recipient, Who, by_channel, recipients
from storage.clock import LOCAL_TZ
from storage.metrics import under
from storage.models import Area, Broadcast, BroadcastRun, BroadcastStatus, OutboxMessage, OutboxStatus, Priority
from storage.repo import Outgoing, enqueue
from storage.roles import audit, scope

log = logging.getLogger(__name__)

# The audiences offered in chat and on the dashboard (labels "broadcast.who_<key>" in messages.yaml).
WHO_ALL, WHO_NOT_COMPLETED, WHO_COMPLETED, WHO_NOT_GDS, WHO_NEW = "all", "not_completed", "completed", "not_gds", "new"
WHO_CHOICES = (WHO_ALL, WHO_NOT_COMPLETED, WHO_COMPLETED, WHO_NOT_GDS, WHO_NEW)
WHO_NEEDS_MODULE = (WHO_NOT_COMPLETED, WHO_COMPLETED)
NEW_DAYS = 7

# What each channel accepts in one message (Telegram's documented 4096; Zalo's 2000, see research).
TEXT_LIMITS = {"telegram": 4096, "web": 5000, "console": 5000, "zalo_oa": 2000, "zalo_bot": 2000}
DEFAULT_TEXT_LIMIT = 2000
CHUNK = 500


@dataclass(frozen=True)
class Preview:
    total: int
    by_channel: dict[str, int]
    sample: str  # the text as the first recipient reads it ("" when nobody is reached)
    too_long: dict[str, int]  # channel -> recipients whose text is over that channel's limit
    out_of_window: dict[str, int] = field(default_factory=dict)  # channel -> recipients it would not take now


@dataclass(frozen=True)
class Stats:
    broadcast: Broadcast
    runs: int
    recipients: int
    by_status: dict[str, int]  # outbox status -> messages
    failures: list[tuple[str, int]]  # last_error -> messages, most frequent first


def audience_for(area: str, who: str, module: str | None, now: dt.datetime) -> Audience:
    """The residents of ``area`` a choice of :data:`WHO_CHOICES` means (``module`` for the module choices)."""
    return Audience(
        areas=(area,),
        roles=(Who.RESIDENT,),
        completed=module if who == WHO_COMPLETED else None,
        not_completed=module if who == WHO_NOT_COMPLETED else None,
        household=HouseholdFilter.NOT_GIA_DINH_SO if who == WHO_NOT_GDS else None,
        joined_since=now - dt.timedelta(days=NEW_DAYS) if who == WHO_NEW else None,
    )


def text_values(catalog: Catalog, areas: dict[str, Area], recipient: Recipient) -> dict[str, str]:
    """The template variables for one recipient (see flows.broadcast_template.VARIABLES)."""
    village = areas.get(recipient.area_code or "")
    commune = areas.get(village.parent_code or "") if village else None
    unfinished = unfinished_module(catalog, ConversationState.from_dict(recipient.state))
    return {
        "ten": recipient.name or catalog.label("broadcast.you"),
        "thon": village.name if village else "",
        "xa": commune.name if commune else "",
        "bai_dang_hoc": catalog.modules[unfinished].title if unfinished else "",
    }


async def _areas(session: AsyncSession) -> dict[str, Area]:
    return {area.code: area for area in await session.scalars(select(Area))}


def _reply(catalog: Catalog, text: str, survey: str | None = None) -> Reply:
    """A broadcast's message: its text, and the button to answer its survey if it invites to one."""
    buttons = (Button(f"{SURVEY_BUTTON_PREFIX}{survey}", catalog.label("survey.start")),) if survey else ()
    return Reply(text=text, buttons=(*buttons, Button("menu", catalog.action_label("menu"))))


async def preview(
    session: AsyncSession,
    catalog: Catalog,
    audience: Audience,
    template: str,
    windows: Mapping[str, dt.timedelta] | None = None,
    now: dt.datetime | None = None,
) -> Preview:
    """Who would receive it now, per channel, and the text the first of them would read. ``windows``
    (Settings.sending_windows): how many on such a channel last wrote too long ago to be sent to now."""
    compiled = compile_template(template)
    found = await recipients(session, catalog.community, audience)
    areas = await _areas(session)
    too_long: dict[str, int] = {}
    out_of_window: dict[str, int] = {}
    sample = ""
    for recipient in found:
        text = compiled.render(text_values(catalog, areas, recipient))
        sample = sample or text
        if len(text) > TEXT_LIMITS.get(recipient.channel, DEFAULT_TEXT_LIMIT):
            too_long[recipient.channel] = too_long.get(recipient.channel, 0) + 1
        window = (windows or {}).get(recipient.channel)
        if window is not None and now is not None and outside_window(recipient.last_inbound_at, window, now):
            out_of_window[recipient.channel] = out_of_window.get(recipient.channel, 0) + 1
    return Preview(len(found), by_channel(found), sample, too_long, out_of_window)


async def create_draft(
    session: AsyncSession,
    author_id: int,
    audience: Audience,
    template: str,
    now: dt.datetime,
    send_at: dt.datetime | None = None,
    every_year: str | None = None,
    survey: str | None = None,
) -> Broadcast:
    """A draft over areas the author may act on (PermissionError otherwise); nothing is sent yet."""
    compile_template(template)
    allowed = await scope(session, author_id)
    if not audience.areas or not set(audience.areas) <= allowed:
        raise PermissionError("the audience is outside the author's areas")
    broadcast = Broadcast(
        author_id=author_id,
        area_code=audience.areas[0],
        audience=audience.to_dict(),
        template=template,
        status=BroadcastStatus.DRAFT,
        send_at=send_at,
        every_year=every_year,
        survey=survey,
        paused=False,
        created_at=now,
    )
    session.add(broadcast)
    await session.flush()
    return broadcast


async def confirm(session: AsyncSession, broadcast_id: int, now: dt.datetime) -> bool:
    """Draft -> scheduled, once: a second "send" (or a second worker) changes nothing and returns False."""
    done = await session.execute(
        update(Broadcast)
        .where(Broadcast.id == broadcast_id, Broadcast.status == BroadcastStatus.DRAFT)
        .values(status=BroadcastStatus.SCHEDULED, confirmed_at=now, send_at=func.coalesce(Broadcast.send_at, now))
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        return False
    broadcast = await session.get(Broadcast, broadcast_id)
    assert broadcast is not None
    await session.refresh(broadcast)
    await audit(
        session,
        broadcast.author_id,
        "broadcast_confirmed",
        broadcast.area_code,
        now=now,
        broadcast=broadcast_id,
        every_year=broadcast.every_year,
        survey=broadcast.survey,
    )
    return True


def yearly_due(every_year: str, now: dt.datetime) -> dt.datetime:
    """The latest occurrence of "MM-DD HH:MM" (local time) at or before ``now``, in UTC."""
    month_day, hour_minute = every_year.split()
    month, day = (int(part) for part in month_day.split("-"))
    hour, minute = (int(part) for part in hour_minute.split(":"))
    local = now.astimezone(LOCAL_TZ)
    for year in (local.year, local.year - 1):
        try:
            due = dt.datetime(year, month, day, hour, minute, tzinfo=LOCAL_TZ)
        except ValueError:  # 29/02 in a year without it
            continue
        if due <= local:
            return due.astimezone(dt.UTC)
    raise ValueError(f"no occurrence of {every_year!r} before {now}")


async def start_run(
    sessions: async_sessionmaker[AsyncSession],
    catalog: Catalog,
    broadcast_id: int,
    due_at: dt.datetime,
    now: dt.datetime,
) -> int | None:
    """Queue a run's messages (or finish queueing them after a crash); returns the run id, or None when the
    broadcast is not to be sent (cancelled, or its author no longer covers its areas)."""
    async with sessions.begin() as session:
        broadcast = await session.get(Broadcast, broadcast_id)
        if broadcast is None or broadcast.status != BroadcastStatus.SCHEDULED:
            return None
        audience = Audience.from_dict(broadcast.audience)
        if broadcast.author_id is None or not set(audience.areas) <= await scope(session, broadcast.author_id):
            broadcast.status, broadcast.cancelled_at = BroadcastStatus.CANCELLED, now
            await audit(
                session,
                None,
                "broadcast_cancelled",
                broadcast.area_code,
                now=now,
                broadcast=broadcast_id,
                reason="the author no longer covers these areas",
            )
            return None
        run = await _run_for(session, broadcast_id, due_at, now)
        if run.queued_at is not None:
            return run.id
        run_id, template, survey = run.id, broadcast.template, broadcast.survey
        found = await recipients(session, catalog.community, audience)
        areas = await _areas(session)
    compiled = compile_template(template)
    for start in range(0, len(found), CHUNK):
        await _queue_chunk(sessions, catalog, compiled, areas, found[start : start + CHUNK], run_id, now, survey)
    async with sessions.begin() as session:
        run = await session.get(BroadcastRun, run_id)
        broadcast = await session.get(Broadcast, broadcast_id)
        assert run is not None
        assert broadcast is not None
        run.queued_at, run.recipients = now, len(found)
        if broadcast.every_year is None and broadcast.status == BroadcastStatus.SCHEDULED:
            broadcast.status = BroadcastStatus.DONE
        if broadcast.paused:  # paused while queueing: hold what was just added
            await _set_status(session, broadcast_id, OutboxStatus.PENDING, OutboxStatus.HELD)
    return run_id


async def _run_for(session: AsyncSession, broadcast_id: int, due_at: dt.datetime, now: dt.datetime) -> BroadcastRun:
    """The run for this due time, created on first use (a concurrent creator's row is reused)."""
    query = select(BroadcastRun).where(BroadcastRun.broadcast_id == broadcast_id, BroadcastRun.due_at == due_at)
    run = await session.scalar(query)
    if run is not None:
        return run
    try:
        async with session.begin_nested():
            run = BroadcastRun(broadcast_id=broadcast_id, due_at=due_at, started_at=now, recipients=0)
            session.add(run)
    except IntegrityError:
        run = await session.scalar(query)
        assert run is not None
    return run


async def _queue_chunk(
    sessions: async_sessionmaker[AsyncSession],
    catalog: Catalog,
    compiled: CompiledTemplate,
    areas: dict[str, Area],
    chunk: Sequence[Recipient],
    run_id: int,
    now: dt.datetime,
    survey: str | None = None,
) -> None:
    messages = []
    for recipient in chunk:
        text = compiled.render(text_values(catalog, areas, recipient))
        if len(text) > TEXT_LIMITS.get(recipient.channel, DEFAULT_TEXT_LIMIT):
            continue  # refused at preview; a name added since may make one text too long: left out
        payload = _reply(catalog, text, survey).to_dict()
        messages.append(
            Outgoing(recipient.channel, recipient.external_id, recipient.person_id, payload, Priority.BULK, run_id)
        )
    async with sessions.begin() as session:
        await enqueue(session, messages, now)


async def pending_runs(session: AsyncSession) -> list[tuple[int, dt.datetime]]:
    """(broadcast id, due time) of runs started but not fully queued (a crash interrupted them)."""
    rows = await session.execute(
        select(BroadcastRun.broadcast_id, BroadcastRun.due_at)
        .join(Broadcast, Broadcast.id == BroadcastRun.broadcast_id)
        .where(BroadcastRun.queued_at.is_(None), Broadcast.status == BroadcastStatus.SCHEDULED)
    )
    return [(broadcast_id, due_at) for broadcast_id, due_at in rows]


async def _set_status(session: AsyncSession, broadcast_id: int, old: OutboxStatus, new: OutboxStatus) -> int:
    runs = select(BroadcastRun.id).where(BroadcastRun.broadcast_id == broadcast_id)
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.run_id.in_(runs), OutboxMessage.status == old)
        .values(status=new)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def set_paused(session: AsyncSession, broadcast_id: int, paused: bool, actor_id: int, now: dt.datetime) -> int:
    """Stop (or resume) a broadcast: its waiting messages are held (or released); returns how many."""
    broadcast = await session.get(Broadcast, broadcast_id)
    if broadcast is None or broadcast.paused == paused:
        return 0
    broadcast.paused = paused
    old, new = (OutboxStatus.PENDING, OutboxStatus.HELD) if paused else (OutboxStatus.HELD, OutboxStatus.PENDING)
    moved = await _set_status(session, broadcast_id, old, new)
    action = "broadcast_paused" if paused else "broadcast_resumed"
    await audit(session, actor_id, action, broadcast.area_code, now=now, broadcast=broadcast_id, messages=moved)
    return moved


async def cancel(session: AsyncSession, broadcast_id: int, actor_id: int, now: dt.datetime) -> bool:
    """No further runs; messages not yet sent are held for good. False if it was already over."""
    broadcast = await session.get(Broadcast, broadcast_id)
    if broadcast is None or broadcast.status in (BroadcastStatus.CANCELLED,):
        return False
    broadcast.status, broadcast.cancelled_at = BroadcastStatus.CANCELLED, now
    held = await _set_status(session, broadcast_id, OutboxStatus.PENDING, OutboxStatus.HELD)
    await audit(
        session, actor_id, "broadcast_cancelled", broadcast.area_code, now=now, broadcast=broadcast_id, messages=held
    )
    return True


async def stats(session: AsyncSession, broadcast_id: int) -> Stats | None:
    broadcast = await session.get(Broadcast, broadcast_id)
    if broadcast is None:
        return None
    runs = select(BroadcastRun.id).where(BroadcastRun.broadcast_id == broadcast_id)
    o = OutboxMessage
    by_status = {
        status: count
        for status, count in await session.execute(
            select(o.status, func.count()).where(o.run_id.in_(runs)).group_by(o.status)
        )
    }
    failures = [
        (reason or "", count)
        for reason, count in await session.execute(
            select(o.last_error, func.count())
            .where(o.run_id.in_(runs), o.status == OutboxStatus.FAILED)
            .group_by(o.last_error)
            .order_by(func.count().desc())
            .limit(5)
        )
    ]
    totals = (
        await session.execute(
            select(func.count(BroadcastRun.id), func.coalesce(func.sum(BroadcastRun.recipients), 0)).where(
                BroadcastRun.broadcast_id == broadcast_id
            )
        )
    ).one()
    return Stats(broadcast, int(totals[0]), int(totals[1]), by_status, failures)


async def recent_stats(session: AsyncSession, area_codes: Sequence[str], limit: int = 10) -> list[Stats]:
    """The latest confirmed broadcasts to these areas or areas under them, newest first, with their counts."""
    found = await session.scalars(
        select(Broadcast.id)
        .where(Broadcast.status != BroadcastStatus.DRAFT, *under(Broadcast.area_code, area_codes))
        .order_by(Broadcast.id.desc())
        .limit(limit)
    )
    return [counted for broadcast_id in list(found) if (counted := await stats(session, broadcast_id)) is not None]
