"""The report's DOCX draft in the administrative layout (Nghị định 30/2020/NĐ-CP): A4, Times New Roman,
the national header, numbered sections; figures filled in, prose left for the officer (highlighted)."""

from __future__ import annotations

from typing import IO, Any

from docx import Document
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH, WD_COLOR_INDEX
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.shared import Cm, Mm, Pt

from bot.reports.figures import AreaFigures, ReportFigures, self_reported_lines
from bot.reports.numbers import day, number, percent
from flows.catalog import Catalog
from storage.clock import LOCAL_TZ

FONT = "Times New Roman"
BODY_PT = 14
HEADER_PT = 13
TABLE_PT = 11
RULE = "────────"  # the short line under the header's names and the title
TEXT_WIDTH_CM = 16.5  # A4 less the 3 cm and 1.5 cm margins
HEADER_COLUMNS_CM = [6.5, 10.0]  # the authority's names; the national header (one line at 12 pt)
FIRST_COLUMN_CM = 3.5


def write_report_docx(catalog: Catalog, figures: ReportFigures, commune: str, handle: IO[bytes]) -> None:
    """``commune``: the name in the authority line ("ỦY BAN NHÂN DÂN XÃ …")."""
    label, say = catalog.label, catalog.say
    quarter = figures.quarter
    document = Document()
    _page(document)

    header = document.add_table(rows=1, cols=2)
    header.alignment = WD_TABLE_ALIGNMENT.CENTER
    _widths(header, HEADER_COLUMNS_CM)
    left, right = header.rows[0].cells
    _line(left, say("report_authority", area=commune), HEADER_PT, first=True)
    _line(left, label("report.unit"), HEADER_PT, bold=True)
    _line(left, RULE, HEADER_PT)
    _line(left, label("report.number"), HEADER_PT)
    _line(right, label("report.nation"), HEADER_PT - 1, bold=True, first=True)
    _line(right, label("report.motto"), BODY_PT - 1, bold=True)
    _line(right, RULE * 2, HEADER_PT)
    _line(right, say("report_place_date", year=figures.until.astimezone(LOCAL_TZ).year), BODY_PT, italic=True)

    _centered(document, label("report.kind"), bold=True, before=12)
    _centered(document, say("report_title", roman=quarter.roman, year=quarter.year), bold=True)
    _centered(document, RULE, bold=False)

    area = figures.area
    _body(document, say("report_basis", area=area.name, roman=quarter.roman, year=quarter.year))
    until = figures.until.astimezone(LOCAL_TZ)
    _body(
        document,
        say(
            "report_source",
            start=day(quarter.start),
            end=day(quarter.end),
            partial=figures.partial,
            until=until.strftime("%H:%M %d/%m/%Y"),
        ),
    )

    _heading(document, label("report.section_results"))
    adults, homes = area.adults_target, area.households_target
    _body(document, say("report_people", **_change(area.people)))
    _body(
        document,
        say(
            "report_adults",
            modules=figures.required_titles,
            official=number(area.adults_official) if area.adults_official else "",
            percent=percent(adults.percent) if adults else "-",
            target=percent(adults.target) if adults and adults.target is not None else None,
            year=quarter.year,
            **_change(area.adults),
        ),
    )
    _body(
        document,
        say(
            "report_households",
            total=number(area.households_gia_dinh_so),
            official=number(area.households_official) if area.households_official else "",
            percent=percent(homes.percent) if homes else "-",
            target=percent(homes.target) if homes and homes.target is not None else None,
            year=quarter.year,
            registered=number(area.households_registered),
        ),
    )
    if figures.parts:
        _body(document, label("report.parts_commune" if figures.area_kind == "province" else "report.parts_village"))
        _parts_table(document, catalog, figures)
    if figures.modules:
        _body(document, label("report.modules_heading"))
        _modules_table(document, catalog, figures)
    goal = figures.mentor_goal
    _body(
        document,
        say(
            "report_volunteers",
            count=number(len({v.person_id for v in figures.volunteers})),
            at_goal=number(len({v.person_id for v in figures.volunteers if v.mentees >= goal})),
            goal=goal,
            helped=number(sum(v.helped_in_person for v in figures.volunteers)),
        ),
    )
    if area.self_reported:
        _body(document, say("report_self_reported"))
        for line in self_reported_lines(catalog, area.self_reported, quarter.year):
            _body(document, f"- {line}")
    _fill_in(document, catalog)

    _heading(document, label("report.section_difficulties"))
    _heading(document, label("report.difficulties"), level=2)
    hints = _hints(catalog, figures)
    if hints:
        _body(document, label("report.hints"), italic=True)
        for hint in hints:
            _body(document, f"- {hint}")
    _fill_in(document, catalog)
    _heading(document, label("report.causes"), level=2)
    _fill_in(document, catalog)
    _heading(document, label("report.section_proposals"))
    _fill_in(document, catalog)

    _signature(document, catalog, commune)
    document.save(handle)


