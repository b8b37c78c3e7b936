"""Roles over areas: grants and revocations, scopes, single-use invite codes, and the audit log.

Every grant, revocation, invite and redemption is audited here, in the caller's
transaction, so no caller can forget it. Who may hand out which invite is the
caller's decision (see :func:`can_manage`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from flows.community import AreaKind
from storage.areas import descendants
from storage.clock import utc_now
from storage.codes import new_code, normalise_code
from storage.models import Area, AuditEntry, Invite, Role, RoleGrant

__all__ = [
    "INVITE_LENGTH",
    "RedeemStatus",
    "Redeemed",
    "active_grants",
    "active_grants_within",
    "audit",
    "can_manage",
    "code_hash",
    "create_invite",
    "grant",
    "normalise_code",
    "redeem_invite",
    "revoke",
    "scope",
    "show_code",
]

INVITE_LENGTH = 10
_GROUP = 5
# The roles whose grants let a person act as each role: an officer may do everything a volunteer does.
_ACTS_AS = {Role.OFFICER: {Role.OFFICER}, Role.VOLUNTEER: {Role.VOLUNTEER, Role.OFFICER}}


async def audit(
    session: AsyncSession,
    actor_id: int | None,
    action: str,
    area_code: str | None,
    *,
    now: dt.datetime | None = None,
    **detail: Any,
) -> None:
    """Append to the audit log. ``actor_id`` None: the operator (CLI); ``detail`` must be JSON values;
    ``now`` defaults to the wall clock."""
    at = now or utc_now()
    await session.execute(
        insert(AuditEntry).values(at=at, actor_id=actor_id, action=action, area_code=area_code, detail=detail)
    )


async def grant(
    session: AsyncSession, person_id: int, role: Role, area_code: str, granted_by: int | None, now: dt.datetime
) -> RoleGrant:
    """Give ``person_id`` a role over an area and everything under it; an identical active grant is returned as is."""
    role = Role(role)
    existing = await session.scalar(
        select(RoleGrant)
        .where(
            RoleGrant.person_id == person_id,
            RoleGrant.role == role.value,
            RoleGrant.area_code == area_code,
            RoleGrant.revoked_at.is_(None),
        )
        .order_by(RoleGrant.id)
        .limit(1)
    )
    if existing is not None:
        return existing
    row = RoleGrant(person_id=person_id, role=role.value, area_code=area_code, granted_by=granted_by, granted_at=now)
    session.add(row)
    await session.flush()
    detail = {"grant_id": row.id, "person_id": person_id, "role": role.value}
    await audit(session, granted_by, "role_granted", area_code, now=now, **detail)
    return row


async def revoke(session: AsyncSession, grant_id: int, revoked_by: int | None, now: dt.datetime) -> bool:
    """End a grant (kept as history); False when there is no such active grant."""
    row = await session.get(RoleGrant, grant_id)
    if row is None or row.revoked_at is not None:
        return False
    result = await session.execute(
        update(RoleGrant)
        .where(RoleGrant.id == grant_id, RoleGrant.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]  # revoked meanwhile by someone else
        await session.refresh(row)
        return False
    set_committed_value(row, "revoked_at", now)
    detail = {"grant_id": grant_id, "person_id": row.person_id, "role": row.role}
    await audit(session, revoked_by, "role_revoked", row.area_code, now=now, **detail)
    return True


async def active_grants(session: AsyncSession, person_id: int) -> list[RoleGrant]:
    return list(
        await session.scalars(
            select(RoleGrant)
            .where(RoleGrant.person_id == person_id, RoleGrant.revoked_at.is_(None))
            .order_by(RoleGrant.id)
        )
    )


async def active_grants_within(session: AsyncSession, area_codes: Collection[str] | None = None) -> list[RoleGrant]:
    """Active grants over any of ``area_codes`` (None: all), by area then id."""
    query = select(RoleGrant).where(RoleGrant.revoked_at.is_(None)).order_by(RoleGrant.area_code, RoleGrant.id)
    if area_codes is not None:
        query = query.where(RoleGrant.area_code.in_(list(area_codes)))
    return list(await session.scalars(query))


async def scope(session: AsyncSession, person_id: int, role: Role | None = None) -> set[str]:
    """The area codes a person may act on as ``role`` (None: as any role): their grants' areas and all below.

    An officer's grants also count for volunteer actions.
    """
    allowed = set(Role) if role is None else _ACTS_AS[Role(role)]
    codes = {g.area_code for g in await active_grants(session, person_id) if g.role in allowed}
    return await descendants(session, codes)


async def can_manage(session: AsyncSession, person_id: int, area_code: str) -> bool:
    """Whether the area is within the person's officer scope (e.g. to invite volunteers there)."""
    return area_code in await scope(session, person_id, Role.OFFICER)


