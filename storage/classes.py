"""Community classes: numbered seats, the waiting list, attendance, the reminders that are due.

Seats are numbered 1..capacity and a unique (class, seat) index holds them: two people taking the
last seat at once (two workers on PostgreSQL) both try the same number, the database lets one
through and the other tries the next free number, or joins the waiting list. A seat given back goes
to the first person waiting, in the same transaction; :func:`fill_seats` also repairs a free seat
left next to a waiting list by a cancellation that raced a sign-up.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.models import Area, ClassSignup, CommunityClass, Person, SignupStatus

__all__ = [
    "Counts",
    "DueReminder",
    "Place",
    "attended_people",
    "cancel",
    "counts",
    "due_reminders",
    "fill_seats",
    "mark_attended",
    "mark_reminded",
    "open_with_waiting",
    "place_of",
    "sign_up",
    "signed_up",
    "upcoming",
    "visible_from",
]

HOLDING = (SignupStatus.SEATED, SignupStatus.WAITING)


@dataclass(frozen=True)
class Place:
    """A person's place at a class: seated, or waiting at ``position`` (1 = next)."""

    status: SignupStatus
    position: int = 0


@dataclass(frozen=True)
class Counts:
    seated: int = 0
    waiting: int = 0
    attended: int = 0


@dataclass(frozen=True)
class DueReminder:
    signup_id: int
    person_id: int
    class_id: int
    number: int  # 1-based, into ClassRules.reminder_hours


async def visible_from(session: AsyncSession, area_code: str) -> list[str]:
    """The area and the areas above it: a resident sees the classes of their village and of its commune."""
    own, parent = aliased(Area), aliased(Area)
    row = (
        await session.execute(
            select(own.code, own.parent_code, parent.parent_code)
            .outerjoin(parent, parent.code == own.parent_code)
            .where(own.code == area_code)
        )
    ).first()
    return [code for code in (row or ()) if code]


async def upcoming(
    session: AsyncSession, area_codes: Collection[str], now: dt.datetime, limit: int = 8
) -> list[CommunityClass]:
    """Classes held in these areas that have not started and are not called off, soonest first."""
    return list(
        await session.scalars(
            select(CommunityClass)
            .where(
                CommunityClass.area_code.in_(list(area_codes)),
                CommunityClass.cancelled_at.is_(None),
                CommunityClass.starts_at > now,
            )
            .order_by(CommunityClass.starts_at, CommunityClass.id)
            .limit(limit)
        )
    )


async def counts(session: AsyncSession, class_ids: Collection[int]) -> dict[int, Counts]:
    s = ClassSignup
    found: dict[int, Counts] = {class_id: Counts() for class_id in class_ids}
    rows = await session.execute(
        select(
            s.class_id,
            func.count().filter(s.status == SignupStatus.SEATED),
            func.count().filter(s.status == SignupStatus.WAITING),
            func.count(s.attended_at),
        )
        .where(s.class_id.in_(list(class_ids)))
        .group_by(s.class_id)
    )
    for class_id, seated, waiting, attended in rows:
        found[class_id] = Counts(seated, waiting, attended)
    return found


async def place_of(session: AsyncSession, class_id: int, person_id: int) -> Place | None:
    """Where the person stands at a class now (None: not signed up, or cancelled)."""
    s = ClassSignup
    row = (
        await session.execute(
            select(s.id, s.status, s.created_at).where(s.class_id == class_id, s.person_id == person_id)
        )
    ).first()
    if row is None or row.status not in HOLDING:
        return None
    if row.status == SignupStatus.SEATED:
        return Place(SignupStatus.SEATED)
    ahead = await session.scalar(
        select(func.count()).where(
            s.class_id == class_id,
            s.status == SignupStatus.WAITING,
            or_(s.created_at < row.created_at, and_(s.created_at == row.created_at, s.id <= row.id)),
        )
    )
    return Place(SignupStatus.WAITING, int(ahead or 1))


