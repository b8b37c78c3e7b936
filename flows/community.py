"""Community content: areas, the "Gia đình số" rule, targets and field-visit items.

``content/areas.yaml`` (or a CSV with the same columns) lists the areas::

    areas:
      - {code: demo, kind: commune, name: "Xã Mẫu"}
      - {code: demo-thon-1, parent: demo, kind: village, name: "Thôn 1", households: 320, adults: 900}

``content/community.yaml`` holds the rule, the targets and the field-visit
items, with optional overrides per commune (``communes: {<code>: {...}}``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

AREA_CODE = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
AREA_COLUMNS = ("code", "parent", "kind", "name", "households", "adults")
IN_PERSON = "in_person"  # the channel of events a volunteer records after a visit


class AreaKind(StrEnum):
    PROVINCE = "province"
    COMMUNE = "commune"
    VILLAGE = "village"


# Which kind of area may contain which.
PARENT_KINDS = {AreaKind.PROVINCE: (), AreaKind.COMMUNE: (AreaKind.PROVINCE,), AreaKind.VILLAGE: (AreaKind.COMMUNE,)}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AreaSpec(_Strict):
    code: str
    parent: str | None = None
    kind: AreaKind
    name: str = Field(min_length=1, max_length=120)
    households: int | None = Field(default=None, ge=0)
    adults: int | None = Field(default=None, ge=0)

    @field_validator("code", "parent")
    @classmethod
    def _code(cls, value: str | None) -> str | None:
        if value is not None and not AREA_CODE.match(value):
            raise ValueError(f"'{value}' is not an area code: lowercase letters, digits and '-', at most 40")
        return value


class AreasFile(_Strict):
    areas: list[AreaSpec]


class HouseholdRule(_Strict):
    """A household is "Gia đình số" when one member completed every required module
    and at least one other member completed ``others_min_modules`` modules
    (0: the first condition is enough). Completions recorded by a volunteer count."""

    required_modules: list[str] = Field(min_length=1)
    others_min_modules: int = Field(default=1, ge=0)


class TargetMeasure(StrEnum):
    ADULTS_COMPLETED = "adults_completed"  # people who completed the required modules / official adults
    HOUSEHOLDS_GIA_DINH_SO = "households_gia_dinh_so"  # "Gia đình số" households / official households
    # Self-reported: the sum of a survey question's answer values (adults per household) / official adults
    SURVEY_ADULTS = "survey_adults"


class TargetSpec(_Strict):
    """A percent target; a ``survey_adults`` one names the survey question whose answers it adds up."""

    id: str
    label: str
    measure: TargetMeasure
    percent_by_year: dict[int, float] = {}
    source: str = ""
    survey: str | None = None
    question: str | None = None

    @model_validator(mode="after")
    def _survey_named(self) -> TargetSpec:
        named = self.survey is not None and self.question is not None
        if (self.measure is TargetMeasure.SURVEY_ADULTS) != named:
            raise ValueError("a survey_adults target needs `survey` and `question`; other targets take neither")
        return self


class FieldItem(_Strict):
    """Something a volunteer can tick after a visit; ``module`` makes it count as that module's completion."""

    id: str = Field(pattern=r"^[a-z0-9_]{1,30}$")
    label: str
    module: str | None = None


class QuietHours(_Strict):
    """Local hours (Asia/Ho_Chi_Minh) when no broadcast or reminder is delivered; replies still are."""

    start: dt.time = dt.time.fromisoformat("21:00")
    end: dt.time = dt.time.fromisoformat("07:00")

    def contains(self, local: dt.time) -> bool:
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def next_allowed(self, local: dt.datetime) -> dt.datetime:
        """``local`` itself outside quiet hours, else the end of these quiet hours (same zone)."""
        if not self.contains(local.timetz().replace(tzinfo=None)):
            return local
        end = local.replace(hour=self.end.hour, minute=self.end.minute, second=0, microsecond=0)
        return end if end > local else end + dt.timedelta(days=1)


class Reminders(_Strict):
    """Nudges to a resident who started a module and stopped: one after each delay, counted from their
    last message, at most ``len(after_days)`` per module."""

    after_days: list[float] = Field(default=[1, 3], max_length=5)

    @field_validator("after_days")
    @classmethod
    def _increasing(cls, value: list[float]) -> list[float]:
        if any(day <= 0 for day in value) or value != sorted(set(value)):
            raise ValueError("after_days must be positive and increasing, e.g. [1, 3]")
        return value


