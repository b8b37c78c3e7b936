"""The dashboard's page of community classes and survey results for one area (and the areas under it)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from flows.catalog import Catalog
from flows.surveys import SurveySpec
from storage.classes import Counts, counts
from storage.clock import LOCAL_TZ
from storage.metrics import under
from storage.models import Area, CommunityClass
from storage.surveys import AreaAnswers, answers_by_area

PAST = dt.timedelta(days=60)
CLASSES_SHOWN = 50


@dataclass(frozen=True)
class ClassRow:
    klass: CommunityClass
    starts: dt.datetime  # local time
    area: str
    group: str
    counts: Counts
    past: bool


@dataclass(frozen=True)
class SurveyTable:
    survey: SurveySpec
    rows: list[tuple[str, AreaAnswers]]  # (area name, its answers), villages by name, then the total
    total: AreaAnswers


async def community_page(session: AsyncSession, catalog: Catalog, area: Area, now: dt.datetime) -> dict[str, Any]:
    names = {a.code: a.name for a in await session.scalars(select(Area).where(*under(Area.code, [area.code])))}
    found = list(
        await session.scalars(
            select(CommunityClass)
            .where(*under(CommunityClass.area_code, [area.code]), CommunityClass.starts_at > now - PAST)
            .order_by(CommunityClass.starts_at.desc())
            .limit(CLASSES_SHOWN)
        )
    )
    seats = await counts(session, [c.id for c in found])
    groups = {g.id: g.label for g in catalog.community.classes.groups}
    classes = [
        ClassRow(
            c,
            c.starts_at.astimezone(LOCAL_TZ),
            names.get(c.area_code, c.area_code),
            groups.get(c.for_group, c.for_group),
            seats[c.id],
            c.starts_at <= now,
        )
        for c in found
    ]
    surveys = []
    for survey in catalog.surveys.values():
        answered = await answers_by_area(session, survey.id, [area.code])
        rows = sorted(((names.get(code or "", "-"), found) for code, found in answered.items()), key=lambda r: r[0])
        surveys.append(SurveyTable(survey, rows, _total(a for _, a in rows)))
    return {"classes": classes, "surveys": surveys}


def _total(parts: Any) -> AreaAnswers:
    total = AreaAnswers()
    for part in parts:
        total.respondents += part.respondents
        for question, options in part.options.items():
            for option, count in options.items():
                here = total.options.setdefault(question, {})
                here[option] = here.get(option, 0) + count
        for question, value in part.sums.items():
            total.sums[question] = total.sums.get(question, 0) + value
    return total
