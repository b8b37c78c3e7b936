"""Participation-log exports (CSV and XLSX): filtered, streamed in constant memory, pseudonymous, safe in Excel.

Rows are read in keyset-paginated chunks, each in its own short transaction, so that a long export never
holds the database connection (on SQLite the bot has only one) and the rows never sit in memory together.
The log is append-only: the export takes the rows that existed when it started (ids up to the largest one).
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import hashlib
import hmac
import io
import os
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from sqlalchemy import ColumnElement, DateTime, Select, String, func, select, tuple_, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from bot.reports.periods import start_moment
from flows.catalog import EXPORT_COLUMNS, EXPORT_NAME_COLUMNS, Catalog
from flows.types import EventKind
from storage.metrics import under
from storage.models import Area, ParticipationEvent, Person
from storage.repo import app_secret

PSEUDONYM_SECRET = "pseudonym_key"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_CHARS = frozenset(_FORMULA_START)
_XML_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # what an XLSX cell cannot hold
STREAM_CHUNK = 5000
XLSX_MAX_ROWS = 1_048_576  # Excel's limit per sheet, header included: longer logs go on to a next sheet
PSEUDONYM_CACHE = 65_536
_VIETNAM_OFFSET = dt.timedelta(hours=7)

Progress = Callable[[int], None]  # called with the rows written so far


class ExportFormat(StrEnum):
    CSV = "csv"
    XLSX = "xlsx"


@dataclass(frozen=True)
class LogFilter:
    """Which log rows an export takes. Dates are local calendar days (Asia/Ho_Chi_Minh), both included;
    ``area_codes``: these areas and every area under them (None: everywhere, rows without an area too)."""

    since: dt.date | None = None
    until: dt.date | None = None
    area_codes: tuple[str, ...] | None = None
    module: str | None = None
    kind: str | None = None

    def conditions(self, e: type[ParticipationEvent]) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if self.since is not None:
            where.append(e.at >= start_moment(self.since))
        if self.until is not None:
            where.append(e.at < start_moment(self.until + dt.timedelta(days=1)))
        if self.area_codes is not None:
            where += under(e.area_code, self.area_codes)
        if self.module:
            where.append(e.module == self.module)
        if self.kind:
            where.append(e.kind == self.kind)
        return where

    def describe(self) -> dict[str, Any]:
        """The filter as JSON values, for the audit log."""
        return {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in asdict(self).items() if v}


def safe_cell(value: object) -> str:
    """Text for a spreadsheet cell that Excel will not run as a formula."""
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(_FORMULA_START) else text


def pseudonym(key: bytes, person_id: int | None) -> str:
    """A stable id that cannot be turned back into the person without the key."""
    if person_id is None:
        return ""
    return "p-" + hmac.new(key, f"person:{person_id}".encode(), hashlib.sha256).hexdigest()[:12]


async def pseudonym_key(sessions: async_sessionmaker[AsyncSession]) -> bytes:
    """The installation's pseudonym key, created on first use and then kept."""
    return bytes.fromhex(await app_secret(sessions, PSEUDONYM_SECRET))


def columns(names: bool) -> tuple[str, ...]:
    """The export's columns; the names people chose to give only when asked for."""
    return (*EXPORT_COLUMNS, *EXPORT_NAME_COLUMNS) if names else EXPORT_COLUMNS


def header(catalog: Catalog, names: bool) -> list[str]:
    return [catalog.label(f"export.{column}") for column in columns(names)]


async def count_rows(sessions: async_sessionmaker[AsyncSession], filters: LogFilter) -> int:
    e = ParticipationEvent
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(e).where(*filters.conditions(e))) or 0


