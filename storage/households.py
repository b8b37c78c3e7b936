"""Households: create, find, join, leave. Membership is ``Person.household_id``."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from flows.text import fold
from storage.codes import new_code, normalise_code
from storage.models import Household, Person

CODE_LENGTH = 8
LABEL_MAX = 60


async def create_household(session: AsyncSession, area_code: str, label: str, now: dt.datetime) -> Household:
    """A new household with a fresh unique code (retried on the rare collision)."""
    for _ in range(10):
        code = new_code(CODE_LENGTH)
        if await session.scalar(select(Household.id).where(Household.code == code)) is None:
            household = Household(code=code, area_code=area_code, label=label, created_at=now)
            session.add(household)
            await session.flush()
            return household
    raise RuntimeError("could not find a free household code")


async def household_by_code(session: AsyncSession, text: str) -> Household | None:
    code = normalise_code(text)
    if len(code) != CODE_LENGTH:
        return None
    return await session.scalar(select(Household).where(Household.code == code))


async def members(session: AsyncSession, household_id: int) -> list[Person]:
    return list(await session.scalars(select(Person).where(Person.household_id == household_id).order_by(Person.id)))


async def search(session: AsyncSession, area_code: str, text: str, limit: int = 5) -> list[Household]:
    """Households of a village whose code is ``text`` or whose label contains it (accent-insensitive)."""
    by_code = await household_by_code(session, text)
    if by_code is not None and by_code.area_code == area_code:
        return [by_code]
    wanted = fold(text)
    if not wanted:
        return []
    found = await session.scalars(select(Household).where(Household.area_code == area_code).order_by(Household.id))
    return [h for h in found if wanted in fold(h.label)][:limit]


async def move_person(session: AsyncSession, person: Person, household_id: int | None) -> None:
    """Put a person in a household (or none); a household left with nobody is deleted with its label."""
    previous = person.household_id
    person.household_id = household_id
    await session.flush()
    if previous is not None and previous != household_id:
        await delete_if_empty(session, previous)


async def delete_if_empty(session: AsyncSession, household_id: int) -> None:
    left = await session.scalar(select(func.count()).select_from(Person).where(Person.household_id == household_id))
    if not left:
        await session.execute(delete(Household).where(Household.id == household_id))
