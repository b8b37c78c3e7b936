"""Per-area metrics and the "Gia đình số" household status from the participation log (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flows.community import (
    IN_PERSON,
    CommuneRules,
    CommunitySpec,
    FieldItem,
    HouseholdRule,
    TargetMeasure,
    TargetSpec,
)
from storage.metrics import AreaMetrics, area_metrics, household_statuses, mentees, mentor_counts
from storage.models import Area, Household, ParticipationEvent, Person, RoleGrant
from tests.helpers import T0

HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
TARGETS = [
    TargetSpec(
        id="basic", label="Kỹ năng số cơ bản", measure=TargetMeasure.ADULTS_COMPLETED, percent_by_year={2026: 90}
    ),
    TargetSpec(id="gds", label="Gia đình số", measure=TargetMeasure.HOUSEHOLDS_GIA_DINH_SO, percent_by_year={2027: 50}),
]
RULES = CommunitySpec(
    gia_dinh_so=HouseholdRule(required_modules=["vneid", "lua_dao"], others_min_modules=1),
    targets=TARGETS,
    field_visit=[FieldItem(id="vneid_installed", label="Đã cài VNeID")],
    communes={
        "c2": CommuneRules(
            gia_dinh_so=HouseholdRule(required_modules=["vneid"], others_min_modules=0),
            targets=[TargetSpec(id="c2", label="Hộ số", measure="households_gia_dinh_so", percent_by_year={2026: 80})],
        )
    },
)
# p1 > c1 > c1-v1, c1-v2 ; p1 > c2 (own counts) > c2-v1 (none) ; p2 > c3 > c3-v1, c3-v2 (one count missing)
AREAS = [
    ("p1", None, "province", None, None),
    ("p2", None, "province", None, None),
    ("c1", "p1", "commune", None, None),
    ("c2", "p1", "commune", 4, 8),
    ("c3", "p2", "commune", None, None),
    ("c1-v1", "c1", "village", 10, 20),
    ("c1-v2", "c1", "village", 10, 30),
    ("c2-v1", "c2", "village", None, None),
    ("c3-v1", "c3", "village", 5, 10),
    ("c3-v2", "c3", "village", None, 12),
]


def area_rows(areas: list[tuple[str, str | None, str, int | None, int | None]]) -> list[dict[str, object]]:
    return [
        {"code": c, "parent_code": p, "kind": k, "name": c.upper(), "households": h, "adults": a, "updated_at": T0}
        for c, p, k, h, a in areas
    ]


class World:
    """Builds people, households and log rows in one session, the way the bot stores them."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.rng = random.Random(1)
        self.households = 0

    async def household(self, area: str = "c1-v1", at: dt.datetime = T0) -> int:
        self.households += 1
        row = {"code": f"H{self.households:07d}", "area_code": area, "label": "Nhà", "created_at": at}
        return await self.session.scalar(insert(Household).values(row).returning(Household.id)) or 0

    async def person(
        self, household: int | None = None, area: str = "c1-v1", name: str | None = None, mentor: int | None = None
    ) -> Person:
        person = Person(
            created_at=T0,
            consented_at=T0,
            subject=self.rng.getrandbits(62),
            area_code=area,
            household_id=household,
            display_name=name,
            mentor_id=mentor,
        )
        self.session.add(person)
        await self.session.flush()
        return person

    async def log(
        self,
        person: Person,
        module: str,
        kind: str = "completed",
        at: dt.datetime = T0,
        assisted_by: Person | None = None,
        corrects: int | None = None,
    ) -> int:
        row = {
            "person_id": person.id,
            "subject": person.subject,
            "area_code": person.area_code,
            "module": module,
            "module_version": 1,
            "kind": kind,
            "step": "",
            "channel": IN_PERSON if assisted_by else "telegram",
            "at": at,
            "assisted_by": assisted_by.id if assisted_by else None,
            "corrects_id": corrects,
        }
        return await self.session.scalar(insert(ParticipationEvent).values(row).returning(ParticipationEvent.id)) or 0

    async def retract(self, person: Person, event_id: int, at: dt.datetime = T0 + HOUR) -> int:
        return await self.log(person, "x", kind="retracted", at=at, corrects=event_id)

    async def delete(self, person: Person) -> None:
        await self.session.execute(delete(Person).where(Person.id == person.id))
        self.session.expunge(person)