async def log_chunks(
    sessions: async_sessionmaker[AsyncSession], filters: LogFilter, names: bool
) -> AsyncIterator[list[list[str]]]:
    """The filtered log in time order as chunks of rows of cells, every cell already safe for a spreadsheet."""
    key = await pseudonym_key(sessions)
    alias = lru_cache(maxsize=PSEUDONYM_CACHE)(lambda person_id: pseudonym(key, person_id))
    e = ParticipationEvent
    async with sessions() as session:
        areas = dict((await session.execute(select(Area.code, Area.name))).all())
        last_id = await session.scalar(select(func.max(e.id)))
        sqlite = session.get_bind().dialect.name == "sqlite"
    if last_id is None:
        return
    # The time as the database returns it: SQLite's UTC text, parsed here ten times faster than through
    # UTCDateTime; on PostgreSQL the driver's aware datetime. The keyset compares the same expression.
    at = type_coerce(e.at, String() if sqlite else DateTime(timezone=True))
    query = _rows_query(filters, names, at).where(e.id <= last_id)

    async def page(after: tuple[Any, int] | None) -> Sequence[Any]:
        chosen = query if after is None else query.where(tuple_(at, e.id) > after)
        async with sessions() as session:  # a short transaction per chunk: the bot's writes go in between
            connection = await session.connection()
            return (await connection.execute(chosen.limit(STREAM_CHUNK))).all()

    after: tuple[Any, int] | None = None
    while rows := await page(after):
        after = (rows[-1][1], rows[-1][0])
        yield _cells(rows, alias, areas)
        if len(rows) < STREAM_CHUNK:
            return


def _rows_query(filters: LogFilter, names: bool, at: ColumnElement[Any]) -> Select[Any]:
    e = ParticipationEvent
    fields = [e.id, at, e.person_id, e.channel, e.module, e.module_version, e.kind, e.step, e.assisted_by]
    query = select(*fields, e.area_code)
    if names:
        person, helper = aliased(Person), aliased(Person)
        query = (
            query.add_columns(person.display_name, helper.display_name)
            .outerjoin(person, person.id == e.person_id)
            .outerjoin(helper, helper.id == e.assisted_by)
        )
    return query.where(*filters.conditions(e)).order_by(e.at, e.id)


def _cells(rows: Sequence[Any], alias: Callable[[int | None], str], areas: dict[str, str]) -> list[list[str]]:
    """Export rows (the columns of :func:`columns`, in order) from query rows, every cell through the same
    rule as :func:`safe_cell` (inlined: this runs a million times for a big export)."""
    found = []
    risky = _FORMULA_CHARS
    for _, at, person_id, channel, module, version, kind, step, assisted_by, area_code, *names in rows:
        row = [
            _local_time(at),
            alias(person_id),
            channel,
            module,
            str(version),
            kind,
            step or "",
            alias(assisted_by),
            areas.get(area_code, area_code) or "",
            *(name or "" for name in names),
        ]
        found.append([cell if cell[:1] not in risky else f"'{cell}" for cell in row])
    return found


def _local_time(at: str | dt.datetime) -> str:
    """A UTC time as local ISO text. Asia/Ho_Chi_Minh has kept UTC+07:00 without daylight saving since 1975,
    so this adds the offset to naive time, which is three times faster than ``astimezone`` per row."""
    moment = dt.datetime.fromisoformat(at) if isinstance(at, str) else at.astimezone(dt.UTC).replace(tzinfo=None)
    return (moment + _VIETNAM_OFFSET).isoformat(timespec="seconds") + "+07:00"


async def csv_bytes(
    sessions: async_sessionmaker[AsyncSession],
    catalog: Catalog,
    filters: LogFilter = LogFilter(),
    names: bool = False,
    progress: Progress | None = None,
) -> AsyncIterator[bytes]:
    """The export as CSV (UTF-8 with BOM, for Excel), one piece per chunk of rows."""
    yield _csv_text([header(catalog, names)]).encode("utf-8-sig")
    done = 0
    async for chunk in log_chunks(sessions, filters, names):
        yield (await asyncio.to_thread(_csv_text, chunk)).encode("utf-8")
        done += len(chunk)
        if progress is not None:
            progress(done)


