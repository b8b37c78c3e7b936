"""Dashboard logins: a login link is claimed once, and its row is then the session until it ends."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import conflict_insert
from storage.models import DashboardLogin


async def claim_login(
    session: AsyncSession, nonce: str, person_id: int, now: dt.datetime, session_ends: dt.datetime
) -> bool:
    """Mark a link's nonce used and open its session; False when it was used before.

    One conditional INSERT: of two simultaneous uses of one link, exactly one succeeds.
    """
    statement = (
        conflict_insert(session, DashboardLogin)
        .values(nonce=nonce, person_id=person_id, used_at=now, expires_at=session_ends, ended_at=None)
        .on_conflict_do_nothing(index_elements=["nonce"])
        .returning(DashboardLogin.nonce)
    )
    return (await session.execute(statement)).first() is not None


async def session_person(session: AsyncSession, nonce: str, now: dt.datetime) -> int | None:
    """The person whose dashboard session this is, while it is open; None once it ended or expired."""
    return await session.scalar(
        select(DashboardLogin.person_id).where(
            DashboardLogin.nonce == nonce, DashboardLogin.ended_at.is_(None), DashboardLogin.expires_at > now
        )
    )


async def end_login(session: AsyncSession, nonce: str, now: dt.datetime) -> None:
    """Close a session (logout); closing one already closed changes nothing."""
    await session.execute(
        update(DashboardLogin)
        .where(DashboardLogin.nonce == nonce, DashboardLogin.ended_at.is_(None))
        .values(ended_at=now)
        .execution_options(synchronize_session=False)
    )
