"""Short surveys (``content/surveys.yaml``): 2–5 questions answered with buttons.

::

    surveys:
      - id: chi_so_so
        title: "Khảo sát nhanh về điện thoại, thanh toán, VNeID"
        per: household            # or person: whose answer a later one replaces
        intro: "..."              # the message that invites residents (a broadcast template)
        questions:
          - id: smartphone
            text: "Nhà mình có mấy người lớn dùng điện thoại thông minh?"
            options:
              - {id: "0", label: "Chưa có ai", value: 0}
              - {id: "1", label: "1 người", value: 1}

An option's ``value`` (a number) is what a ``survey_adults`` target in ``community.yaml`` adds up.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

SURVEY_BUTTON_PREFIX = "sv:"  # the invitation's button: "sv:<survey id>"
_ID = r"^[a-z0-9_]{1,28}$"  # "sv:" + id fits a 32-byte button id


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SurveyPer(StrEnum):
    HOUSEHOLD = "household"  # one answer per household (a resident without one answers for themselves)
    PERSON = "person"


class SurveyOption(_Strict):
    id: str = Field(pattern=r"^[a-z0-9_]{1,20}$")
    label: str = Field(min_length=1, max_length=60)
    value: int | None = Field(default=None, ge=0, le=100)


class SurveyQuestion(_Strict):
    id: str = Field(pattern=_ID)
    text: str = Field(min_length=1, max_length=400)
    options: list[SurveyOption] = Field(min_length=2, max_length=8)

    @field_validator("options")
    @classmethod
    def _unique(cls, value: list[SurveyOption]) -> list[SurveyOption]:
        ids = [o.id for o in value]
        if len(set(ids)) != len(ids):
            raise ValueError("option ids must be unique within a question")
        return value

    def option(self, option_id: str) -> SurveyOption | None:
        return next((o for o in self.options if o.id == option_id), None)


class SurveySpec(_Strict):
    id: str = Field(pattern=_ID)
    title: str = Field(min_length=1, max_length=80)
    per: SurveyPer = SurveyPer.HOUSEHOLD
    intro: str = Field(min_length=1, max_length=1000)
    questions: list[SurveyQuestion] = Field(min_length=2, max_length=5)

    @field_validator("questions")
    @classmethod
    def _unique(cls, value: list[SurveyQuestion]) -> list[SurveyQuestion]:
        ids = [q.id for q in value]
        if len(set(ids)) != len(ids):
            raise ValueError("question ids must be unique within a survey")
        return value

    def question(self, question_id: str) -> SurveyQuestion | None:
        return next((q for q in self.questions if q.id == question_id), None)


class SurveysFile(_Strict):
    surveys: list[SurveySpec] = []

    @field_validator("surveys")
    @classmethod
    def _unique(cls, value: list[SurveySpec]) -> list[SurveySpec]:
        ids = [s.id for s in value]
        if len(set(ids)) != len(ids):
            raise ValueError("survey ids must be unique")
        return value
