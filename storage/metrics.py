"""Per-area metrics, the "Gia đình số" household status and mentors' mentees, from the participation log.

Definitions (with ``until``, only events at or before it exist: a later completion does not count, and
a later retraction does not cancel anything yet):

- An event *counts* unless it is a ``retracted`` event or a ``retracted`` event points at it
  (``corrects_id``). Completions recorded by a volunteer (channel "in_person", ``assisted_by``) count
  like chat ones; a field-visit item without a module counts under its own id as ``module``.
- A subject's (or person's) *net completions*: the modules with at least one counting ``completed``
  event. Its *first completion* of a module is the earliest of those (by time, then id).
- A household is "Gia đình số" under the rule of its commune (the parent of its village) when a current
  member M (``Person.household_id``) net-completed every required module and another current member
  O ≠ M net-completed at least ``others_min_modules`` distinct modules (any module or field item);
  with ``others_min_modules`` 0, M alone is enough. People who left or deleted their data are not members.
  Membership has no history: with ``until``, today's members count, with their completions until then
  (and only households created by then).
- Per area (each area sums up its whole subtree; an event's place is its ``area_code``):

  - ``people_reached``: distinct subjects with a counting event in the area;
  - ``completions[module]``: subjects whose first completion of the module happened in the area;
  - ``adults_completed``: subjects who net-completed every module their commune requires, placed where
    the set became complete (the last of their first completions of those modules). Villages and communes
    use their commune's rule, over the subject's completions anywhere; a province sums its communes;
  - ``residents_registered`` / ``households_registered``: persons / households of the area now
    (created at or before ``until``); ``households_gia_dinh_so``: those households with the status;
  - ``households`` / ``adults``: the official counts; an area without its own count takes the sum of
    its children's, when every child has one (else None);
  - ``targets``: each target of the area's commune (the defaults for a province) with the measured
    percent (adults_completed / adults or households_gia_dinh_so / households; None without an official
    count) and the percent planned for the year. A ``survey_adults`` target is self-reported: the sum of
    the answers' values to its survey question (adults per household) given for the area, over the
    official adults; households that have not answered count as none. Answers replace earlier ones, so
    with ``until`` an answer changed since counts with its new value only if it was given by then.

  Everything but the household figures and ``residents_registered`` comes from the log alone (``subject``,
  ``area_code``), so it stays the same when a person deletes their data. Events without a subject (rows
  older than migration 0002) are not counted.

Counting happens in SQL, grouped per area (or per household member); Python applies the household rule
to per-member aggregates and adds areas up the tree. Areas nest at most three deep (province > commune >
village, ``flows.community.PARENT_KINDS``): the queries join an area's parent and grandparent rather
than walk the tree with a recursive CTE, whose row estimates lead PostgreSQL to poor plans.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, Subquery, case, distinct, func, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from flows.community import AreaKind, CommunitySpec, HouseholdRule, TargetMeasure
from flows.types import EventKind
from storage.areas import name_key
from storage.models import Area, Household, ParticipationEvent, Person, RoleGrant, SurveyAnswer

__all__ = [
    "AreaMetrics",
    "Funnel",
    "Mentee",
    "ProgressPoint",
    "TargetProgress",
    "area_metrics",
    "counting",
    "household_statuses",
    "mentees",
    "mentor_counts",
    "module_funnels",
    "progress_over_time",
    "under",
]

COMPLETED = EventKind.COMPLETED.value
RETRACTED = EventKind.RETRACTED.value
STARTED = EventKind.STARTED.value
STUCK = EventKind.STUCK.value


@dataclass(frozen=True)
class TargetProgress:
    """One target of an area's commune: the measured percent and the one planned for the year."""

    id: str
    label: str
    measure: TargetMeasure
    percent: float | None  # None when the official count is missing or 0
    target: float | None  # None when the plan sets nothing for the year
    value: int = 0  # what is counted (people, households, adults residents reported)
    whole: int | None = None  # the official count it is a percent of
    self_reported: bool = False  # from survey answers, not from the log