def _csv_text(rows: Sequence[Sequence[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


async def write_xlsx(
    sessions: async_sessionmaker[AsyncSession],
    catalog: Catalog,
    handle: IO[bytes],
    filters: LogFilter = LogFilter(),
    names: bool = False,
    progress: Progress | None = None,
) -> int:
    """Write the export as an XLSX workbook to ``handle``; return the row count.

    openpyxl's write-only mode keeps only the current row in memory (the sheet goes to a temporary file
    until the workbook is saved); the rows are formatted in a worker thread, chunk by chunk.
    """
    book = _XlsxLog(catalog, names)
    done = 0
    async for chunk in log_chunks(sessions, filters, names):
        await asyncio.to_thread(book.append, chunk)
        done += len(chunk)
        if progress is not None:
            progress(done)
    await asyncio.to_thread(book.save, handle)
    return done


class _XlsxLog:
    """A write-only workbook of log rows: a sheet per million rows, then a legend of the event kinds."""

    def __init__(self, catalog: Catalog, names: bool) -> None:
        from openpyxl import Workbook

        self._catalog = catalog
        self._header = header(catalog, names)
        self._book = Workbook(write_only=True)
        self._sheet: Any = None
        self._rows = XLSX_MAX_ROWS

    def append(self, rows: Sequence[Sequence[str]]) -> None:
        version = EXPORT_COLUMNS.index("module_version")
        for row in rows:
            if self._rows >= XLSX_MAX_ROWS:
                self._new_sheet()
            cells: list[str | int | None] = list(row)
            if _XML_ILLEGAL.search("".join(row)):  # control characters a resident typed: XML cannot hold them
                cells = [_XML_ILLEGAL.sub("", cell) for cell in row]
            if row[version].isdigit():
                cells[version] = int(row[version])
            # an empty cell is left out of the sheet rather than written empty: a third fewer cells to write
            self._sheet.append([cell if cell != "" else None for cell in cells])
            self._rows += 1

    def save(self, handle: IO[bytes]) -> None:
        if self._sheet is None:
            self._new_sheet()
        legend = self._book.create_sheet(self._catalog.label("export.legend_sheet"))
        legend.append([self._catalog.label("export.kind"), self._catalog.label("export.legend_meaning")])
        for kind in EventKind:
            legend.append([kind.value, self._catalog.label(f"kind.{kind.value}")])
        self._book.save(handle)

    def _new_sheet(self) -> None:
        title = self._catalog.label("export.sheet")
        number = len(self._book.worksheets) + 1
        self._sheet = self._book.create_sheet(title if number == 1 else f"{title} ({number})")
        self._sheet.append(self._header)
        self._rows = 1


async def export_file(
    sessions: async_sessionmaker[AsyncSession],
    catalog: Catalog,
    out: Path,
    filters: LogFilter = LogFilter(),
    names: bool = False,
    export_format: ExportFormat | None = None,
    progress: Progress | None = None,
) -> int:
    """Write the export to ``out`` (format from its suffix unless given); return the row count.

    The file appears under its name only when complete.
    """
    chosen = export_format or ExportFormat(out.suffix.lower().lstrip(".") or "csv")
    partial = out.with_name(f".{out.name}.partial")
    count = 0

    def counted(done: int) -> None:
        nonlocal count
        count = done
        if progress is not None:
            progress(done)

    try:
        with partial.open("wb") as handle:
            if chosen is ExportFormat.XLSX:
                await write_xlsx(sessions, catalog, handle, filters, names, counted)
            else:
                async for piece in csv_bytes(sessions, catalog, filters, names, counted):
                    handle.write(piece)
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return count


async def export_csv(sessions: async_sessionmaker[AsyncSession], catalog: Catalog, out: Path) -> int:
    """The whole log as CSV (UTF-8 with BOM); return the row count."""
    return await export_file(sessions, catalog, out, export_format=ExportFormat.CSV)