def _change(change: Any) -> dict[str, str]:
    return {"quarter": number(change.quarter), "in_year": number(change.year), "total": number(change.total)}


def _hints(catalog: Catalog, figures: ReportFigures) -> list[str]:
    """Difficulties the figures suggest; the officer keeps, edits or deletes them."""
    hints = []
    behind = [
        p.name
        for p in figures.parts
        if p.adults_target
        and p.adults_target.target is not None
        and (p.adults_target.percent or 0) < p.adults_target.target
    ]
    if behind:
        hints.append(catalog.say("report_hint_below_target", names=behind, year=figures.quarter.year))
    if figures.help_waiting:
        hints.append(catalog.say("report_hint_help", count=number(figures.help_waiting)))
    stuck = max(figures.modules, key=lambda m: m.stuck, default=None)
    if stuck is not None and stuck.stuck:
        hints.append(catalog.say("report_hint_stuck", title=stuck.title, count=number(stuck.stuck)))
    return hints


def _parts_table(document: Any, catalog: Catalog, figures: ReportFigures) -> None:
    label = catalog.label
    first = label("report.col_commune" if figures.area_kind == "province" else "report.col_village")
    titles = [
        first,
        label("report.col_people_quarter"),
        label("report.col_people_total"),
        label("report.col_adults_quarter"),
        label("report.col_adults_total"),
        label("report.col_adults_percent"),
        label("report.col_households_gds"),
        label("report.col_households_percent"),
    ]

    def values(row: AreaFigures, name: str) -> list[str]:
        adults, homes = row.adults_target, row.households_target
        return [
            name,
            number(row.people.quarter),
            number(row.people.total),
            number(row.adults.quarter),
            number(row.adults.total),
            percent(adults.percent if adults else None),
            number(row.households_gia_dinh_so),
            percent(homes.percent if homes else None),
        ]

    rows = [values(p, p.name) for p in figures.parts] + [values(figures.area, label("report.total"))]
    _grid(document, titles, rows)


def _modules_table(document: Any, catalog: Catalog, figures: ReportFigures) -> None:
    label = catalog.label
    titles = [
        label("report.col_module"),
        label("report.col_started_quarter"),
        label("report.col_completed_quarter"),
        label("report.col_started_total"),
        label("report.col_completed_total"),
    ]
    rows = [
        [
            m.title,
            number(m.started.quarter),
            number(m.completed.quarter),
            number(m.started.total),
            number(m.completed.total),
        ]
        for m in figures.modules
    ]
    _grid(document, titles, rows)


def _grid(document: Any, titles: list[str], rows: list[list[str]]) -> None:
    """A bordered table: the first column for names, the rest numbers; the title row repeats on each page."""
    table = document.add_table(rows=1, cols=len(titles))
    table.style = "Table Grid"
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    for cell, title in zip(table.rows[0].cells, titles, strict=True):
        _line(cell, title, TABLE_PT, bold=True, first=True)
    table.rows[0]._tr.get_or_add_trPr().append(OxmlElement("w:tblHeader"))
    for values in rows:
        cells = table.add_row().cells
        for index, (cell, value) in enumerate(zip(cells, values, strict=True)):
            align = WD_ALIGN_PARAGRAPH.LEFT if index == 0 else WD_ALIGN_PARAGRAPH.RIGHT
            _line(cell, value, TABLE_PT, first=True, align=align)
    rest = (TEXT_WIDTH_CM - FIRST_COLUMN_CM) / (len(titles) - 1)
    _widths(table, [FIRST_COLUMN_CM, *([rest] * (len(titles) - 1))])
    document.add_paragraph()