async def sign_up(session: AsyncSession, klass: CommunityClass, person_id: int, now: dt.datetime) -> Place:
    """Take a free seat, else a place on the waiting list; asking again changes nothing."""
    s = ClassSignup
    current = await place_of(session, klass.id, person_id)
    if current is not None:
        return current
    existing = await session.scalar(select(s.id).where(s.class_id == klass.id, s.person_id == person_id))
    while True:
        seat = await _free_seat(session, klass)
        values = {
            "status": SignupStatus.SEATED if seat else SignupStatus.WAITING,
            "seat": seat,
            "created_at": now,
            "seated_at": now if seat else None,
        }
        try:
            async with session.begin_nested():
                if existing is None:
                    await session.execute(
                        insert(s).values(class_id=klass.id, person_id=person_id, reminders_sent=0, **values)
                    )
                else:  # cancelled earlier, or came once without a seat: the same row again
                    await session.execute(update(s).where(s.id == existing).values(**values))
        except IntegrityError:
            if seat is None:
                raise
            continue  # someone took that seat a moment ago: try the next one
        break
    found = await place_of(session, klass.id, person_id)
    assert found is not None
    return found


async def cancel(
    session: AsyncSession, klass: CommunityClass, person_id: int, now: dt.datetime
) -> tuple[bool, list[int]]:
    """Give up a seat or a place in line: (whether there was one, the people seated in their stead)."""
    s = ClassSignup
    held = (
        await session.execute(
            select(s.id, s.seat).where(s.class_id == klass.id, s.person_id == person_id, s.status.in_(HOLDING))
        )
    ).first()
    if held is None:
        return False, []
    await session.execute(
        update(s).where(s.id == held.id).values(status=SignupStatus.CANCELLED, seat=None, seated_at=None)
    )
    return True, (await fill_seats(session, klass, now) if held.seat is not None else [])


async def fill_seats(session: AsyncSession, klass: CommunityClass, now: dt.datetime) -> list[int]:
    """Seat the people waiting, first come first served, while seats are free; returns who was seated."""
    if klass.cancelled_at is not None or klass.starts_at <= now:
        return []
    s = ClassSignup
    seated: list[int] = []
    while (seat := await _free_seat(session, klass)) is not None:
        first = (
            await session.execute(
                select(s.id, s.person_id)
                .where(s.class_id == klass.id, s.status == SignupStatus.WAITING)
                .order_by(s.created_at, s.id)
                .limit(1)
            )
        ).first()
        if first is None:
            break
        try:
            async with session.begin_nested():
                moved = await session.execute(
                    update(s)
                    .where(s.id == first.id, s.status == SignupStatus.WAITING)
                    .values(status=SignupStatus.SEATED, seat=seat, seated_at=now)
                )
        except IntegrityError:
            continue
        if moved.rowcount == 1:  # type: ignore[attr-defined]
            seated.append(first.person_id)
    return seated


async def open_with_waiting(session: AsyncSession, now: dt.datetime) -> list[CommunityClass]:
    """Upcoming classes with people waiting (some may have a free seat: :func:`fill_seats` decides)."""
    s = ClassSignup
    waiting = select(s.class_id).where(s.status == SignupStatus.WAITING).distinct()
    return list(
        await session.scalars(
            select(CommunityClass).where(
                CommunityClass.id.in_(waiting), CommunityClass.cancelled_at.is_(None), CommunityClass.starts_at > now
            )
        )
    )


async def _free_seat(session: AsyncSession, klass: CommunityClass) -> int | None:
    taken = set(
        await session.scalars(
            select(ClassSignup.seat).where(ClassSignup.class_id == klass.id, ClassSignup.seat.is_not(None))
        )
    )
    return next((n for n in range(1, klass.capacity + 1) if n not in taken), None)


