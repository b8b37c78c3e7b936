"""The figures of a quarterly report, from the same metrics as the dashboard.

Every count is ``storage.metrics`` at three moments: the end of the reporting year's day before it
started, the day before the quarter, and the quarter's last day (or now, while it runs). "In the
quarter" and "since the year began" are differences of those cumulative figures, so re-making a past
report gives the same numbers, and its totals match what the dashboard showed at that moment.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from bot.reports.numbers import number, percent
from bot.reports.periods import Quarter, end_moment
from flows.catalog import Catalog
from flows.community import AreaKind, TargetMeasure
from storage.activity import VolunteerWork, volunteers_at_work, waiting_help
from storage.metrics import AreaMetrics, Funnel, TargetProgress, area_metrics, module_funnels
from storage.models import Area


@dataclass(frozen=True)
class Change:
    """A cumulative count at the end, with how much it grew in the quarter and in the year."""

    quarter: int
    year: int
    total: int


@dataclass(frozen=True)
class AreaFigures:
    code: str
    name: str
    people: Change  # people reached
    adults: Change  # adults who completed every required module
    adults_official: int | None
    households_gia_dinh_so: int
    households_official: int | None
    households_registered: int
    adults_target: TargetProgress | None
    households_target: TargetProgress | None
    self_reported: tuple[TargetProgress, ...] = ()  # survey indicators, as answered by the quarter's end


@dataclass(frozen=True)
class ModuleFigures:
    module: str
    title: str
    started: Change
    completed: Change
    stuck: int  # cumulative


@dataclass(frozen=True)
class ReportFigures:
    area: AreaFigures  # the area reported on, its whole subtree
    parts: list[AreaFigures]  # its villages (a commune) or communes (a province)
    modules: list[ModuleFigures]
    volunteers: list[VolunteerWork]  # as of now: roles have no history
    mentor_goal: int
    help_waiting: int  # as of now
    required_titles: list[str]  # the modules an adult completes to count
    quarter: Quarter
    area_kind: str
    until: dt.datetime  # the last moment counted
    partial: bool  # the quarter has not ended yet


async def report_figures(
    session: AsyncSession, catalog: Catalog, area: Area, quarter: Quarter, now: dt.datetime
) -> ReportFigures:
    community = catalog.community
    until = min(end_moment(quarter.end), now)
    moments = (end_moment(quarter.year_start - dt.timedelta(days=1)), end_moment(quarter.start - dt.timedelta(days=1)))
    year_before, quarter_before, at_end = [
        {m.code: m for m in await area_metrics(session, community, [area.code], year=quarter.year, until=moment)}
        for moment in (*moments, until)
    ]

    def change(code: str, field: str) -> Change:
        return _change([getattr(m[code], field) if code in m else 0 for m in (year_before, quarter_before, at_end)])

    def figures(metrics: AreaMetrics) -> AreaFigures:
        targets = {t.measure: t for t in metrics.targets}
        return AreaFigures(
            code=metrics.code,
            name=metrics.name,
            people=change(metrics.code, "people_reached"),
            adults=change(metrics.code, "adults_completed"),
            adults_official=metrics.adults,
            households_gia_dinh_so=metrics.households_gia_dinh_so,
            households_official=metrics.households,
            households_registered=metrics.households_registered,
            adults_target=targets.get(TargetMeasure.ADULTS_COMPLETED),
            households_target=targets.get(TargetMeasure.HOUSEHOLDS_GIA_DINH_SO),
            self_reported=tuple(t for t in metrics.targets if t.self_reported),
        )

    funnels: list[dict[str, Funnel]] = [
        {f.module: f for f in await module_funnels(session, [area.code], until=moment)} for moment in (*moments, until)
    ]
    modules = [
        ModuleFigures(
            module=module,
            title=module_title(catalog, module),
            started=_change([f[module].started if module in f else 0 for f in funnels]),
            completed=_change([f[module].completed if module in f else 0 for f in funnels]),
            stuck=funnels[2][module].stuck,
        )
        for module in sorted(funnels[2], key=lambda m: module_order(catalog, m))
    ]
    _, waiting = await waiting_help(session, [area.code], limit=0)
    rule = community.rule_for(area.code if area.kind == AreaKind.COMMUNE else area.parent_code)
    return ReportFigures(
        area=figures(at_end[area.code]),
        parts=[figures(m) for m in at_end.values() if m.parent_code == area.code],
        modules=modules,
        volunteers=await volunteers_at_work(session, [area.code]),
        mentor_goal=community.mentor_goal,
        help_waiting=sum(waiting.values()),
        required_titles=[module_title(catalog, m) for m in rule.required_modules],
        quarter=quarter,
        area_kind=area.kind,
        until=until,
        partial=until < end_moment(quarter.end),
    )


def self_reported_lines(catalog: Catalog, targets: Sequence[TargetProgress], year: int) -> list[str]:
    """One sentence per survey indicator: what residents reported against the official count and the target."""
    return [
        catalog.say(
            "report_self_reported_item",
            label=t.label,
            value=number(t.value),
            official=number(t.whole) if t.whole else "",
            percent=percent(t.percent),
            target=percent(t.target) if t.target is not None else None,
            year=year,
        )
        for t in targets
    ]


def _change(values: list[int]) -> Change:
    year_before, quarter_before, total = values
    return Change(total - quarter_before, total - year_before, total)


def module_order(catalog: Catalog, module: str) -> tuple[int, int, str]:
    """Modules in the catalog's order, then the field-visit items that count under their own id."""
    spec = catalog.modules.get(module)
    return (0, spec.order, module) if spec else (1, 0, module)


def module_title(catalog: Catalog, module: str) -> str:
    """A module's title, or a field-visit item's label for the items that count under their own id."""
    spec = catalog.modules.get(module)
    if spec is not None:
        return spec.title
    items = {item.id: item.label for item in catalog.community.field_visit}
    return items.get(module, module)


async def authority_name(session: AsyncSession, area: Area) -> str:
    """The name in the report's authority line ("ỦY BAN NHÂN DÂN …"): the area's commune, or the area itself."""
    if area.kind == AreaKind.VILLAGE and area.parent_code:
        parent = await session.get(Area, area.parent_code)
        return parent.name if parent else area.name
    return area.name
