"""Survey answers: one row per (survey, question, respondent), replaced by a later answer; counted per area.

The respondent of a ``per: household`` survey is the person's household ("h<id>"), or the person
("p<id>") when they have none; of a ``per: person`` survey, always the person. So a second answer,
by the same person or by another member of the household, replaces the first instead of adding to it.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field

from sqlalchemy import delete, distinct, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from flows.surveys import SurveyOption, SurveyPer, SurveySpec
from storage.db import conflict_insert
from storage.metrics import under
from storage.models import Household, Person, SurveyAnswer

__all__ = ["AreaAnswers", "answers_by_area", "merge_respondents", "respondent_of", "save_answer"]


@dataclass
class AreaAnswers:
    """One area's answers to one survey: respondents, and per question the count of each option."""

    respondents: int = 0
    options: dict[str, dict[str, int]] = field(default_factory=dict)  # question -> option -> respondents
    sums: dict[str, int] = field(default_factory=dict)  # question -> sum of the options' values


def respondent_of(survey: SurveySpec, person: Person) -> str:
    if survey.per is SurveyPer.HOUSEHOLD and person.household_id is not None:
        return f"h{person.household_id}"
    return f"p{person.id}"


async def merge_respondents(session: AsyncSession, keep_id: int, gone_id: int) -> None:
    """Two people became one (storage.links): the other's own answers become the kept person's,
    except where the kept person already answered the same question."""
    keep, gone = f"p{keep_id}", f"p{gone_id}"
    twin = aliased(SurveyAnswer)
    answered = exists().where(
        twin.survey == SurveyAnswer.survey, twin.question == SurveyAnswer.question, twin.respondent == keep
    )
    await session.execute(delete(SurveyAnswer).where(SurveyAnswer.respondent == gone, answered))
    await session.execute(update(SurveyAnswer).where(SurveyAnswer.respondent == gone).values(respondent=keep))


async def save_answer(
    session: AsyncSession, survey: SurveySpec, question: str, option: SurveyOption, person: Person, now: dt.datetime
) -> None:
    """Store (or replace) the respondent's answer to one question."""
    household_id = person.household_id if survey.per is SurveyPer.HOUSEHOLD else None
    area_code = person.area_code
    if household_id is not None:
        area_code = await session.scalar(select(Household.area_code).where(Household.id == household_id)) or area_code
    values = {
        "person_id": person.id,
        "household_id": household_id,
        "area_code": area_code,
        "option": option.id,
        "value": option.value,
        "answered_at": now,
    }
    statement = conflict_insert(session, SurveyAnswer).values(
        survey=survey.id, question=question, respondent=respondent_of(survey, person), **values
    )
    await session.execute(
        statement.on_conflict_do_update(index_elements=["survey", "question", "respondent"], set_=values)
    )


async def answers_by_area(
    session: AsyncSession, survey: str, area_codes: Collection[str] | None = None
) -> dict[str | None, AreaAnswers]:
    """The answers to ``survey`` per area they were given for (villages, usually), in these areas and under them."""
    a = SurveyAnswer
    where = [a.survey == survey, *under(a.area_code, area_codes)]
    found: defaultdict[str | None, AreaAnswers] = defaultdict(AreaAnswers)
    for area_code, count in await session.execute(
        select(a.area_code, func.count(distinct(a.respondent))).where(*where).group_by(a.area_code)
    ):
        found[area_code].respondents = count
    for area_code, question, option, count, total in await session.execute(
        select(a.area_code, a.question, a.option, func.count(), func.coalesce(func.sum(a.value), 0))
        .where(*where)
        .group_by(a.area_code, a.question, a.option)
    ):
        here = found[area_code]
        here.options.setdefault(question, {})[option] = count
        here.sums[question] = here.sums.get(question, 0) + int(total)
    return dict(found)
