"""The dashboard's queries next to the metrics (both databases): funnels and progress agree with
``area_metrics``; help requests wait until the person finishes; outbox counts and volunteers are scoped."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import insert

from flows.catalog import Catalog
from flows.community import AreaKind, AreaSpec
from storage.activity import delivery_counts, volunteers_at_work, waiting_help
from storage.areas import seed_areas, upsert_areas
from storage.metrics import area_metrics, module_funnels, progress_over_time
from storage.models import OutboxMessage, ParticipationEvent, Person, Priority, Role
from storage.repo import delete_person, new_subject
from storage.roles import grant
from tests.helpers import T0

DAY = dt.timedelta(days=1)
OTHER = [
    AreaSpec(code="xa-b", kind=AreaKind.COMMUNE, name="Xã B"),
    AreaSpec(code="xa-b-1", parent="xa-b", kind=AreaKind.VILLAGE, name="Thôn B1", households=10, adults=20),
]


@pytest.fixture
async def log(sessions, shipped: Catalog):
    """The demo commune and commune B; returns a function adding a person with events."""
    async with sessions.begin() as session:
        await seed_areas(session, shipped.areas, T0)
        await upsert_areas(session, OTHER, T0)

    async def add(area: str, *events: tuple[str, str, int], mentor: int | None = None) -> Person:
        """events: (kind, module, day offset from T0)."""
        async with sessions.begin() as session:
            person = Person(created_at=T0, consented_at=T0, subject=new_subject(), area_code=area, mentor_id=mentor)
            session.add(person)
            await session.flush()
            for kind, module, day in events:
                session.add(
                    ParticipationEvent(
                        person_id=person.id,
                        subject=person.subject,
                        area_code=area,
                        module=module,
                        module_version=1,
                        kind=kind,
                        step="",
                        channel="zalo",
                        at=T0 + day * DAY,
                    )
                )
            return person

    return add


async def test_funnels_count_starters_and_completers_as_the_metrics_do(sessions, shipped: Catalog, log) -> None:
    await log("demo-thon-1", ("started", "vneid", 0), ("completed", "vneid", 1), ("completed", "vneid", 2))
    await log("demo-thon-1", ("started", "vneid", 0), ("stuck", "vneid", 0))
    await log("demo-thon-2", ("completed", "vneid", 3))  # a volunteer recorded it: no "started" in chat
    await log("demo-thon-2", ("started", "lua_dao", 1), ("stuck", "lua_dao", 1), ("completed", "lua_dao", 2))
    await log("xa-b-1", ("started", "vneid", 0), ("completed", "vneid", 0))
    async with sessions() as session:
        funnels = {f.module: f for f in await module_funnels(session, ["demo"])}
        metrics = {m.code: m for m in await area_metrics(session, shipped.community, ["demo"], year=2026)}
        assert (funnels["vneid"].started, funnels["vneid"].stuck, funnels["vneid"].completed) == (3, 1, 2)
        assert (funnels["lua_dao"].started, funnels["lua_dao"].stuck, funnels["lua_dao"].completed) == (1, 1, 1)
        assert {m: f.completed for m, f in funnels.items()} == metrics["demo"].completions
        for village in ("demo-thon-1", "demo-thon-2"):
            here = {f.module: f.completed for f in await module_funnels(session, [village])}
            assert here == metrics[village].completions, village
        before = {f.module: f for f in await module_funnels(session, ["demo"], until=T0 + DAY)}
        assert before["vneid"].completed == 1
        assert "lua_dao" in before
        assert before["lua_dao"].completed == 0
        assert {f.module for f in await module_funnels(session, ["xa-b"])} == {"vneid"}


async def test_progress_over_time_ends_where_the_metrics_are(sessions, shipped: Catalog, log) -> None:
    required = shipped.community.gia_dinh_so.required_modules
    await log("demo-thon-1", *(("completed", m, i) for i, m in enumerate(required)))  # done on day 2
    await log("demo-thon-2", ("started", "vneid", 5))
    await log("demo-thon-2", *(("completed", m, 10) for m in required))
    await log("xa-b-1", *(("completed", m, 0) for m in required))
    moments = [T0 - DAY, T0 + 2 * DAY, T0 + 6 * DAY, T0 + 30 * DAY]
    async with sessions() as session:
        points = await progress_over_time(session, shipped.community, "demo", moments)
        assert [(p.people_reached, p.adults_completed) for p in points] == [(0, 0), (1, 1), (2, 1), (3, 2)]
        now = await area_metrics(session, shipped.community, ["demo"], year=2026)
        for area in now:
            (last,) = await progress_over_time(session, shipped.community, area.code, [T0 + 30 * DAY])
            assert (last.people_reached, last.adults_completed) == (area.people_reached, area.adults_completed)


async def test_a_help_request_waits_until_the_person_finishes_what_they_asked_about(sessions, log) -> None:
    stuck = await log("demo-thon-1", ("help_requested", "vneid", 1))
    await log("demo-thon-1", ("help_requested", "vneid", 1), ("completed", "vneid", 2))  # finished since
    await log("demo-thon-2", ("completed", "vneid", 0), ("help_requested", "vneid", 3))  # finished before, asked again
    from_menu = await log("demo-thon-2", ("help_requested", "", 4))
    await log("demo-thon-2", ("help_requested", "", 4), ("completed", "lua_dao", 5))  # any module ends a menu request
    gone = await log("demo-thon-2", ("help_requested", "vneid", 6))
    await log("xa-b-1", ("help_requested", "vneid", 1))
    async with sessions.begin() as session:
        await delete_person(session, gone)
    async with sessions() as session:
        recent, per_area = await waiting_help(session, ["demo"])
        assert next(r.person_id for r in recent) == from_menu.id  # the most recent first
        assert stuck.id in {r.person_id for r in recent}
        assert len(recent) == 3
        assert per_area == {"demo-thon-1": 1, "demo-thon-2": 2}
        first, counts = await waiting_help(session, ["demo"], limit=1)
        assert len(first) == 1
        assert counts == per_area
        assert (await waiting_help(session, ["xa-b"]))[1] == {"xa-b-1": 1}


async def test_outbox_counts_and_volunteers_stay_within_the_areas(sessions, log) -> None:
    here = await log("demo-thon-1")
    there = await log("xa-b-1")
    volunteer = await log("demo-thon-1")
    helped = await log("demo-thon-1", mentor=volunteer.id)
    async with sessions.begin() as session:
        await grant(session, volunteer.id, Role.VOLUNTEER, "demo-thon-1", None, T0)
        await grant(session, there.id, Role.VOLUNTEER, "xa-b-1", None, T0)
        rows = [
            (here.id, Priority.REPLY, "sent"),
            (here.id, Priority.BULK, "sent"),
            (here.id, Priority.BULK, "unreachable"),
            (there.id, Priority.BULK, "sent"),
            (None, Priority.REPLY, "sent"),  # the consent question to someone who never agreed
        ]
        await session.execute(
            insert(OutboxMessage),
            [
                {
                    "channel": "telegram",
                    "recipient": "x",
                    "person_id": person,
                    "payload": {"text": "."},
                    "priority": priority,
                    "status": status,
                    "attempts": 1,
                    "next_attempt_at": T0,
                    "created_at": T0,
                }
                for person, priority, status in rows
            ],
        )
        session.add(
            ParticipationEvent(
                person_id=helped.id,
                subject=helped.subject,
                area_code="demo-thon-1",
                module="vneid",
                module_version=1,
                kind="completed",
                step="vneid_level2",
                channel="in_person",
                at=T0,
                assisted_by=volunteer.id,
            )
        )
    async with sessions() as session:
        counts = {(d.channel, d.bulk, d.status): d.count for d in await delivery_counts(session, ["demo"])}
        assert counts == {
            ("telegram", False, "sent"): 1,
            ("telegram", True, "sent"): 1,
            ("telegram", True, "unreachable"): 1,
        }
        work = await volunteers_at_work(session, ["demo"])
        assert [(v.person_id, v.role, v.area_code, v.mentees, v.helped_in_person) for v in work] == [
            (volunteer.id, "volunteer", "demo-thon-1", 1, 1)
        ]
        assert [v.person_id for v in await volunteers_at_work(session, ["xa-b"])] == [there.id]