def _widths(table: Any, centimetres: list[float]) -> None:
    """Column widths, both in the grid (LibreOffice reads it) and on every cell (Word does)."""
    table.autofit = False
    for column, width in zip(table.columns, centimetres, strict=True):
        column.width = Cm(width)
    for row in table.rows:
        for cell, width in zip(row.cells, centimetres, strict=True):
            cell.width = Cm(width)


def _signature(document: Any, catalog: Catalog, commune: str) -> None:
    document.add_paragraph()
    table = document.add_table(rows=1, cols=2)
    _widths(table, HEADER_COLUMNS_CM)
    left, right = table.rows[0].cells
    _line(
        left,
        catalog.label("report.recipients_title"),
        12,
        bold=True,
        italic=True,
        first=True,
        align=WD_ALIGN_PARAGRAPH.LEFT,
    )
    for recipient in catalog.say("report_recipients", area=commune).splitlines():
        _line(left, recipient, 11, align=WD_ALIGN_PARAGRAPH.LEFT)
    _line(right, catalog.label("report.signer"), BODY_PT, bold=True, first=True)
    _line(right, catalog.label("report.signature_hint"), BODY_PT, italic=True)


def _page(document: Any) -> None:
    section = document.sections[0]
    section.page_width, section.page_height = Mm(210), Mm(297)
    section.top_margin = section.bottom_margin = Mm(20)
    section.left_margin, section.right_margin = Mm(30), Mm(15)
    normal = document.styles["Normal"]
    normal.font.name = FONT
    normal.font.size = Pt(BODY_PT)
    fonts = normal.element.get_or_add_rPr().get_or_add_rFonts()
    for attribute in ("w:ascii", "w:hAnsi", "w:eastAsia", "w:cs"):
        fonts.set(qn(attribute), FONT)
    for style in ("Table Grid",):
        document.styles[style].font.name = FONT


def _line(
    cell: Any,
    text: str,
    size: int,
    bold: bool = False,
    italic: bool = False,
    first: bool = False,
    align: Any = WD_ALIGN_PARAGRAPH.CENTER,
) -> None:
    """A line in a table cell (the cell's own first paragraph when ``first``)."""
    paragraph = cell.paragraphs[0] if first else cell.add_paragraph()
    paragraph.alignment = align
    paragraph.paragraph_format.space_after = Pt(0)
    run = paragraph.add_run(text)
    run.font.size, run.font.bold, run.font.italic = Pt(size), bold, italic


def _centered(document: Any, text: str, bold: bool, before: int = 0) -> None:
    paragraph = document.add_paragraph()
    paragraph.alignment = WD_ALIGN_PARAGRAPH.CENTER
    paragraph.paragraph_format.space_before = Pt(before)
    paragraph.paragraph_format.space_after = Pt(0)
    paragraph.add_run(text).font.bold = bold


def _heading(document: Any, text: str, level: int = 1) -> None:
    paragraph = document.add_paragraph()
    paragraph.paragraph_format.first_line_indent = Cm(1)
    paragraph.paragraph_format.space_before = Pt(6)
    paragraph.paragraph_format.space_after = Pt(6)
    run = paragraph.add_run(text)
    run.font.bold = True
    run.font.italic = level > 1


def _body(document: Any, text: str, italic: bool = False) -> Any:
    paragraph = document.add_paragraph()
    paragraph.alignment = WD_ALIGN_PARAGRAPH.JUSTIFY
    paragraph.paragraph_format.first_line_indent = Cm(1)
    paragraph.paragraph_format.space_after = Pt(6)
    paragraph.add_run(text).font.italic = italic
    return paragraph


def _fill_in(document: Any, catalog: Catalog) -> None:
    """A highlighted placeholder where the officer writes."""
    run = _body(document, "").add_run(catalog.label("report.fill_in"))
    run.font.highlight_color = WD_COLOR_INDEX.YELLOW