@dataclass(frozen=True)
class AreaMetrics:
    """An area's figures, its whole subtree included (see the module docstring)."""

    code: str
    parent_code: str | None
    kind: AreaKind
    name: str
    people_reached: int
    completions: dict[str, int]  # module -> subjects; modules nobody completed are absent
    adults_completed: int
    residents_registered: int
    households_registered: int
    households_gia_dinh_so: int
    households: int | None  # official
    adults: int | None  # official
    targets: tuple[TargetProgress, ...]


@dataclass(frozen=True)
class Mentee:
    id: int
    display_name: str | None
    modules: tuple[str, ...]  # net-completed, sorted


@dataclass(frozen=True)
class Funnel:
    """One module in some areas: subjects who started it, got stuck in it, completed it (see :func:`module_funnels`)."""

    module: str
    started: int
    stuck: int
    completed: int


@dataclass(frozen=True)
class ProgressPoint:
    """An area's cumulative figures at one moment (see :func:`progress_over_time`)."""

    at: dt.datetime
    people_reached: int
    adults_completed: int


# --- SQL building blocks ---------------------------------------------------------------------


def _within(place: ColumnElement[Any], roots: Sequence[str] | None) -> list[ColumnElement[bool]]:
    """Keep rows whose ``place`` is one of ``roots`` or under one (all rows when None).

    ``place IN (codes)``, so that an index on ``place`` serves it on both databases.
    """
    if roots is None:
        return []
    own, parent = aliased(Area), aliased(Area)
    levels = (own.code, own.parent_code, parent.parent_code)
    under = select(own.code).outerjoin(parent, parent.code == own.parent_code)
    return [place.in_(under.where(or_(*(level.in_(roots) for level in levels))))]


def counting(event: type[ParticipationEvent], until: dt.datetime | None = None) -> list[ColumnElement[bool]]:
    """Conditions for events (of ``event``, possibly an alias) that count: not a retraction, not retracted,
    not after ``until``.

    ``NOT IN`` an uncorrelated list: one pass over the retractions per query on either database (a
    correlated ``NOT EXISTS`` would scan the log once per row on SQLite, which has no index on corrects_id).
    """
    retraction = aliased(ParticipationEvent)
    cancelled = select(retraction.corrects_id).where(retraction.kind == RETRACTED, retraction.corrects_id.is_not(None))
    if until is None:
        return [event.kind != RETRACTED, event.id.not_in(cancelled)]
    cancelled = cancelled.where(retraction.at <= until)
    return [event.kind != RETRACTED, event.id.not_in(cancelled), event.at <= until]


def _first_completions(
    roots: Sequence[str] | None, until: dt.datetime | None, modules: Sequence[str] | None = None
) -> Subquery:
    """Each subject's first counting completion of each module: subject, module, area_code, at, id.

    With ``roots``, only the subjects who completed something under them, but with all their completions:
    the first one may lie elsewhere.
    """
    e = ParticipationEvent
    where = [e.kind == COMPLETED, e.subject.is_not(None), *counting(e, until)]
    if modules is not None:
        where.append(e.module.in_(list(modules)))
    rank = func.row_number().over(partition_by=(e.subject, e.module), order_by=(e.at, e.id)).label("rank")
    query = select(e.subject, e.module, e.area_code, e.at, e.id, rank).select_from(e)
    if roots is not None:  # a join, so that these subjects can drive index lookups by subject
        here = aliased(ParticipationEvent)
        # "+ 0": otherwise SQLite walks the whole subject index, to get DISTINCT's order for free
        subject = (here.subject + 0).label("subject")
        subjects = select(subject).where(here.kind == COMPLETED, *_within(here.area_code, roots))
        local = subjects.distinct().subquery("here")
        query = query.join(local, local.c.subject == e.subject)
    ranked = query.where(*where).subquery("ranked")
    return (
        select(ranked.c.subject, ranked.c.module, ranked.c.area_code, ranked.c.at, ranked.c.id)
        .where(ranked.c.rank == 1)
        .subquery("firsts")
    )