class ClassGroup(_Strict):
    """Whom a community class is for (e.g. older people); shown to residents, not checked."""

    id: str = Field(pattern=r"^[a-z0-9_]{1,30}$")
    label: str = Field(min_length=1, max_length=60)


class ClassRules(_Strict):
    """Community classes: who they may be for, and the reminders to those with a seat.

    Reminder k is due ``reminder_hours[k]`` hours before the start (at most one each, the latest
    due one only); none is delivered during quiet hours: one due then goes when they end, if the
    class has not started yet.
    """

    groups: list[ClassGroup] = Field(default=[ClassGroup(id="all", label="Mọi người")], min_length=1, max_length=8)
    reminder_hours: list[float] = Field(default=[24, 2], max_length=4)
    max_capacity: int = Field(default=300, ge=1)

    @field_validator("reminder_hours")
    @classmethod
    def _decreasing(cls, value: list[float]) -> list[float]:
        if any(hours <= 0 for hours in value) or value != sorted(set(value), reverse=True):
            raise ValueError("reminder_hours must be positive and decreasing, e.g. [24, 2]")
        return value


class CommuneRules(_Strict):
    gia_dinh_so: HouseholdRule | None = None
    targets: list[TargetSpec] | None = None


class CommunitySpec(_Strict):
    gia_dinh_so: HouseholdRule
    targets: list[TargetSpec] = []
    mentor_goal: int = Field(default=5, ge=1)
    invite_valid_hours: int = Field(default=72, ge=1, le=24 * 30)
    field_visit: list[FieldItem] = Field(min_length=1)
    quiet_hours: QuietHours = QuietHours()
    reminders: Reminders = Reminders()
    classes: ClassRules = ClassRules()
    communes: dict[str, CommuneRules] = {}

    def rule_for(self, commune: str | None) -> HouseholdRule:
        override = self.communes.get(commune or "")
        return override.gia_dinh_so if override and override.gia_dinh_so else self.gia_dinh_so

    def targets_for(self, commune: str | None) -> list[TargetSpec]:
        override = self.communes.get(commune or "")
        return override.targets if override and override.targets is not None else self.targets


@dataclass(frozen=True)
class AreaProblem:
    """A problem in one row of an areas file (row numbers as the user sees them)."""

    row: int
    message: str


def parse_area_rows(
    rows: Iterable[tuple[int, Mapping[str, object]]], known: Mapping[str, AreaKind] | None = None
) -> tuple[list[AreaSpec], list[AreaProblem]]:
    """Validate area rows (from YAML or CSV): shapes, unique codes, parents that exist and fit.

    ``known`` are areas already stored, which rows may use as parents. Rows
    are returned parents first.
    """
    found: list[tuple[int, AreaSpec]] = []
    problems: list[AreaProblem] = []
    for row, data in rows:
        cleaned = {k: (None if v in ("", None) else v) for k, v in data.items()}
        try:
            found.append((row, AreaSpec.model_validate(cleaned)))
        except ValidationError as exc:
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"])
                problems.append(AreaProblem(row, f"{where}: {err['msg']}" if where else err["msg"]))
    kinds = dict(known or {})
    first_row: dict[str, int] = {}
    for row, area in found:
        if area.code in first_row:
            problems.append(AreaProblem(row, f"code '{area.code}' is already used on row {first_row[area.code]}"))
        first_row.setdefault(area.code, row)
        kinds[area.code] = area.kind
    for row, area in found:
        allowed = PARENT_KINDS[area.kind]
        if area.parent is None:
            if area.kind is AreaKind.VILLAGE:
                problems.append(AreaProblem(row, "a village needs a parent commune"))
        elif area.parent not in kinds:
            problems.append(AreaProblem(row, f"parent '{area.parent}' is not a known area"))
        elif kinds[area.parent] not in allowed:
            problems.append(AreaProblem(row, f"a {area.kind} cannot be inside a {kinds[area.parent]}"))
    depth = {AreaKind.PROVINCE: 0, AreaKind.COMMUNE: 1, AreaKind.VILLAGE: 2}
    ordered = sorted((area for _, area in found), key=lambda a: depth[a.kind])
    return ordered, sorted(problems, key=lambda p: p.row)
