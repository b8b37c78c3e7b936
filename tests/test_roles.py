"""Roles: grants, revocations, scopes, single-use invites (also under concurrency), the audit log,
and `hocvuso officer add`, `invite`, `roles list|revoke`."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re

import pytest
from sqlalchemy import func, select

from flows.catalog import Catalog
from flows.community import AreaKind, AreaSpec
from storage.areas import upsert_areas
from storage.models import AuditEntry, Invite, Person, Role, RoleGrant
from storage.roles import (
    RedeemStatus,
    active_grants,
    can_manage,
    create_invite,
    grant,
    normalise_code,
    redeem_invite,
    revoke,
    scope,
)
from tests.conftest import Cli
from tests.helpers import T0

GROUPED = re.compile(r"^[ABCDEFGHJKMNPQRSTUVWXYZ23456789]{5}-[ABCDEFGHJKMNPQRSTUVWXYZ23456789]{5}$")
COMMUNE_A = {"a", "a1", "a2"}


def spec(code: str, parent: str | None, kind: str) -> AreaSpec:
    return AreaSpec(code=code, parent=parent, kind=AreaKind(kind), name=code.upper())


TREE = [
    spec("p", None, "province"),
    spec("a", "p", "commune"),
    spec("b", "p", "commune"),
    spec("a1", "a", "village"),
    spec("a2", "a", "village"),
    spec("b1", "b", "village"),
]


async def setup(sessions, people: int = 3) -> list[int]:
    """The TREE areas and ``people`` persons; returns their ids."""
    async with sessions.begin() as session:
        await upsert_areas(session, TREE, T0)
        persons = [Person(created_at=T0) for _ in range(people)]
        session.add_all(persons)
        await session.flush()
        return [p.id for p in persons]


async def audit_log(sessions) -> list[tuple[str, int | None, str | None, dict]]:
    async with sessions() as session:
        entries = await session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        return [(e.action, e.actor_id, e.area_code, e.detail) for e in entries]


async def test_an_officer_scopes_their_commune_and_a_volunteer_their_village(sessions) -> None:
    officer, volunteer, nobody = await setup(sessions)
    async with sessions.begin() as session:
        await grant(session, officer, Role.OFFICER, "a", None, T0)
        await grant(session, volunteer, Role.VOLUNTEER, "a1", officer, T0)
    async with sessions() as session:
        assert await scope(session, officer) == COMMUNE_A
        assert await scope(session, officer, Role.OFFICER) == COMMUNE_A
        assert await scope(session, officer, Role.VOLUNTEER) == COMMUNE_A  # officers do volunteers' work too
        assert await scope(session, volunteer) == {"a1"}
        assert await scope(session, volunteer, Role.VOLUNTEER) == {"a1"}
        assert await scope(session, volunteer, Role.OFFICER) == set()
        assert await scope(session, nobody) == set()
        assert await can_manage(session, officer, "a2")
        assert not await can_manage(session, officer, "b1")
        assert not await can_manage(session, officer, "p")
        assert not await can_manage(session, volunteer, "a1")


async def test_a_province_officer_scopes_every_level(sessions) -> None:
    officer, *_ = await setup(sessions)
    async with sessions.begin() as session:
        await grant(session, officer, Role.OFFICER, "p", None, T0)
        assert await scope(session, officer) == {s.code for s in TREE}


async def test_grants_are_idempotent_revocable_and_audited(sessions) -> None:
    officer, volunteer, _ = await setup(sessions)
    later = T0 + dt.timedelta(hours=1)
    async with sessions.begin() as session:
        first = await grant(session, volunteer, Role.VOLUNTEER, "a1", officer, T0)
        again = await grant(session, volunteer, Role.VOLUNTEER, "a1", officer, later)
        other = await grant(session, volunteer, Role.VOLUNTEER, "b1", officer, T0)
    assert again.id == first.id
    assert again.granted_at == T0
    async with sessions.begin() as session:
        assert await revoke(session, first.id, officer, later)
        assert not await revoke(session, first.id, officer, later)  # already revoked
        assert not await revoke(session, 999_999, officer, later)
    async with sessions() as session:
        assert [g.id for g in await active_grants(session, volunteer)] == [other.id]
        assert await scope(session, volunteer) == {"b1"}
        stored = await session.get(RoleGrant, first.id)
        assert stored is not None
        assert stored.revoked_at == later  # kept as history
    assert await audit_log(sessions) == [
        ("role_granted", officer, "a1", {"grant_id": first.id, "person_id": volunteer, "role": "volunteer"}),
        ("role_granted", officer, "b1", {"grant_id": other.id, "person_id": volunteer, "role": "volunteer"}),
        ("role_revoked", officer, "a1", {"grant_id": first.id, "person_id": volunteer, "role": "volunteer"}),
    ]
    async with sessions.begin() as session:  # a revoked grant can be given again
        renewed = await grant(session, volunteer, Role.VOLUNTEER, "a1", officer, later)
    assert renewed.id != first.id


async def test_an_invite_is_stored_as_a_hash_and_redeemed_once(sessions) -> None:
    officer, volunteer, other = await setup(sessions)
    async with sessions.begin() as session:
        code = await create_invite(session, Role.VOLUNTEER, "a1", officer, T0, 72)
    assert GROUPED.match(code)
    async with sessions() as session:
        invite = await session.scalar(select(Invite))
    assert invite is not None
    assert invite.code_hash == hashlib.sha256(normalise_code(code).encode()).hexdigest()
    assert invite.expires_at == T0 + dt.timedelta(hours=72)

    typed = f" {code.lower().replace('-', ' ')} "  # as someone may type it
    async with sessions.begin() as session:
        redeemed = await redeem_invite(session, typed, volunteer, T0 + dt.timedelta(hours=1))
    assert redeemed.ok
    assert redeemed.grant is not None
    assert (redeemed.grant.person_id, redeemed.grant.role, redeemed.grant.area_code) == (volunteer, "volunteer", "a1")
    assert redeemed.grant.granted_by == officer
    async with sessions.begin() as session:
        reused = await redeem_invite(session, code, other, T0 + dt.timedelta(hours=2))
        assert await scope(session, other) == set()
        assert await scope(session, volunteer) == {"a1"}
    assert reused.status is RedeemStatus.USED
    assert reused.grant is None

    log = await audit_log(sessions)
    assert [(action, actor, area) for action, actor, area, _ in log] == [
        ("invite_created", officer, "a1"),
        ("role_granted", officer, "a1"),
        ("invite_redeemed", volunteer, "a1"),
    ]
    assert log[0][3] == {"invite_id": invite.id, "role": "volunteer", "expires_at": invite.expires_at.isoformat()}
    assert log[2][3] == {"invite_id": invite.id, "grant_id": redeemed.grant.id, "role": "volunteer"}
    assert code not in str(log)  # the code itself is never stored


@pytest.mark.parametrize("typed", ["", "ABCDE", "ZZZZZ-ZZZZZ", "ABCDE-FGHJK-MN"])
async def test_unknown_codes_are_refused(sessions, typed: str) -> None:
    (person,) = await setup(sessions, people=1)
    async with sessions.begin() as session:
        await create_invite(session, Role.OFFICER, "a", None, T0, 72)
        redeemed = await redeem_invite(session, typed, person, T0)
    assert redeemed.status is RedeemStatus.UNKNOWN
    assert [action for action, *_ in await audit_log(sessions)] == ["invite_created"]


async def test_an_invite_expires_by_the_given_clock(sessions) -> None:
    early, late = await setup(sessions, people=2)
    async with sessions.begin() as session:
        in_time = await create_invite(session, Role.OFFICER, "a", None, T0, 72)
        too_late = await create_invite(session, Role.OFFICER, "a", None, T0, 72)
    deadline = T0 + dt.timedelta(hours=72)
    async with sessions.begin() as session:
        assert (await redeem_invite(session, in_time, early, deadline - dt.timedelta(seconds=1))).ok
        expired = await redeem_invite(session, too_late, late, deadline)
        assert await scope(session, late) == set()
    assert expired.status is RedeemStatus.EXPIRED
    async with sessions() as session:
        unused = await session.scalar(select(Invite).where(Invite.used_at.is_(None)))
    assert unused is not None  # an expired invite stays unused


async def test_two_people_redeeming_one_code_at_once_get_one_grant(sessions) -> None:
    people = await setup(sessions, people=4)
    async with sessions.begin() as session:
        code = await create_invite(session, Role.OFFICER, "a", None, T0, 72)

    async def redeem(person: int) -> RedeemStatus:
        async with sessions.begin() as session:
            return (await redeem_invite(session, code, person, T0)).status

    statuses = await asyncio.gather(*(redeem(p) for p in people))
    assert sorted(statuses) == sorted([RedeemStatus.OK] + [RedeemStatus.USED] * (len(people) - 1))
    winner = people[statuses.index(RedeemStatus.OK)]
    async with sessions() as session:
        grants = list(await session.scalars(select(RoleGrant)))
        invite = await session.scalar(select(Invite))
        redeemed = await session.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "invite_redeemed")
        )
    assert [(g.person_id, g.area_code) for g in grants] == [(winner, "a")]
    assert invite is not None
    assert invite.used_by == winner
    assert redeemed == 1


async def test_an_invite_needs_an_existing_area_and_officers_a_commune(sessions) -> None:
    await setup(sessions, people=0)
    async with sessions.begin() as session:
        with pytest.raises(LookupError, match="nowhere"):
            await create_invite(session, Role.VOLUNTEER, "nowhere", None, T0, 72)
        with pytest.raises(ValueError, match="village"):
            await create_invite(session, Role.OFFICER, "a1", None, T0, 72)
        await create_invite(session, Role.OFFICER, "p", None, T0, 72)
        await create_invite(session, Role.VOLUNTEER, "a1", None, T0, 72)
        assert await session.scalar(select(func.count()).select_from(Invite)) == 2


# --- `hocvuso officer add`, `invite`, `roles` ----------------------------------------------------


def printed_code(out: str) -> str:
    found = re.search(r"/ma ([A-Z0-9]{5}-[A-Z0-9]{5})", out)
    assert found, out
    return found.group(1)


async def test_first_officer_on_a_fresh_database(cli: Cli, shipped: Catalog, sessions) -> None:
    code, out, err = await cli("officer", "add", "--area", "demo")
    assert (code, err) == (0, "")
    assert out.startswith("Officer invite for Xã Mẫu (dữ liệu ví dụ) [demo], one use, until ")
    invite_code = printed_code(out)
    async with sessions.begin() as session:
        person = Person(created_at=T0)
        session.add(person)
        await session.flush()
        redeemed = await redeem_invite(session, invite_code, person.id, dt.datetime.now(dt.UTC))
        assert await scope(session, person.id, Role.OFFICER) == {a.code for a in shipped.areas}  # seeded first
    assert redeemed.ok
    log = await audit_log(sessions)
    assert [(action, actor) for action, actor, *_ in log] == [
        ("invite_created", None),
        ("role_granted", None),
        ("invite_redeemed", person.id),
    ]

    code, out, _ = await cli("roles", "list")
    assert code == 0
    assert re.search(rf"^\s+{redeemed.grant.id}\s+{person.id}\s+officer\s+demo\s+\d{{4}}-", out, re.MULTILINE)
    assert await cli("roles", "list", "--area", "demo-thon-1") == (0, "no active roles\n", "")
    assert (await cli("roles", "list", "--area", "nowhere"))[0] == 1
    assert await cli("roles", "revoke", str(redeemed.grant.id)) == (0, f"role {redeemed.grant.id} revoked\n", "")
    assert await cli("roles", "list") == (0, "no active roles\n", "")
    code, out, err = await cli("roles", "revoke", str(redeemed.grant.id))
    assert (code, out) == (1, "")
    assert "no active role" in err
    assert (await audit_log(sessions))[-1][:3] == ("role_revoked", None, "demo")


async def test_officers_are_for_communes_and_invites_for_known_areas(cli: Cli, sessions) -> None:
    code, out, err = await cli("officer", "add", "--area", "demo-thon-1")
    assert (code, out) == (1, "")
    assert "village" in err
    assert (await cli("invite", "--role", "officer", "--area", "demo-thon-1"))[0] == 1
    code, out, err = await cli("invite", "--role", "volunteer", "--area", "nowhere")
    assert (code, out) == (1, "")
    assert "no area 'nowhere'" in err
    code, out, _ = await cli("invite", "--role", "volunteer", "--area", "demo-thon-1")
    assert code == 0
    assert out.startswith("Volunteer invite for Thôn Đông [demo-thon-1]")
    async with sessions() as session:
        invites = list(await session.scalars(select(Invite)))
    assert [(i.role, i.area_code, i.created_by) for i in invites] == [("volunteer", "demo-thon-1", None)]
    assert invites[0].code_hash == hashlib.sha256(normalise_code(printed_code(out)).encode()).hexdigest()