def _set_completers(firsts: Subquery, size: int) -> Subquery:
    """Subjects with a first completion of all ``size`` modules of ``firsts``, at the place and time of the last one."""
    count = func.count().over(partition_by=firsts.c.subject).label("done")
    last = func.row_number().over(partition_by=firsts.c.subject, order_by=(firsts.c.at.desc(), firsts.c.id.desc()))
    ranked = select(firsts.c.subject, firsts.c.area_code, firsts.c.at, count, last.label("last")).subquery(
        "ranked_sets"
    )
    return (
        select(ranked.c.subject, ranked.c.area_code, ranked.c.at)
        .where(ranked.c.done == size, ranked.c.last == 1)
        .subquery("completers")
    )


def under(place: ColumnElement[Any], area_codes: Collection[str] | None) -> list[ColumnElement[bool]]:
    """Conditions for other queries over the log: ``place`` is one of ``area_codes`` or under one (None: anywhere)."""
    return _within(place, _roots(area_codes))


async def _pairs(session: AsyncSession, query: Select[Any]) -> dict[Any, int]:
    """A two-column query (key, count) as a dict."""
    return {key: count for key, count in await session.execute(query)}


def _qualifies(rule: HouseholdRule, members: Iterable[tuple[int, frozenset[str]]]) -> bool:
    """The household rule over its members' (number of net-completed modules, required ones completed)."""
    required = set(rule.required_modules)
    members = list(members)
    leaders = [i for i, (_, done) in enumerate(members) if required <= done]
    if rule.others_min_modules == 0:
        return bool(leaders)
    others = [i for i, (count, _) in enumerate(members) if count >= rule.others_min_modules]
    return any(leader != other for leader in leaders for other in others)


def _rules(community: CommunitySpec) -> list[HouseholdRule]:
    return [community.gia_dinh_so, *(r.gia_dinh_so for r in community.communes.values() if r.gia_dinh_so)]


def _roots(area_codes: Collection[str] | None) -> list[str] | None:
    return None if area_codes is None else sorted(set(area_codes))


async def _household_rows(
    session: AsyncSession, community: CommunitySpec, roots: Sequence[str] | None, until: dt.datetime | None
) -> list[tuple[int, str, bool]]:
    """(household id, village code, "Gia đình số") for the households under ``roots``: two queries."""
    where = _within(Household.area_code, roots)
    if until is not None:
        where.append(Household.created_at <= until)
    homes = (
        await session.execute(
            select(Household.id, Household.area_code, Area.parent_code)
            .join(Area, Area.code == Household.area_code)
            .where(*where)
        )
    ).all()
    if not homes:
        return []
    required = sorted({m for rule in _rules(community) for m in rule.required_modules})
    e = ParticipationEvent
    flags = [func.max(case((e.module == module, 1), else_=0)) for module in required]
    progress = (
        select(Person.household_id, func.count(distinct(e.module)), *flags)
        .select_from(Person)
        .join(Household, Household.id == Person.household_id)
        .join(e, e.person_id == Person.id)
        .where(e.kind == COMPLETED, *counting(e, until), *where)
        .group_by(Person.household_id, Person.id)
    )
    members: defaultdict[int, list[tuple[int, frozenset[str]]]] = defaultdict(list)
    for household_id, count, *done in await session.execute(progress):
        members[household_id].append((count, frozenset(m for m, flag in zip(required, done, strict=True) if flag)))
    return [
        (household_id, village, _qualifies(community.rule_for(commune), members.get(household_id, ())))
        for household_id, village, commune in homes
    ]


async def _survey_sums(
    session: AsyncSession, community: CommunitySpec, roots: Sequence[str] | None, until: dt.datetime | None
) -> dict[tuple[str, str], dict[str, int]]:
    """For each survey question a target adds up: the sum of its answers' values per area."""
    wanted = {
        (t.survey, t.question)
        for targets in (community.targets, *(r.targets or () for r in community.communes.values()))
        for t in targets
        if t.survey is not None and t.question is not None
    }
    if not wanted:
        return {}
    a = SurveyAnswer
    where = [a.survey.in_({s for s, _ in wanted}), a.area_code.is_not(None), *_within(a.area_code, roots)]
    if until is not None:
        where.append(a.answered_at <= until)
    found: defaultdict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for survey, question, area_code, total in await session.execute(
        select(a.survey, a.question, a.area_code, func.coalesce(func.sum(a.value), 0))
        .where(*where)
        .group_by(a.survey, a.question, a.area_code)
    ):
        if (survey, question) in wanted:
            found[(survey, question)][area_code] = int(total)
    return found


