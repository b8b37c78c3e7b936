"""Content model: what a module file and the messages file may contain.

A module file (``content/modules/<id>.yaml``) looks like::

    id: vneid
    version: 1
    title: "Cài và dùng VNeID"
    keywords: ["vneid", "dinh danh"]
    reviewed: 2026-11-01
    sources:
      - url: https://example.gov.vn/huong-dan
        note: "Hướng dẫn của Công an tỉnh"
    start: intro
    steps:
      - id: intro
        text: "..."
        stuck: "..."               # "Tôi bị kẹt": explain differently
        buttons:
          - {id: next, label: "Tiếp tục", goto: install}
        answers:                    # free text that leads somewhere
          - {phrases: ["roi", "xong"], goto: install}
      - id: quiz
        text: "..."
        stuck: "..."
        check:
          options:
            - {id: a, label: "...", correct: true}
            - {id: b, label: "..."}
          right: "Đúng rồi! ..."
          wrong: "Chưa đúng. ..."
          next: done
      - id: done
        text: "..."
        stuck: "..."
        complete: true

Everything is validated by pydantic here (shape) and by :mod:`flows.validate`
(references, reachability).
"""

from __future__ import annotations

import datetime as dt
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

BUTTON_ID_MAX_BYTES = 32
_ASCII_ID = re.compile(r"^[A-Za-z0-9_.:-]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_button_id(value: str) -> str:
    if len(value.encode()) > BUTTON_ID_MAX_BYTES:
        raise ValueError(f"button id '{value}' is longer than {BUTTON_ID_MAX_BYTES} bytes")
    if not _ASCII_ID.match(value):
        raise ValueError(f"button id '{value}' may use only ASCII letters, digits and _ . : -")
    return value


def _non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("text is empty")
    return value.strip()


class Link(_Strict):
    """A web address shown under a message."""

    label: str
    url: str

    @field_validator("url")
    @classmethod
    def _https_only(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError("links must start with https://")
        return value


class Source(_Strict):
    """Where a module's facts come from."""

    url: str
    note: str = ""


class ButtonSpec(_Strict):
    """A button on a step that leads to another step."""

    id: str
    label: str
    goto: str

    _id = field_validator("id")(_check_button_id)
    _label = field_validator("label")(_non_blank)


class AnswerSpec(_Strict):
    """Free-text phrases (typed without diacritics is fine) that lead to a step."""

    phrases: list[str] = Field(min_length=1)
    goto: str


class OptionSpec(_Strict):
    """One choice of a knowledge-check question."""

    id: str
    label: str
    correct: bool = False

    _id = field_validator("id")(_check_button_id)
    _label = field_validator("label")(_non_blank)


class CheckSpec(_Strict):
    """A knowledge-check question: the step's text is the question."""

    options: list[OptionSpec] = Field(min_length=2)
    right: str
    wrong: str
    next: str

    _texts = field_validator("right", "wrong")(_non_blank)


class StepSpec(_Strict):
    """One screen of a module."""

    id: str
    text: str
    stuck: str
    image: str | None = None
    links: list[Link] = []
    buttons: list[ButtonSpec] = []
    answers: list[AnswerSpec] = []
    check: CheckSpec | None = None
    complete: bool = False

    _id = field_validator("id")(_check_button_id)
    _texts = field_validator("text", "stuck")(_non_blank)


class ModuleSpec(_Strict):
    """A guidance module: one YAML file."""

    id: str
    version: int = Field(ge=1)
    title: str
    summary: str = ""
    keywords: list[str] = []
    order: int = 100
    reviewed: dt.date
    sources: list[Source] = Field(min_length=1)
    start: str
    steps: list[StepSpec] = Field(min_length=1)

    _id = field_validator("id")(_check_button_id)
    _title = field_validator("title")(_non_blank)


class GlobalAction(_Strict):
    """A button the engine offers at every step (menu, back, stuck...)."""

    label: str
    keywords: list[str] = []


class MessagesSpec(_Strict):
    """The engine's own sentences (``content/messages.yaml``).

    Texts may use Jinja2 placeholders such as ``{{ max }}``; they are rendered
    in a sandbox.
    """

    actions: dict[str, GlobalAction]
    texts: dict[str, str]
    labels: dict[str, str] = {}  # short labels for officers' files, e.g. export column headers


class RoutingSpec(_Strict):
    """How free text is read (``content/routing.yaml``).

    ``abbreviations`` and ``english`` map what people type (one or more words)
    to the words they mean; ``fillers`` carry no meaning for routing;
    ``out_of_scope`` are topics the bot politely declines.
    """

    abbreviations: dict[str, str] = {}
    english: dict[str, str] = {}
    fillers: list[str] = []
    out_of_scope: list[str] = Field(min_length=1)


class ScamFlagSpec(_Strict):
    """One sign of a scam: its simple explanation and the phrases that show it."""

    explain: str
    phrases: list[str] = []

    _explain = field_validator("explain")(_non_blank)


class ScamSpec(_Strict):
    """What "Kiểm tra tin nhắn" looks for (``content/scam_check.yaml``)."""

    offer_in_modules: list[str] = []
    official_domains: list[str] = Field(min_length=1)
    brands: list[str] = []
    odd_tlds: list[str] = []
    known_tlds: list[str] = []
    shorteners: list[str] = []
    flags: dict[str, ScamFlagSpec]
