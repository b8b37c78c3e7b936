"""What the dashboard shows next to the metrics: help requests waiting, messages delivered, volunteers at work."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import ColumnElement, distinct, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from flows.types import EventKind
from storage.metrics import counting, mentor_counts, under
from storage.models import OutboxMessage, ParticipationEvent, Person, Priority, RoleGrant

__all__ = ["Delivery", "HelpRequest", "VolunteerWork", "delivery_counts", "volunteers_at_work", "waiting_help"]


@dataclass(frozen=True)
class HelpRequest:
    """A resident tapped "Gặp người hỗ trợ" (a ``help_requested`` event) and has not finished since."""

    id: int
    at: dt.datetime
    area_code: str | None
    person_id: int
    module: str  # "" when asked from the menu
    step: str
    channel: str


@dataclass(frozen=True)
class Delivery:
    """Outgoing messages of one channel and kind (bulk or reply) in one outbox status."""

    channel: str
    bulk: bool
    status: str
    count: int


@dataclass(frozen=True)
class VolunteerWork:
    """A person with an active role over the areas: their mentees and the people they helped in person."""

    person_id: int
    display_name: str | None
    role: str
    area_code: str
    mentees: int
    helped_in_person: int  # distinct people with a counting event this person recorded


def _waiting_where(area_codes: Collection[str] | None) -> list[ColumnElement[bool]]:
    """Help requests of people still known (not deleted) without a counting completion since, in the areas.

    A request from inside a module waits until that module is completed; one from the menu, until any is.
    """
    e, later = ParticipationEvent, aliased(ParticipationEvent)
    finished = exists().where(
        later.subject == e.subject,
        later.kind == EventKind.COMPLETED.value,
        later.at >= e.at,
        or_(e.module == "", later.module == e.module),
        *counting(later, None),
    )
    return [
        e.kind == EventKind.HELP_REQUESTED.value,
        e.person_id.is_not(None),
        *counting(e, None),
        *under(e.area_code, area_codes),
        ~finished,
    ]


async def waiting_help(
    session: AsyncSession, area_codes: Collection[str] | None = None, limit: int = 50
) -> tuple[list[HelpRequest], dict[str | None, int]]:
    """Waiting help requests in these areas and those under them (all when None): the ``limit`` most recent,
    and how many wait in each area."""
    e = ParticipationEvent
    where = _waiting_where(area_codes)
    rows = await session.execute(
        select(e.id, e.at, e.area_code, e.person_id, e.module, e.step, e.channel)
        .where(*where)
        .order_by(e.at.desc(), e.id.desc())
        .limit(limit)
    )
    recent = [HelpRequest(*row) for row in rows]
    per_area = select(e.area_code, func.count()).where(*where).group_by(e.area_code)
    return recent, {code: count for code, count in await session.execute(per_area)}


async def delivery_counts(session: AsyncSession, area_codes: Collection[str] | None = None) -> list[Delivery]:
    """Messages to the people of these areas by channel, bulk or reply, and status, from the outbox.

    Until broadcasts have their own table this is what is known about them: bulk messages are the outbox
    rows queued at ``Priority.BULK``. Messages to people not yet agreed (no person) are not counted.
    """
    o = OutboxMessage
    bulk = o.priority >= Priority.BULK
    rows = await session.execute(
        select(o.channel, bulk, o.status, func.count())
        .join(Person, Person.id == o.person_id)
        .where(*under(Person.area_code, area_codes))
        .group_by(o.channel, bulk, o.status)
        .order_by(o.channel, bulk, o.status)
    )
    return [Delivery(channel, bool(is_bulk), status, count) for channel, is_bulk, status, count in rows]


async def volunteers_at_work(session: AsyncSession, area_codes: Collection[str] | None = None) -> list[VolunteerWork]:
    """Everyone with an active role over these areas or those under them, with their mentees (``mentor_counts``)
    and the people they helped in person there; by area, then id. A person with two grants appears twice."""
    counts = await mentor_counts(session, area_codes)
    grants = (
        await session.execute(
            select(RoleGrant.person_id, Person.display_name, RoleGrant.role, RoleGrant.area_code)
            .join(Person, Person.id == RoleGrant.person_id)
            .where(RoleGrant.revoked_at.is_(None), *under(RoleGrant.area_code, area_codes))
            .order_by(RoleGrant.area_code, RoleGrant.person_id, RoleGrant.id)
        )
    ).all()
    e = ParticipationEvent
    helped = {
        person: count
        for person, count in await session.execute(
            select(e.assisted_by, func.count(distinct(e.subject)))
            .where(
                e.assisted_by.in_({g.person_id for g in grants}),
                e.subject.is_not(None),
                *counting(e, None),
                *under(e.area_code, area_codes),
            )
            .group_by(e.assisted_by)
        )
    }
    return [VolunteerWork(p, name, role, area, counts.get(p, 0), helped.get(p, 0)) for p, name, role, area in grants]
