"""OAuth token pairs (Zalo OA): the current one per provider, and its rotation."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import OAuthToken


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    access_expires_at: dt.datetime


async def current_token(session: AsyncSession, provider: str, lock: bool = False) -> OAuthToken | None:
    """The provider's current pair; with ``lock``, the row stays locked (PostgreSQL) until commit,
    so that two workers never spend the same single-use refresh token."""
    query = (
        select(OAuthToken)
        .where(OAuthToken.provider == provider, OAuthToken.retired_at.is_(None))
        .order_by(OAuthToken.id.desc())
        .limit(1)
    )
    return await session.scalar(query.with_for_update() if lock else query)


async def store_token(session: AsyncSession, provider: str, pair: TokenPair, now: dt.datetime) -> OAuthToken:
    """Make ``pair`` the current one, in the caller's transaction: older rows are retired and their
    secrets wiped, so the database never holds two usable refresh tokens."""
    await session.execute(
        update(OAuthToken)
        .where(OAuthToken.provider == provider, OAuthToken.retired_at.is_(None))
        .values(retired_at=now, access_token="", refresh_token="")
        .execution_options(synchronize_session=False)
    )
    row = OAuthToken(
        provider=provider,
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        access_expires_at=pair.access_expires_at,
        issued_at=now,
    )
    session.add(row)
    await session.flush()
    return row
