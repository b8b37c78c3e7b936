"""The report's XLSX: a summary, then per-area and per-module tables for the quarter and the year to date."""

from __future__ import annotations

from typing import IO, Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter

from bot.export import safe_cell
from bot.reports.figures import AreaFigures, ReportFigures, self_reported_lines
from bot.reports.numbers import day
from flows.catalog import Catalog
from storage.clock import LOCAL_TZ

AREA_COLUMNS = (
    "people_quarter",
    "people_year",
    "people_total",
    "adults_quarter",
    "adults_year",
    "adults_total",
    "adults_official",
    "adults_percent",
    "adults_target",
    "households_gds",
    "households_official",
    "households_percent",
    "households_target",
    "households_registered",
)
MODULE_COLUMNS = (
    "started_quarter",
    "completed_quarter",
    "started_year",
    "completed_year",
    "started_total",
    "completed_total",
    "stuck",
)


def write_report_xlsx(catalog: Catalog, figures: ReportFigures, handle: IO[bytes]) -> None:
    label = catalog.label
    book = Workbook()
    summary = book.active
    summary.title = label("report.sheet_summary")
    quarter = figures.quarter
    for name, value in (
        ("report.summary_area", figures.area.name),
        ("report.summary_period", catalog.say("report_period", roman=quarter.roman, year=quarter.year)),
        ("report.summary_from", day(quarter.start)),
        ("report.summary_until", figures.until.astimezone(LOCAL_TZ).strftime("%d/%m/%Y %H:%M")),
        ("report.summary_source", catalog.say("report_source_short")),
    ):
        summary.append([label(name), _text(value)])
    for target, line in zip(
        figures.area.self_reported,
        self_reported_lines(catalog, figures.area.self_reported, quarter.year),
        strict=True,
    ):
        summary.append([_text(f"{target.label} ({label('survey.self_reported')})"), _text(line)])
    summary.column_dimensions["A"].width = 28
    summary.column_dimensions["B"].width = 80

    areas = book.create_sheet(label("report.sheet_areas"))
    first = label("report.col_commune" if figures.area_kind == "province" else "report.col_village")
    _table(areas, [first, *(label(f"report.col_{c}") for c in AREA_COLUMNS)])
    for row in [*figures.parts, figures.area]:
        name = label("report.total") if row is figures.area else row.name
        areas.append([_text(name), *_area_values(row)])
    _bold_last(areas)

    modules = book.create_sheet(label("report.sheet_modules"))
    _table(modules, [label("report.col_module"), *(label(f"report.col_{c}") for c in MODULE_COLUMNS)])
    for module in figures.modules:
        s, c = module.started, module.completed
        modules.append([_text(module.title), s.quarter, c.quarter, s.year, c.year, s.total, c.total, module.stuck])
    book.save(handle)


def _area_values(row: AreaFigures) -> list[Any]:
    adults, households = row.adults_target, row.households_target
    return [
        row.people.quarter,
        row.people.year,
        row.people.total,
        row.adults.quarter,
        row.adults.year,
        row.adults.total,
        row.adults_official,
        _round(adults.percent if adults else None),
        adults.target if adults else None,
        row.households_gia_dinh_so,
        row.households_official,
        _round(households.percent if households else None),
        households.target if households else None,
        row.households_registered,
    ]


def _table(sheet: Any, titles: list[str]) -> None:
    sheet.append(titles)
    for cell in sheet[1]:
        cell.font = Font(bold=True)
        cell.alignment = Alignment(wrap_text=True, vertical="top")
    sheet.freeze_panes = "B2"
    sheet.column_dimensions["A"].width = 30
    for index in range(2, len(titles) + 1):
        sheet.column_dimensions[get_column_letter(index)].width = 14


def _bold_last(sheet: Any) -> None:
    for cell in sheet[sheet.max_row]:
        cell.font = Font(bold=True)


def _text(value: str) -> str:
    """Names come from officers' files and residents: never a formula."""
    return safe_cell(value)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