def code_hash(code: str) -> str:
    """What is stored for an invite code: the SHA-256 of the code as normalised."""
    return hashlib.sha256(normalise_code(code).encode()).hexdigest()


def show_code(code: str) -> str:
    """A code as people read it: "ABCDEFGHJK" -> "ABCDE-FGHJK"."""
    bare = normalise_code(code)
    return "-".join(bare[i : i + _GROUP] for i in range(0, len(bare), _GROUP))


async def create_invite(
    session: AsyncSession,
    role: Role,
    area_code: str,
    created_by: int | None,
    now: dt.datetime,
    valid_hours: int,
) -> str:
    """A single-use code granting ``role`` over ``area_code`` for ``valid_hours``; returns it grouped
    ("ABCDE-FGHJK"). Only its hash is stored: the code cannot be shown again. Officers are for
    communes and provinces, not villages (ValueError)."""
    role = Role(role)
    area = await session.get(Area, area_code)
    if area is None:
        raise LookupError(f"no area '{area_code}'")
    if role is Role.OFFICER and area.kind == AreaKind.VILLAGE:
        raise ValueError(f"'{area_code}' is a village: an officer is for a commune or a province")
    for _ in range(10):
        code = new_code(INVITE_LENGTH)
        digest = code_hash(code)
        if await session.scalar(select(Invite.id).where(Invite.code_hash == digest)) is None:
            break
    else:
        raise RuntimeError("could not find a free invite code")
    invite = Invite(
        code_hash=digest,
        role=role.value,
        area_code=area_code,
        created_by=created_by,
        created_at=now,
        expires_at=now + dt.timedelta(hours=valid_hours),
    )
    session.add(invite)
    await session.flush()
    await audit(
        session,
        created_by,
        "invite_created",
        area_code,
        now=now,
        invite_id=invite.id,
        role=role.value,
        expires_at=invite.expires_at.isoformat(),
    )
    return show_code(code)


class RedeemStatus(StrEnum):
    OK = "ok"
    UNKNOWN = "unknown"  # no such code (or mistyped)
    EXPIRED = "expired"
    USED = "used"  # already redeemed, by anyone


@dataclass(frozen=True)
class Redeemed:
    status: RedeemStatus
    grant: RoleGrant | None = None  # set when ok

    @property
    def ok(self) -> bool:
        return self.status is RedeemStatus.OK


async def redeem_invite(session: AsyncSession, code: str, person_id: int, now: dt.datetime) -> Redeemed:
    """Use an invite code as typed: grants its role to ``person_id``.

    Single use holds under concurrency: the invite is claimed by a conditional
    UPDATE, so of two simultaneous redemptions exactly one succeeds.
    """
    if len(normalise_code(code)) != INVITE_LENGTH:
        return Redeemed(RedeemStatus.UNKNOWN)
    invite = await session.scalar(select(Invite).where(Invite.code_hash == code_hash(code)))
    if invite is None:
        return Redeemed(RedeemStatus.UNKNOWN)
    claimed = await session.execute(
        update(Invite)
        .where(Invite.id == invite.id, Invite.used_at.is_(None), Invite.expires_at > now)
        .values(used_at=now, used_by=person_id)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        await session.refresh(invite)
        return Redeemed(RedeemStatus.USED if invite.used_at is not None else RedeemStatus.EXPIRED)
    set_committed_value(invite, "used_at", now)
    set_committed_value(invite, "used_by", person_id)
    row = await grant(session, person_id, Role(invite.role), invite.area_code, invite.created_by, now)
    await audit(
        session,
        person_id,
        "invite_redeemed",
        row.area_code,
        now=now,
        invite_id=invite.id,
        grant_id=row.id,
        role=row.role,
    )
    return Redeemed(RedeemStatus.OK, row)