async def _people_reached(
    session: AsyncSession, roots: Sequence[str] | None, until: dt.datetime | None
) -> dict[str, int]:
    """Distinct subjects with a counting event, per area and per each of its ancestors (not additive)."""
    e = ParticipationEvent
    visits = (
        select(e.area_code, e.subject)
        .where(e.subject.is_not(None), *counting(e, until), *_within(e.area_code, roots))
        .distinct()
        .cte("visits")
    )
    own, parent = aliased(Area), aliased(Area)
    subjects = func.count(distinct(visits.c.subject))
    here = select(visits.c.area_code, func.count()).group_by(visits.c.area_code)  # (place, subject) are distinct
    up = (
        select(own.parent_code, subjects)
        .select_from(visits)
        .join(own, own.code == visits.c.area_code)
        .group_by(own.parent_code)
    )
    top = (
        select(parent.parent_code, subjects)
        .select_from(visits)
        .join(own, own.code == visits.c.area_code)
        .join(parent, parent.code == own.parent_code)
        .group_by(parent.parent_code)
    )
    return await _pairs(session, select(union_all(here, up, top).subquery()))


# --- public API ------------------------------------------------------------------------------


async def household_statuses(
    session: AsyncSession,
    community: CommunitySpec,
    area_codes: Collection[str] | None = None,
    until: dt.datetime | None = None,
) -> dict[int, bool]:
    """Whether each household of these areas (and the areas under them; all when None) is "Gia đình số"."""
    rows = await _household_rows(session, community, _roots(area_codes), until)
    return {household_id: done for household_id, _, done in rows}