async def signed_up(session: AsyncSession, class_id: int) -> list[tuple[ClassSignup, Person]]:
    """Everyone with a seat, waiting or present at a class: seated first, then waiting, then walk-ins."""
    order = {SignupStatus.SEATED: 0, SignupStatus.WAITING: 1, SignupStatus.WALK_IN: 2}
    rows = await session.execute(
        select(ClassSignup, Person)
        .join(Person, Person.id == ClassSignup.person_id)
        .where(ClassSignup.class_id == class_id, ClassSignup.status != SignupStatus.CANCELLED)
        .order_by(ClassSignup.created_at, ClassSignup.id)
    )
    found = [(signup, person) for signup, person in rows]
    return sorted(found, key=lambda pair: order.get(SignupStatus(pair[0].status), 3))


async def mark_attended(session: AsyncSession, class_id: int, person_ids: Sequence[int], now: dt.datetime) -> list[int]:
    """Record who was present; returns the people not recorded before (a second save adds nobody)."""
    s = ClassSignup
    if not person_ids:
        return []
    known = set(await session.scalars(select(s.person_id).where(s.class_id == class_id, s.person_id.in_(person_ids))))
    walk_ins = [p for p in dict.fromkeys(person_ids) if p not in known]
    if walk_ins:
        await session.execute(
            insert(s),
            [
                {
                    "class_id": class_id,
                    "person_id": p,
                    "status": SignupStatus.WALK_IN,
                    "created_at": now,
                    "reminders_sent": 0,
                }
                for p in walk_ins
            ],
        )
    marked = await session.execute(
        update(s)
        .where(s.class_id == class_id, s.person_id.in_(person_ids), s.attended_at.is_(None))
        .values(attended_at=now)
        .returning(s.person_id)
    )
    return sorted(person_id for (person_id,) in marked)


async def attended_people(session: AsyncSession, class_id: int) -> set[int]:
    s = ClassSignup
    return set(await session.scalars(select(s.person_id).where(s.class_id == class_id, s.attended_at.is_not(None))))


async def due_reminders(session: AsyncSession, hours: Sequence[float], now: dt.datetime) -> list[DueReminder]:
    """Seated people of classes not started and not called off whose next reminder is due now.

    Reminder k is due from ``hours[k-1]`` hours before the start, for people seated by then (someone
    seated three hours before gets only the two-hour one); of several due, only the latest counts.
    Nobody who has not consented, or who said "dừng nhận tin".
    """
    if not hours:
        return []
    s, c = ClassSignup, CommunityClass
    rows = await session.execute(
        select(s.id, s.person_id, s.class_id, s.seated_at, s.reminders_sent, c.starts_at)
        .join(c, c.id == s.class_id)
        .join(Person, Person.id == s.person_id)
        .where(
            s.status == SignupStatus.SEATED,
            c.cancelled_at.is_(None),
            c.starts_at > now,
            c.starts_at <= now + dt.timedelta(hours=max(hours)),
            Person.consented_at.is_not(None),
            Person.opted_out_at.is_(None),
        )
        .order_by(c.starts_at, s.id)
    )
    found = []
    for signup_id, person_id, class_id, seated_at, sent, starts_at in rows:
        number = 0
        for k, before in enumerate(hours, start=1):
            moment = starts_at - dt.timedelta(hours=before)
            if moment <= now and seated_at is not None and seated_at <= moment:
                number = k
        if number > sent:
            found.append(DueReminder(signup_id, person_id, class_id, number))
    return found


async def mark_reminded(session: AsyncSession, due: Sequence[DueReminder]) -> set[int]:
    """Claim reminders before queueing them; returns the signups claimed here (another worker's are not)."""
    claimed: set[int] = set()
    for reminder in due:
        result = await session.execute(
            update(ClassSignup)
            .where(ClassSignup.id == reminder.signup_id, ClassSignup.reminders_sent < reminder.number)
            .values(reminders_sent=reminder.number)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            claimed.add(reminder.signup_id)
    return claimed