@pytest.fixture
async def world(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[World]:
    async with sessions() as session:
        await session.execute(insert(Area), area_rows(AREAS))
        yield World(session)


async def status(world: World, household: int, until: dt.datetime | None = None) -> bool:
    return (await household_statuses(world.session, RULES, until=until))[household]


async def metrics(
    world: World, area_codes: list[str] | None = None, until: dt.datetime | None = None, year: int = 2026
) -> dict[str, AreaMetrics]:
    return {m.code: m for m in await area_metrics(world.session, RULES, area_codes, year=year, until=until)}


# --- the household rule ----------------------------------------------------------------------


async def test_a_household_needs_a_second_member_who_completed_something(world: World) -> None:
    home = await world.household()
    first, second = await world.person(home), await world.person(home)
    await world.log(first, "vneid")
    await world.log(first, "lua_dao")
    await world.log(first, "binh_dan_hoc_vu_so")
    await world.log(second, "vneid", kind="started")
    assert await status(world, home) is False  # everything done by one member only
    await world.log(second, "vneid_installed")  # a field item counts as a module
    assert await status(world, home) is True

    alone = await world.household()
    single = await world.person(alone)
    for module in ("vneid", "lua_dao", "vneid_installed"):
        await world.log(single, module)
    assert await household_statuses(world.session, RULES, ["c1-v1"]) == {home: True, alone: False}
    assert await household_statuses(world.session, RULES, ["c1-v2"]) == {}


async def test_others_must_reach_the_number_of_distinct_modules(world: World) -> None:
    rules = RULES.model_copy(update={"gia_dinh_so": HouseholdRule(required_modules=["vneid"], others_min_modules=2)})
    home = await world.household()
    first, second = await world.person(home), await world.person(home)
    await world.log(first, "vneid")
    await world.log(second, "lua_dao")
    await world.log(second, "lua_dao", at=T0 + HOUR)  # the same module twice is one module
    assert (await household_statuses(world.session, rules))[home] is False
    await world.log(second, "vneid")
    assert (await household_statuses(world.session, rules))[home] is True


async def test_a_member_who_leaves_takes_their_completions_along(world: World) -> None:
    old, new = await world.household("c1-v1"), await world.household("c1-v2")
    leader, helper = await world.person(old), await world.person(old)
    other_leader = await world.person(new, area="c1-v2")
    for person in (leader, other_leader):
        await world.log(person, "vneid")
        await world.log(person, "lua_dao")
    await world.log(helper, "vneid_installed")
    assert (await status(world, old), await status(world, new)) == (True, False)

    helper.household_id, helper.area_code = new, "c1-v2"
    assert (await status(world, old), await status(world, new)) == (False, True)
    found = await metrics(world)
    assert found["c1-v1"].completions == {"lua_dao": 1, "vneid": 1, "vneid_installed": 1}  # done while living there
    assert (found["c1-v1"].residents_registered, found["c1-v2"].residents_registered) == (1, 2)
    assert (found["c1-v1"].households_gia_dinh_so, found["c1-v2"].households_gia_dinh_so) == (0, 1)

    helper.household_id = None  # left, joined nothing
    assert (await status(world, old), await status(world, new)) == (False, False)


async def test_a_completion_recorded_by_a_volunteer_counts(world: World) -> None:
    volunteer = await world.person()
    home = await world.household()
    visited, helper = await world.person(home), await world.person(home)
    await world.log(helper, "binh_dan_hoc_vu_so")
    await world.log(visited, "vneid", assisted_by=volunteer)
    assert await status(world, home) is False
    await world.log(visited, "lua_dao", assisted_by=volunteer)
    assert await status(world, home) is True
    village = (await metrics(world))["c1-v1"]
    assert (village.adults_completed, village.people_reached, village.households_gia_dinh_so) == (1, 2, 1)


async def test_deleting_a_member_changes_the_household_but_not_the_log_counts(world: World) -> None:
    home = await world.household()
    leader, helper = await world.person(home), await world.person(home)
    await world.log(leader, "vneid")
    await world.log(leader, "lua_dao")
    await world.log(helper, "vneid_installed")
    before = await metrics(world)
    assert (before["c1"].households_gia_dinh_so, before["c1"].adults_completed) == (1, 1)

    await world.delete(helper)
    assert await status(world, home) is False
    await world.delete(leader)
    after = await metrics(world)
    for code in ("c1-v1", "c1", "p1"):
        kept = (before[code].people_reached, before[code].completions, before[code].adults_completed)
        assert (after[code].people_reached, after[code].completions, after[code].adults_completed) == kept
        assert (after[code].residents_registered, after[code].households_gia_dinh_so) == (0, 0)
        assert after[code].households_registered == 1  # the household row is the caller's to remove
    assert after["c1-v1"].people_reached == 2
    assert after["c1-v1"].completions["vneid_installed"] == 1


async def test_a_retraction_cancels_a_completion(world: World) -> None:
    volunteer = await world.person()
    home = await world.household()
    leader, helper = await world.person(home), await world.person(home)
    await world.log(leader, "vneid")
    mistake = await world.log(leader, "lua_dao", assisted_by=volunteer)
    only = await world.log(helper, "vneid_installed", assisted_by=volunteer)
    assert await status(world, home) is True

    await world.retract(leader, mistake, at=T0 + HOUR)
    await world.retract(helper, only, at=T0 + 2 * HOUR)
    assert await status(world, home) is False
    village = (await metrics(world))["c1-v1"]
    assert (village.adults_completed, village.completions, village.people_reached) == (0, {"vneid": 1}, 1)
    earlier = (await metrics(world, until=T0 + HOUR + dt.timedelta(minutes=30)))["c1-v1"]  # before one retraction
    assert (earlier.adults_completed, earlier.completions) == (0, {"vneid": 1, "vneid_installed": 1})
    assert await status(world, home, until=T0 + HOUR / 2) is True

    await world.log(leader, "lua_dao", at=T0 + DAY)  # done properly later
    await world.log(helper, "vneid_installed", at=T0 + DAY)
    assert await status(world, home) is True
    assert (await metrics(world))["c1-v1"].adults_completed == 1


async def test_a_commune_can_set_its_own_rule_and_targets(world: World) -> None:
    here, there = await world.household("c2-v1"), await world.household("c1-v1")
    alone_here, alone_there = await world.person(here, area="c2-v1"), await world.person(there)
    await world.log(alone_here, "vneid")
    await world.log(alone_there, "vneid")
    assert await household_statuses(world.session, RULES) == {here: True, there: False}
    found = await metrics(world)
    assert (found["c2-v1"].adults_completed, found["c1-v1"].adults_completed, found["p1"].adults_completed) == (1, 0, 1)
    assert [(t.id, t.percent, t.target) for t in found["c2"].targets] == [("c2", 25.0, 80)]  # 1 of 4 households
    assert [(t.id, t.percent, t.target) for t in found["c2-v1"].targets] == [("c2", None, 80)]  # no official count
    assert [t.id for t in found["c1-v1"].targets] == ["basic", "gds"]
    assert [t.id for t in found["p1"].targets] == ["basic", "gds"]


async def test_until_leaves_out_later_events(world: World) -> None:
    home = await world.household()
    leader, helper, late = await world.person(home), await world.person(home), await world.person()
    await world.log(leader, "vneid", at=T0)
    await world.log(helper, "vneid_installed", at=T0 + DAY)
    await world.log(leader, "lua_dao", at=T0 + 2 * DAY)
    await world.log(late, "vneid", kind="started", at=T0 + 5 * DAY)
    later = await world.household(at=T0 + 4 * DAY)
    cut = T0 + DAY + HOUR
    assert await household_statuses(world.session, RULES, until=cut) == {home: False}  # `later` did not exist yet
    assert await status(world, home, until=T0 + 3 * DAY) is True
    then = (await metrics(world, until=cut))["c1-v1"]
    assert (then.people_reached, then.completions, then.adults_completed) == (2, {"vneid": 1, "vneid_installed": 1}, 0)
    assert then.households_registered == 1
    now = (await metrics(world))["c1-v1"]
    assert (now.people_reached, now.adults_completed, now.households_gia_dinh_so) == (3, 1, 1)
    assert now.households_registered == 2
    assert later in await household_statuses(world.session, RULES)
    assert (await metrics(world, until=T0 - DAY))["c1-v1"].residents_registered == 0  # nobody had registered yet


async def test_each_completion_is_placed_once_and_rolled_up(world: World) -> None:
    mover = await world.person(area="c1-v1")
    await world.log(mover, "vneid")
    mover.area_code = "c1-v2"
    await world.session.flush()
    await world.log(mover, "lua_dao", at=T0 + DAY)  # completes the set in c1-v2
    await world.log(mover, "vneid", at=T0 + 2 * DAY)  # again: the first completion still counts
    found = await metrics(world)
    assert [m.code for m in found.values()] == [
        "p1",
        "c1",
        "c1-v1",
        "c1-v2",
        "c2",
        "c2-v1",
        "p2",
        "c3",
        "c3-v1",
        "c3-v2",
    ]
    summary = {code: (m.people_reached, m.completions, m.adults_completed) for code, m in found.items()}
    assert summary["c1-v1"] == (1, {"vneid": 1}, 0)
    assert summary["c1-v2"] == (1, {"lua_dao": 1}, 1)
    assert summary["c1"] == summary["p1"] == (1, {"lua_dao": 1, "vneid": 1}, 1)  # one person, counted once
    assert summary["p2"] == (0, {}, 0)
    assert (await metrics(world, ["c1-v2"])).keys() == {"c1-v2"}
    assert (await metrics(world, ["c1-v2"]))["c1-v2"] == found["c1-v2"]  # earlier completions elsewhere still count
    assert (await metrics(world, ["c1-v1"]))["c1-v1"] == found["c1-v1"]

    official = {code: (m.households, m.adults) for code, m in found.items()}
    assert official["c1"] == (20, 50)
    assert official["c2"] == (4, 8)
    assert official["p1"] == (24, 58)
    assert official["c2-v1"] == (None, None)
    assert official["c3"] == (None, 22)
    assert official["p2"] == (None, 22)
    basic = {code: m.targets[0] for code, m in found.items() if code != "c2" and not code.startswith("c2-")}
    assert basic["c1-v2"].percent == pytest.approx(100 / 30)
    assert basic["c1-v2"].target == 90
    assert basic["c1-v1"].percent == 0
    assert basic["c1"].percent == pytest.approx(2)
    assert basic["p2"].percent == 0
    gds = found["c3"].targets[1]
    assert (gds.measure, gds.percent, gds.target) == (TargetMeasure.HOUSEHOLDS_GIA_DINH_SO, None, None)
    assert (await metrics(world, year=2027))["c1"].targets[1].target == 50


async def test_mentees_and_mentor_counts(world: World) -> None:
    volunteer, commune_officer, former, elsewhere = [await world.person() for _ in range(4)]
    grants = [
        (volunteer, "c1-v1", None),
        (commune_officer, "c1", None),
        (former, "c1-v1", T0),
        (elsewhere, "c2-v1", None),
    ]
    await world.session.execute(
        insert(RoleGrant),
        [
            {"person_id": p.id, "role": "volunteer", "area_code": a, "granted_at": T0, "revoked_at": revoked}
            for p, a, revoked in grants
        ],
    )
    an = await world.person(name="An", mentor=volunteer.id)
    bich = await world.person(mentor=volunteer.id)
    await world.person(mentor=commune_officer.id)
    await world.person(mentor=former.id)
    await world.log(an, "vneid")
    await world.log(an, "vneid", at=T0 + DAY)
    await world.log(an, "lua_dao", kind="started")
    undone = await world.log(an, "lua_dao")
    await world.retract(an, undone)
    await world.log(bich, "vneid_installed", assisted_by=volunteer)
    await world.log(volunteer, "dich_vu_cong")  # the mentor's own completion is not a mentee's

    found = await mentees(world.session, volunteer.id)
    assert [(m.id, m.display_name, m.modules) for m in found] == [
        (an.id, "An", ("vneid",)),
        (bich.id, None, ("vneid_installed",)),
    ]
    assert await mentees(world.session, elsewhere.id) == []
    assert await mentor_counts(world.session, ["c1"]) == {volunteer.id: 2, commune_officer.id: 1}
    assert await mentor_counts(world.session, ["c1-v1"]) == {volunteer.id: 2}
    assert await mentor_counts(world.session) == {volunteer.id: 2, commune_officer.id: 1, elsewhere.id: 0}
    await world.delete(bich)
    assert [m.id for m in await mentees(world.session, volunteer.id)] == [an.id]


# --- a synthetic commune, checked against a count in plain Python ----------------------------

BIG_RULES = CommunitySpec(
    gia_dinh_so=HouseholdRule(required_modules=["vneid", "dich_vu_cong", "lua_dao"], others_min_modules=2),
    targets=TARGETS,
    field_visit=[FieldItem(id="vneid_installed", label="Đã cài VNeID")],
    communes={
        "s2": CommuneRules(gia_dinh_so=HouseholdRule(required_modules=["vneid", "lua_dao"], others_min_modules=0))
    },
)
MODULES = ["vneid", "dich_vu_cong", "lua_dao", "binh_dan_hoc_vu_so", "vneid_installed"]
SPAN = 90 * 86400  # seconds of activity after T0


@dataclass
class Synthetic:
    """Generated rows and the facts the plain-Python count needs."""

    areas: list[tuple[str, str | None, str, int | None, int | None]]
    households: list[dict[str, object]] = field(default_factory=list)
    persons: list[dict[str, object]] = field(default_factory=list)  # as stored before deletions
    events: list[dict[str, object]] = field(default_factory=list)
    grants: list[dict[str, object]] = field(default_factory=list)
    deleted: set[int] = field(default_factory=set)


def synthesize(seed: int = 20261102) -> Synthetic:
    """Commune s1: 10 villages, ~5,000 households, ~20,000 residents; commune s2 (own rule): 2 small villages."""
    rng = random.Random(seed)
    villages = [(f"s1-v{i}", "s1") for i in range(1, 11)] + [("s2-v1", "s2"), ("s2-v2", "s2")]
    areas: list[tuple[str, str | None, str, int | None, int | None]] = [
        ("sp", None, "province", None, None),
        ("s1", "sp", "commune", None, None),
        ("s2", "sp", "commune", 150, None),
    ]
    areas += [(code, parent, "village", rng.randint(400, 600), rng.randint(1500, 2500)) for code, parent in villages]
    areas[-1] = (*areas[-1][:4], None)  # s2-v2 lacks an adult count, so s2's (and sp's) adults are unknown
    data = Synthetic(areas)
    codes = [code for code, _ in villages]
    weights = [10] * 10 + [2, 2]
    home_village: dict[int, str] = {}
    for household_id in range(1, 5_201):
        village = rng.choices(codes, weights)[0]
        home_village[household_id] = village
        data.households.append(
            {"id": household_id, "code": f"S{household_id:07d}", "area_code": village, "label": "Nhà", "created_at": T0}
        )
    subjects: set[int] = set()

    def new_person(person_id: int, area: str | None, household: int | None, mentor: int | None) -> dict[str, object]:
        subject = rng.getrandbits(62)
        while subject in subjects:
            subject = rng.getrandbits(62)
        subjects.add(subject)
        created = T0 + dt.timedelta(seconds=rng.randrange(SPAN // 2))
        row = {"id": person_id, "subject": subject, "area_code": area, "household_id": household, "mentor_id": mentor}
        return row | {"created_at": created, "consented_at": created, "display_name": None}

    volunteers = [new_person(i, rng.choice(codes), None, None) for i in range(1, 31)]
    data.persons += volunteers
    for volunteer in volunteers:
        revoked = T0 if rng.random() < 0.2 else None
        area = volunteer["area_code"] if rng.random() < 0.7 else "s1"
        data.grants.append(
            {
                "person_id": volunteer["id"],
                "role": "volunteer",
                "area_code": area,
                "granted_at": T0,
                "revoked_at": revoked,
            }
        )
    person_id = 100
    for household_id, village in home_village.items():
        for _ in range(rng.choice((1, 2, 3, 3, 4, 4, 4, 5, 5, 6, 7))):
            person_id += 1
            mentor = rng.choice(volunteers)["id"] if rng.random() < 0.2 else None
            data.persons.append(new_person(person_id, village, household_id, mentor))
    resident_rows = data.persons[len(volunteers) :]

    event_id = 0
    completions_in_person: list[dict[str, object]] = []
    others: list[dict[str, object]] = []

    def event(person: dict[str, object], area: object, module: str, kind: str, at: dt.datetime, by: int | None):
        nonlocal event_id
        event_id += 1
        row = {
            "id": event_id,
            "person_id": person["id"],
            "subject": person["subject"],
            "area_code": area,
            "module": module,
            "module_version": 1,
            "kind": kind,
            "step": "",
            "channel": IN_PERSON if by else "zalo",
            "at": at,
            "assisted_by": by,
            "corrects_id": None,
        }
        data.events.append(row)
        return row

    for person in resident_rows:
        moved_at = None
        old_area = person["area_code"]
        luck = rng.random()
        if luck < 0.05:  # moved to another household, maybe another village
            moved_at = T0 + dt.timedelta(seconds=rng.randrange(SPAN))
            person["household_id"] = rng.randrange(1, 5_201)
            person["area_code"] = home_village[person["household_id"]]
        elif luck < 0.07:  # left their household, joined none
            person["household_id"] = None

        def place(at: dt.datetime, person=person, moved_at=moved_at, old_area=old_area) -> object:
            return old_area if moved_at is not None and at < moved_at else person["area_code"]

        engagement = rng.random()
        if rng.random() < 0.85:
            at = T0 + dt.timedelta(seconds=rng.randrange(SPAN))
            others.append(
                event(person, place(at), rng.choice(MODULES), rng.choice(("started", "step", "stuck")), at, None)
            )
        for module in MODULES:
            if rng.random() >= engagement * 0.8:
                continue
            for _ in range(2 if rng.random() < 0.1 else 1):
                at = T0 + dt.timedelta(seconds=rng.randrange(SPAN))
                by = rng.choice(volunteers)["id"] if rng.random() < 0.25 else None
                row = event(person, place(at), module, "completed", at, by)
                if by:
                    completions_in_person.append(row)
    for target in rng.sample(completions_in_person, len(completions_in_person) // 15) + rng.sample(others, 150):
        at = target["at"] + dt.timedelta(seconds=rng.randrange(1, 20 * 86400))
        retraction = event(
            data.persons[0], target["area_code"], target["module"], "retracted", at, target["assisted_by"]
        )
        retraction |= {"person_id": target["person_id"], "subject": target["subject"], "corrects_id": target["id"]}
    data.deleted = {p["id"] for p in rng.sample(resident_rows, 200)}
    return data


def expected_metrics(
    data: Synthetic, rules: CommunitySpec, year: int, until: dt.datetime | None
) -> tuple[dict[str, tuple], dict[int, bool]]:
    """The module docstring's definitions, counted naively from the generated rows."""
    parent = {code: p for code, p, *_ in data.areas}
    kind = {code: k for code, _, k, *_ in data.areas}
    official = {code: {"households": h, "adults": a} for code, _, _, h, a in data.areas}

    def ancestors(code: str) -> list[str]:
        chain = []
        while code is not None:
            chain.append(code)
            code = parent[code]
        return chain

    def commune(code: str) -> str | None:
        return code if kind[code] == "commune" else parent[code]

    def total(code: str, column: str) -> int | None:
        if official[code][column] is not None:
            return official[code][column]
        parts = [total(child, column) for child in parent if parent[child] == code]
        return None if not parts or None in parts else sum(parts)

    exists = [e for e in data.events if until is None or e["at"] <= until]
    cancelled = {e["corrects_id"] for e in exists if e["kind"] == "retracted"}
    counting = [e for e in exists if e["kind"] != "retracted" and e["id"] not in cancelled]
    reached: dict[str, set[int]] = defaultdict(set)
    first: dict[tuple[int, str], tuple] = {}
    for e in counting:
        for code in ancestors(e["area_code"]):
            reached[code].add(e["subject"])
        key = (e["subject"], e["module"])
        if e["kind"] == "completed" and (key not in first or (e["at"], e["id"]) < first[key][:2]):
            first[key] = (e["at"], e["id"], e["area_code"])
    completions: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    modules_of: dict[int, set[str]] = defaultdict(set)
    for (subject, module), (_, _, area) in first.items():
        modules_of[subject].add(module)
        for code in ancestors(area):
            completions[code][module] += 1

    def adults(code: str) -> int:
        if kind[code] == "province":
            return sum(adults(child) for child in parent if parent[child] == code)
        required = rules.rule_for(commune(code)).required_modules
        count = 0
        for subject, done in modules_of.items():
            if set(required) <= done:
                where = max(first[(subject, m)] for m in required)[2]
                count += code in ancestors(where)
        return count

    current = [p for p in data.persons if p["id"] not in data.deleted]
    members: dict[int, list[set[str]]] = defaultdict(list)
    for p in current:
        if p["household_id"] is not None:
            members[p["household_id"]].append(modules_of.get(p["subject"], set()))
    statuses = {}
    for h in data.households:
        rule = rules.rule_for(parent[h["area_code"]])
        group = members[h["id"]]
        statuses[h["id"]] = any(
            set(rule.required_modules) <= mine
            and (
                rule.others_min_modules == 0
                or any(len(theirs) >= rule.others_min_modules for j, theirs in enumerate(group) if j != i)
            )
            for i, mine in enumerate(group)
        )
    expected = {}
    for code in parent:
        inside = [h for h in data.households if code in ancestors(h["area_code"])]
        gds = sum(statuses[h["id"]] for h in inside)
        measured = {
            "adults_completed": (adults(code), total(code, "adults")),
            "households_gia_dinh_so": (gds, total(code, "households")),
        }
        targets = []
        for t in rules.targets_for(commune(code)):
            value, whole = measured[t.measure]
            targets.append((t.id, 100 * value / whole if whole else None, t.percent_by_year.get(year)))
        residents = [
            p
            for p in current
            if p["area_code"] and code in ancestors(p["area_code"]) and (until is None or p["created_at"] <= until)
        ]
        expected[code] = (
            len(reached[code]),
            dict(completions[code]),
            measured["adults_completed"][0],
            len(residents),
            len(inside),
            gds,
            total(code, "households"),
            total(code, "adults"),
            targets,
        )
    return expected, statuses


def summary(m: AreaMetrics) -> tuple:
    targets = [(t.id, t.percent, t.target) for t in m.targets]
    return (
        m.people_reached,
        m.completions,
        m.adults_completed,
        m.residents_registered,
        m.households_registered,
        m.households_gia_dinh_so,
        m.households,
        m.adults,
        targets,
    )


async def test_a_synthetic_commune_matches_a_plain_count(sessions: async_sessionmaker[AsyncSession]) -> None:
    data = synthesize()
    assert 19_000 < len(data.persons) < 22_000
    assert len(data.households) == 5_200
    async with sessions.begin() as session:
        # Core tables, not ORM entities: the ORM's bulk insert splits the rows wherever their NULLs differ
        for model, rows in (
            (Area, area_rows(data.areas)),
            (Household, data.households),
            (Person, data.persons),
            (RoleGrant, data.grants),
            (ParticipationEvent, data.events),
        ):
            await session.execute(insert(model.__table__), rows)
        await session.execute(delete(Person).where(Person.id.in_(sorted(data.deleted))))

    mentors = defaultdict(int)
    active = {g["person_id"] for g in data.grants if g["revoked_at"] is None}
    for p in data.persons:
        if p["id"] not in data.deleted and p["mentor_id"] in active:
            mentors[p["mentor_id"]] += 1
    async with sessions() as session:
        for until in (T0 + 45 * DAY, None):
            expected, statuses = expected_metrics(data, BIG_RULES, 2026, until)
            found = await area_metrics(session, BIG_RULES, year=2026, until=until)
            assert [m.code for m in found][:3] == ["sp", "s1", "s1-v1"]
            assert {m.code: summary(m) for m in found} == expected
            assert await household_statuses(session, BIG_RULES, until=until) == statuses
            assert sum(statuses.values()) > 200  # the rule was met, and missed, often enough to mean something
            assert sum(not done for done in statuses.values()) > 200
        one = await area_metrics(session, BIG_RULES, ["s1-v3"], year=2026)
        assert [summary(m) for m in one] == [expected["s1-v3"]]
        commune = await area_metrics(session, BIG_RULES, ["s2"], year=2026)
        assert {m.code: summary(m) for m in commune} == {code: expected[code] for code in ("s2", "s2-v1", "s2-v2")}
        assert await mentor_counts(session) == {v: mentors.get(v, 0) for v in active}
