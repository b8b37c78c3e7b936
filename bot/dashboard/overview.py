"""The overview of one area: everything the page shows, gathered from storage.metrics and storage.activity."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.broadcasts.service import Stats, recent_stats
from bot.dashboard.chart import Chart, line_chart
from bot.export import pseudonym
from bot.reports.figures import module_order, module_title
from bot.reports.periods import Due, end_moment, next_reports, start_moment
from flows.catalog import Catalog
from flows.community import TargetMeasure
from storage.activity import Delivery, HelpRequest, VolunteerWork, delivery_counts, volunteers_at_work, waiting_help
from storage.clock import LOCAL_TZ
from storage.metrics import AreaMetrics, Funnel, area_metrics, module_funnels, progress_over_time
from storage.models import Area, OutboxStatus

HELP_SHOWN = 20


@dataclass(frozen=True)
class Deliveries:
    """The outbox by channel and kind, one count per status (see ``storage.activity.delivery_counts``)."""

    channel: str
    bulk: bool
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class Overview:
    area: AreaMetrics
    parts: list[AreaMetrics]  # villages of a commune, communes of a province
    funnels: list[tuple[str, Funnel]]  # (title, funnel)
    chart: Chart
    chart_months: list[int]  # what each chart point is: -1 the year's start, 1-12 a month's end, 0 now
    chart_in_percent: bool
    volunteers: list[VolunteerWork]
    mentor_goal: int
    deliveries: list[Deliveries]
    broadcasts: list[Stats]
    statuses: tuple[str, ...]
    help_recent: list[dict[str, Any]]
    help_per_area: list[tuple[str, int]]  # (area name, waiting)
    help_total: int
    reports: list[Due]
    year: int


async def overview(session: AsyncSession, catalog: Catalog, area: Area, key: bytes, now: dt.datetime) -> Overview:
    community = catalog.community
    today = now.astimezone(LOCAL_TZ).date()
    metrics = await area_metrics(session, community, [area.code], year=today.year)
    names = {m.code: m.name for m in metrics}
    here = next(m for m in metrics if m.code == area.code)
    found = sorted(await module_funnels(session, [area.code]), key=lambda f: module_order(catalog, f.module))
    funnels = [(module_title(catalog, f.module), f) for f in found]

    months = list(range(1, today.month))
    moments = [start_moment(dt.date(today.year, 1, 1)), *(end_moment(_month_end(today.year, m)) for m in months), now]
    points = await progress_over_time(session, community, area.code, moments)
    target = next((t for t in here.targets if t.measure == TargetMeasure.ADULTS_COMPLETED), None)
    in_percent = bool(here.adults)
    scale = 100 / here.adults if here.adults else 1
    chart = line_chart(
        {
            "reached": [p.people_reached * scale for p in points],
            "adults": [p.adults_completed * scale for p in points],
        },
        target.target if in_percent and target else None,
        100 if in_percent else None,
    )

    recent, per_area = await waiting_help(session, [area.code], limit=HELP_SHOWN)
    return Overview(
        area=here,
        parts=[m for m in metrics if m.parent_code == area.code],
        funnels=funnels,
        chart=chart,
        chart_months=[-1, *months, 0],
        chart_in_percent=in_percent,
        volunteers=await volunteers_at_work(session, [area.code]),
        mentor_goal=community.mentor_goal,
        deliveries=_pivot(await delivery_counts(session, [area.code])),
        broadcasts=await recent_stats(session, [area.code]),
        statuses=tuple(OutboxStatus),
        help_recent=[_help_row(catalog, request, names, key) for request in recent],
        help_per_area=sorted(((names.get(c or "", c or ""), n) for c, n in per_area.items()), key=lambda x: -x[1]),
        help_total=sum(per_area.values()),
        reports=next_reports(today),
        year=today.year,
    )


def _month_end(year: int, month: int) -> dt.date:
    return (dt.date(year + month // 12, month % 12 + 1, 1)) - dt.timedelta(days=1)


def _pivot(rows: list[Delivery]) -> list[Deliveries]:
    grouped: dict[tuple[str, bool], dict[str, int]] = {}
    for row in rows:
        grouped.setdefault((row.channel, row.bulk), {})[row.status] = row.count
    return [Deliveries(channel, bulk, counts) for (channel, bulk), counts in sorted(grouped.items())]


def _help_row(catalog: Catalog, request: HelpRequest, names: dict[str, str], key: bytes) -> dict[str, Any]:
    return {
        "at": request.at.astimezone(LOCAL_TZ),
        "area": names.get(request.area_code or "", request.area_code or ""),
        "module": module_title(catalog, request.module) if request.module else "",
        "step": request.step,
        "channel": request.channel,
        "person": pseudonym(key, request.person_id),
    }