async def area_metrics(
    session: AsyncSession,
    community: CommunitySpec,
    area_codes: Collection[str] | None = None,
    *,
    year: int,
    until: dt.datetime | None = None,
) -> list[AreaMetrics]:
    """Metrics of these areas and every area under them (all areas when None), parents before children,
    siblings by name. ``year`` picks the target percents."""
    roots = _roots(area_codes)
    columns = (Area.code, Area.parent_code, Area.kind, Area.name, Area.households, Area.adults)
    areas = {row.code: row for row in await session.execute(select(*columns).where(*_within(Area.code, roots)))}
    if not areas:
        return []
    children: defaultdict[str | None, list[str]] = defaultdict(list)
    for area in areas.values():
        children[area.parent_code if area.parent_code in areas else None].append(area.code)
    for siblings in children.values():
        siblings.sort(key=lambda code: (name_key(areas[code].name), code))

    def subtree(code: str) -> Iterator[str]:
        yield code
        for child in children[code]:
            yield from subtree(child)

    def commune_of(code: str) -> str | None:
        area = areas[code]
        return area.code if area.kind == AreaKind.COMMUNE else area.parent_code

    reached = await _people_reached(session, roots, until)

    firsts = _first_completions(roots, until)
    completed_in: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for place, module, count in await session.execute(
        select(firsts.c.area_code, firsts.c.module, func.count()).group_by(firsts.c.area_code, firsts.c.module)
    ):
        completed_in[place][module] += count

    required_of = {
        code: tuple(sorted(set(community.rule_for(commune_of(code)).required_modules)))
        for code, area in areas.items()
        if area.kind in (AreaKind.COMMUNE, AreaKind.VILLAGE)
    }
    completed_sets: dict[tuple[str, ...], dict[str, int]] = {}
    for required in sorted(set(required_of.values())):
        completers = _set_completers(_first_completions(roots, until, required), len(required))
        completed_sets[required] = await _pairs(
            session, select(completers.c.area_code, func.count()).group_by(completers.c.area_code)
        )

    registered = select(Person.area_code, func.count()).where(*_within(Person.area_code, roots))
    if until is not None:
        registered = registered.where(Person.created_at <= until)
    residents = await _pairs(session, registered.group_by(Person.area_code))

    reported = await _survey_sums(session, community, roots, until)

    households_in: Counter[str] = Counter()
    gia_dinh_so_in: Counter[str] = Counter()
    for _, village, done in await _household_rows(session, community, roots, until):
        households_in[village] += 1
        gia_dinh_so_in[village] += done

    def official(code: str, column: str) -> int | None:
        own = getattr(areas[code], column)
        if own is not None or not children[code]:
            return own
        parts = [official(child, column) for child in children[code]]
        return None if any(part is None for part in parts) else sum(p for p in parts if p is not None)

    def adults_completed(code: str) -> int:
        if code in required_of:
            placed = completed_sets[required_of[code]]
            return sum(placed.get(c, 0) for c in subtree(code))
        return sum(adults_completed(child) for child in children[code])

    def metrics(code: str) -> AreaMetrics:
        area = areas[code]
        inside = list(subtree(code))
        completions: Counter[str] = Counter()
        for place in inside:
            completions.update(completed_in[place])
        gia_dinh_so = sum(gia_dinh_so_in[place] for place in inside)
        measured = {
            TargetMeasure.ADULTS_COMPLETED: (adults_completed(code), official(code, "adults")),
            TargetMeasure.HOUSEHOLDS_GIA_DINH_SO: (gia_dinh_so, official(code, "households")),
        }
        targets = []
        for target in community.targets_for(commune_of(code)):
            self_reported = target.measure is TargetMeasure.SURVEY_ADULTS
            if self_reported:
                sums = reported.get((target.survey or "", target.question or ""), {})
                value, whole = sum(sums.get(place, 0) for place in inside), official(code, "adults")
            else:
                value, whole = measured[target.measure]
            percent = 100 * value / whole if whole else None
            planned = target.percent_by_year.get(year)
            targets.append(
                TargetProgress(target.id, target.label, target.measure, percent, planned, value, whole, self_reported)
            )
        return AreaMetrics(
            code=code,
            parent_code=area.parent_code,
            kind=AreaKind(area.kind),
            name=area.name,
            people_reached=reached.get(code, 0),
            completions=dict(sorted(completions.items())),
            adults_completed=measured[TargetMeasure.ADULTS_COMPLETED][0],
            residents_registered=sum(residents.get(place, 0) for place in inside),
            households_registered=sum(households_in[place] for place in inside),
            households_gia_dinh_so=measured[TargetMeasure.HOUSEHOLDS_GIA_DINH_SO][0],
            households=official(code, "households"),
            adults=measured[TargetMeasure.ADULTS_COMPLETED][1],
            targets=tuple(targets),
        )

    ordered: list[AreaMetrics] = []

    def walk(parent: str | None) -> None:
        for code in children[parent]:
            ordered.append(metrics(code))
            walk(code)

    walk(None)
    return ordered


async def mentees(session: AsyncSession, mentor_id: int, until: dt.datetime | None = None) -> list[Mentee]:
    """The people whose mentor is ``mentor_id``, in the order they were created, with their net completions."""
    people = (
        await session.execute(
            select(Person.id, Person.display_name).where(Person.mentor_id == mentor_id).order_by(Person.id)
        )
    ).all()
    if not people:
        return []
    e = ParticipationEvent
    done: defaultdict[int, list[str]] = defaultdict(list)
    for person_id, module in await session.execute(
        select(e.person_id, e.module)
        .where(
            e.kind == COMPLETED,
            e.person_id.in_(select(Person.id).where(Person.mentor_id == mentor_id)),
            *counting(e, until),
        )
        .group_by(e.person_id, e.module)
        .order_by(e.person_id, e.module)
    ):
        done[person_id].append(module)
    return [Mentee(person_id, name, tuple(done[person_id])) for person_id, name in people]


