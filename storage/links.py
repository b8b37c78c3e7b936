"""One person on two channels: a one-time link code, and merging the second account's person into the first.

The person who asked for the code is kept. The other person's rows (identities, log, household,
roles, messages...) move to them: every foreign key to ``persons`` is followed from the schema,
so tables added later move too. Where a row would clash with one the kept person already has
(their conversation, a reminder already sent), the kept person's row wins.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import Column, Table, UniqueConstraint, and_, delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.codes import new_code, normalise_code
from storage.households import delete_if_empty
from storage.models import Base, LinkCode, ParticipationEvent, Person
from storage.roles import audit, code_hash
from storage.surveys import merge_respondents

LINK_CODE_LENGTH = 6  # household codes have 8, mentor codes 7, invites 10: the length says what a code is
LINK_CODE_MINUTES = 10


class LinkStatus(StrEnum):
    LINKED = "linked"
    UNKNOWN = "unknown"  # no such code, used, or expired
    OWN = "own"  # the code was made by this very person


async def create_link_code(session: AsyncSession, person_id: int, now: dt.datetime) -> str:
    """A new code for ``person_id`` (their earlier unused ones stop working); only its hash is stored."""
    await session.execute(delete(LinkCode).where(LinkCode.person_id == person_id, LinkCode.used_at.is_(None)))
    for _ in range(10):
        code = new_code(LINK_CODE_LENGTH)
        if await session.scalar(select(LinkCode.id).where(LinkCode.code_hash == code_hash(code))) is None:
            break
    else:
        raise RuntimeError("could not find a free link code")
    expires = now + dt.timedelta(minutes=LINK_CODE_MINUTES)
    session.add(LinkCode(code_hash=code_hash(code), person_id=person_id, created_at=now, expires_at=expires))
    await session.flush()
    return code  # six characters: read and typed as they are


@dataclass(frozen=True)
class Linked:
    status: LinkStatus
    kept: Person | None = None  # the code's owner, who now has both accounts


async def redeem_link_code(session: AsyncSession, text: str, person: Person, now: dt.datetime) -> Linked:
    """Join ``person`` (who typed the code) to the code's owner. Single use holds under concurrency."""
    if len(normalise_code(text)) != LINK_CODE_LENGTH:
        return Linked(LinkStatus.UNKNOWN)
    link = await session.scalar(select(LinkCode).where(LinkCode.code_hash == code_hash(text)))
    if link is None:
        return Linked(LinkStatus.UNKNOWN)
    if link.person_id == person.id:
        return Linked(LinkStatus.OWN)
    claimed = await session.execute(
        update(LinkCode)
        .where(LinkCode.id == link.id, LinkCode.used_at.is_(None), LinkCode.expires_at > now)
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return Linked(LinkStatus.UNKNOWN)
    keep = await session.get(Person, link.person_id)
    if keep is None:  # the owner deleted their data meanwhile (the code would be gone with them)
        return Linked(LinkStatus.UNKNOWN)
    await merge_people(session, keep, person, now)
    return Linked(LinkStatus.LINKED, keep)


def _references() -> list[tuple[Table, Column]]:
    """Every column with a foreign key to persons.id."""
    return [
        (table, fk.parent)  # type: ignore[misc]
        for table in Base.metadata.sorted_tables
        for fk in table.foreign_keys
        if fk.column.table.name == Person.__tablename__
    ]


def _unique_sets(table: Table, column: Column) -> list[list[Column]]:
    """The other columns of each unique key that includes ``column`` (empty: the column alone is unique)."""
    keys = [list(table.primary_key.columns)]
    keys += [list(c.columns) for c in table.constraints if isinstance(c, UniqueConstraint)]
    keys += [list(index.columns) for index in table.indexes if index.unique]
    return [[c for c in key if c is not column] for key in keys if column in key]


async def merge_people(session: AsyncSession, keep: Person, gone: Person, now: dt.datetime) -> None:
    """Move everything of ``gone`` to ``keep``, then delete ``gone``; recorded in the audit log."""
    for attribute in ("area_code", "household_id", "display_name"):
        if getattr(keep, attribute) is None:
            setattr(keep, attribute, getattr(gone, attribute))
    if keep.mentor_id is None and gone.mentor_id != keep.id:
        keep.mentor_id = gone.mentor_id
    if keep.mentor_id == gone.id:
        keep.mentor_id = None
    if keep.mentor_code is None and gone.mentor_code is not None:
        code, gone.mentor_code = gone.mentor_code, None
        await session.flush()  # the code is unique: free it first
        keep.mentor_code = code
    await session.flush()
    moved: dict[str, int] = {}
    for table, column in _references():
        for others in _unique_sets(table, column):
            twin = table.alias()
            clash = exists().where(twin.c[column.name] == keep.id, *[twin.c[o.name] == o for o in others])
            await session.execute(delete(table).where(and_(column == gone.id, clash)))
        result = await session.execute(update(table).where(column == gone.id).values({column.name: keep.id}))
        if result.rowcount:  # type: ignore[attr-defined]
            moved[f"{table.name}.{column.name}"] = result.rowcount  # type: ignore[attr-defined]
    if gone.subject is not None and keep.subject is not None:
        await session.execute(
            update(ParticipationEvent).where(ParticipationEvent.subject == gone.subject).values(subject=keep.subject)
        )
    await merge_respondents(session, keep.id, gone.id)
    household_id = gone.household_id
    await session.execute(delete(Person).where(Person.id == gone.id))
    session.expunge(gone)
    if household_id is not None and household_id != keep.household_id:
        await delete_if_empty(session, household_id)
    await audit(session, keep.id, "accounts_linked", keep.area_code, now=now, merged_person=gone.id, moved=moved)
