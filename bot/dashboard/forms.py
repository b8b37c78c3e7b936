"""The dashboard's forms: what an officer may choose and what they sent (problems by key, worded in the templates)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from bot.dashboard.auth import Officer
from bot.export import ExportFormat, LogFilter
from bot.reports.figures import module_title
from bot.reports.periods import Quarter
from flows.catalog import Catalog
from flows.types import EventKind

_DAY_FIRST = re.compile(r"^\s*(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})\s*$")  # 14/06/2026, as old browsers let people type
QUARTERS_OFFERED = 6


@dataclass(frozen=True)
class ExportRequest:
    filters: LogFilter
    names: bool
    export_format: ExportFormat
    area_code: str  # the area the export is limited to (for the audit log and the file name)


@dataclass(frozen=True)
class ReportRequest:
    quarter: Quarter
    area_code: str
    document: str  # "xlsx" or "docx"


@dataclass
class Problems:
    keys: list[str] = field(default_factory=list)

    def add(self, key: str) -> None:
        self.keys.append(key)


def module_choices(catalog: Catalog) -> list[tuple[str, str]]:
    """(id, title) of every module, then the field-visit items that count under their own id."""
    found = [(module.id, module.title) for module in catalog.modules.values()]
    found += [(item.id, module_title(catalog, item.id)) for item in catalog.community.field_visit if not item.module]
    return found


def kind_choices(catalog: Catalog) -> list[tuple[str, str]]:
    return [(kind.value, catalog.label(f"kind.{kind.value}")) for kind in EventKind]


def quarter_choices(today: dt.date) -> list[Quarter]:
    """The quarter running now and the ones before it, newest first."""
    quarters = [Quarter.of(today)]
    while len(quarters) < QUARTERS_OFFERED:
        quarters.append(quarters[-1].previous())
    return quarters


def parse_day(text: str) -> dt.date | None:
    """ "2026-06-14" (a date field) or "14/06/2026" (typed); ValueError when it is neither."""
    text = text.strip()
    if not text:
        return None
    found = _DAY_FIRST.match(text)
    if found:
        day, month, year = (int(part) for part in found.groups())
        return dt.date(year, month, day)
    return dt.date.fromisoformat(text)


def read_export(form: Mapping[str, str], officer: Officer, catalog: Catalog) -> ExportRequest | Problems:
    problems = Problems()
    area = form.get("area", "") or officer.roots[0]
    if not officer.may_see(area):
        problems.add("area")
    days: list[dt.date | None] = []
    for name in ("since", "until"):
        try:
            days.append(parse_day(form.get(name, "")))
        except ValueError:
            problems.add(f"{name}_invalid")
            days.append(None)
    since, until = days
    if since and until and since > until:
        problems.add("range")
    module = form.get("module", "")
    if module and module not in {m for m, _ in module_choices(catalog)}:
        problems.add("module")
    kind = form.get("kind", "")
    if kind and kind not in {k.value for k in EventKind}:
        problems.add("kind")
    try:
        export_format = ExportFormat(form.get("format", "csv"))
    except ValueError:
        problems.add("format")
        export_format = ExportFormat.CSV
    if problems.keys:
        return problems
    filters = LogFilter(since=since, until=until, area_codes=(area,), module=module or None, kind=kind or None)
    return ExportRequest(filters, form.get("names") == "yes", export_format, area)


def read_report(form: Mapping[str, str], officer: Officer) -> ReportRequest | Problems:
    problems = Problems()
    area = form.get("area", "") or officer.roots[0]
    if not officer.may_see(area):
        problems.add("area")
    try:
        quarter = Quarter.parse(form.get("quarter", ""))
    except ValueError:
        problems.add("quarter")
        quarter = Quarter(2000, 1)
    document = form.get("document", "")
    if document not in ("xlsx", "docx"):
        problems.add("document")
    return problems if problems.keys else ReportRequest(quarter, area, document)