async def mentor_counts(session: AsyncSession, area_codes: Collection[str] | None = None) -> dict[int, int]:
    """Mentees per mentor, for every person with an active role over one of these areas or an area under
    them (all areas when None); mentors without mentees have 0."""
    mentors = (
        select(RoleGrant.person_id)
        .where(RoleGrant.revoked_at.is_(None), *_within(RoleGrant.area_code, _roots(area_codes)))
        .distinct()
        .subquery("mentors")
    )
    mentee = aliased(Person)
    return await _pairs(
        session,
        select(mentors.c.person_id, func.count(mentee.id))
        .select_from(mentors)
        .outerjoin(mentee, mentee.mentor_id == mentors.c.person_id)
        .group_by(mentors.c.person_id),
    )


async def module_funnels(
    session: AsyncSession, area_codes: Collection[str] | None = None, until: dt.datetime | None = None
) -> list[Funnel]:
    """Per module, in these areas and every area under them (all areas when None), ordered by module id:

    - ``started``: subjects with a counting ``started`` or ``completed`` event of the module there (a completion
      a volunteer recorded in person started nothing in chat, yet the person did the module);
    - ``stuck``: subjects with a counting ``stuck`` event of the module there;
    - ``completed``: subjects whose first completion of the module happened there, as in
      ``AreaMetrics.completions``; never more than ``started``, since that first completion happened there.
    """
    roots = _roots(area_codes)
    e = ParticipationEvent
    started = func.count(distinct(case((e.kind.in_([STARTED, COMPLETED]), e.subject))))
    stuck = func.count(distinct(case((e.kind == STUCK, e.subject))))
    rows = await session.execute(
        select(e.module, started, stuck)
        .where(
            e.subject.is_not(None),
            e.kind.in_([STARTED, COMPLETED, STUCK]),
            *counting(e, until),
            *_within(e.area_code, roots),
        )
        .group_by(e.module)
    )
    firsts = _first_completions(roots, until)
    completed = await _pairs(
        session,
        select(firsts.c.module, func.count()).where(*_within(firsts.c.area_code, roots)).group_by(firsts.c.module),
    )
    funnels = [Funnel(module, began, stopped, completed.get(module, 0)) for module, began, stopped in rows]
    return sorted((f for f in funnels if f.started), key=lambda f: f.module)


async def progress_over_time(
    session: AsyncSession, community: CommunitySpec, area_code: str, moments: Sequence[dt.datetime]
) -> list[ProgressPoint]:
    """An area's ``people_reached`` and ``adults_completed`` (its whole subtree) at each of ``moments``.

    A point counts what happened up to its moment, judged with the retractions recorded until now: at
    the present it equals :func:`area_metrics`; an earlier point leaves out completions that a volunteer
    undid later (``area_metrics(until=...)`` still counts them). Two queries plus one per household rule.
    """
    if not moments:
        return []
    roots = [area_code]
    e = ParticipationEvent

    def reached_by(column: ColumnElement[Any]) -> list[ColumnElement[Any]]:
        return [func.coalesce(func.sum(case((column <= moment, 1), else_=0)), 0) for moment in moments]

    first_seen = (
        select(e.subject, func.min(e.at).label("at"))
        .where(e.subject.is_not(None), *counting(e, None), *_within(e.area_code, roots))
        .group_by(e.subject)
        .subquery("first_seen")
    )
    reached = (await session.execute(select(*reached_by(first_seen.c.at)))).one()

    places: defaultdict[tuple[str, ...], list[str]] = defaultdict(list)  # required modules -> areas using them
    for code, kind, parent in await session.execute(
        select(Area.code, Area.kind, Area.parent_code).where(*_within(Area.code, roots))
    ):
        if kind in (AreaKind.COMMUNE, AreaKind.VILLAGE):
            commune = code if kind == AreaKind.COMMUNE else parent
            places[tuple(sorted(set(community.rule_for(commune).required_modules)))].append(code)
    adults = [0] * len(moments)
    for required, codes in sorted(places.items()):
        completers = _set_completers(_first_completions(roots, None, required), len(required))
        counts = (
            await session.execute(select(*reached_by(completers.c.at)).where(completers.c.area_code.in_(codes)))
        ).one()
        adults = [total + count for total, count in zip(adults, counts, strict=True)]
    return [ProgressPoint(moment, people, done) for moment, people, done in zip(moments, reached, adults, strict=True)]
