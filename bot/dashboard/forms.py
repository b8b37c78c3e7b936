"""The dashboard's forms: what an officer may choose and what they sent (problems by key, worded in the templates)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from bot.broadcasts import service
from bot.dashboard.auth import Officer
from bot.export import ExportFormat, LogFilter
from bot.reports.figures import module_title
from bot.reports.periods import Quarter
from flows.broadcast_template import check_template
from flows.catalog import Catalog
from flows.types import EventKind
from storage.audience import Audience
from storage.clock import LOCAL_TZ

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


@dataclass(frozen=True)
class BroadcastRequest:
    area_code: str
    audience: Audience
    template: str
    send_at: dt.datetime | None  # UTC; None: now
    every_year: str | None  # "MM-DD HH:MM", local time
    moved: bool  # the time asked for fell in quiet hours and was moved to their end


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


_TIME = re.compile(r"^\s*(\d{1,2})[:h.](\d{2})\s*$")


def read_broadcast(
    form: Mapping[str, str], officer: Officer, catalog: Catalog, now: dt.datetime
) -> BroadcastRequest | Problems:
    """A broadcast as the dashboard's form asks for it; the template checked as in chat."""
    problems = Problems()
    area = form.get("area", "") or officer.roots[0]
    if not officer.may_see(area):
        problems.add("area")
    who = form.get("who", service.WHO_ALL)
    module = form.get("module", "") or None
    if who not in service.WHO_CHOICES:
        problems.add("who")
    elif who in service.WHO_NEEDS_MODULE and module not in catalog.modules:
        problems.add("module")
    template = form.get("text", "").replace("\r\n", "\n").strip()
    refused = check_template(template)
    if refused is not None:
        problems.add(refused.key)
    when, send_at, every_year, moved = form.get("when", "now"), None, None, False
    if when in ("at", "yearly"):
        try:
            day = parse_day(form.get("day", ""))
        except ValueError:
            day = None
        hour = _TIME.match(form.get("time", ""))
        if day is None or hour is None or not (0 <= int(hour[1]) < 24):
            problems.add("moment")
        else:
            local = dt.datetime(day.year, day.month, day.day, int(hour[1]), int(hour[2]), tzinfo=LOCAL_TZ)
            quiet = catalog.community.quiet_hours
            if when == "yearly":
                if quiet.contains(local.time().replace(tzinfo=None)):
                    problems.add("quiet_yearly")
                every_year = f"{local:%m-%d %H:%M}"
            elif local <= now.astimezone(LOCAL_TZ):
                problems.add("past")
            else:
                allowed = quiet.next_allowed(local)
                moved, send_at = allowed != local, allowed.astimezone(dt.UTC)
    elif when != "now":
        problems.add("moment")
    if problems.keys:
        return problems
    audience = service.audience_for(area, who, module, now)
    return BroadcastRequest(area, audience, template, send_at, every_year, moved)
