"""The participation-log export: pseudonymous, Excel-safe, never half-written, filtered, CSV and XLSX."""

from __future__ import annotations

import csv
import datetime as dt
import errno
import gc
import io
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import select

import bot.export
from bot.export import LogFilter, export_csv, export_file, pseudonym, pseudonym_key, safe_cell
from bot.progress import ProgressBar
from flows.catalog import Catalog
from storage.areas import seed_areas
from storage.models import AuditEntry, ParticipationEvent, Person
from tests.helpers import T0


@pytest.mark.parametrize(
    ("value", "expected"),
    [("=1+1", "'=1+1"), ("+84", "'+84"), ("-2", "'-2"), ("@SUM(A1)", "'@SUM(A1)"), ("vneid", "vneid"), (None, "")],
)
def test_cells_that_excel_would_run_are_neutralised(value: object, expected: str) -> None:
    assert safe_cell(value) == expected


async def add_events(sessions, n: int, step: str = "intro") -> list[int]:
    async with sessions.begin() as session:
        people = [Person(created_at=T0) for _ in range(2)]
        session.add_all(people)
        await session.flush()
        session.add_all(
            ParticipationEvent(
                person_id=people[i % 2].id,
                module="vneid",
                module_version=1,
                kind="step",
                step=step,
                channel="console",
                at=T0,
                assisted_by=people[0].id if i == 0 else None,
            )
            for i in range(n)
        )
        return [p.id for p in people]


async def test_export_is_pseudonymous_stable_and_local_time(shipped: Catalog, sessions, tmp_path: Path) -> None:
    ids = await add_events(sessions, 3, step='=HYPERLINK("http://x")')
    out = tmp_path / "log.csv"
    assert await export_csv(sessions, shipped, out) == 3
    rows = list(csv.reader(out.read_text(encoding="utf-8-sig").splitlines()))
    header, body = rows[0], rows[1:]
    assert header[0] == shipped.messages.labels["export.at"]
    key = await pseudonym_key(sessions)
    assert [r[1] for r in body] == [pseudonym(key, ids[0]), pseudonym(key, ids[1]), pseudonym(key, ids[0])]
    assert body[0][7] == pseudonym(key, ids[0])
    assert body[1][7] == ""
    assert body[0][0] == "2026-11-02T08:30:00+07:00"  # 01:30 UTC shown in Asia/Ho_Chi_Minh
    assert all(r[6].startswith("'=") for r in body)
    assert str(ids[0]) not in {r[1] for r in body}
    again = tmp_path / "again.csv"
    await export_csv(sessions, shipped, again)
    assert again.read_bytes() == out.read_bytes()  # same key, same pseudonyms


async def test_a_failed_export_leaves_no_file_that_looks_complete(
    shipped: Catalog, sessions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_events(sessions, 5)
    (tmp_path / "exports").mkdir()
    out = tmp_path / "exports" / "log.csv"
    out.write_text("previous complete export", encoding="utf-8")

    def disk_full(rows: object) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bot.export, "_csv_text", disk_full)
    with pytest.raises(OSError, match="No space left"):
        await export_csv(sessions, shipped, out)
    assert out.read_text(encoding="utf-8") == "previous complete export"
    assert list(out.parent.iterdir()) == [out]


# --- filters, chunks, XLSX ---------------------------------------------------------------------


async def test_rows_come_once_in_time_order_across_chunks_and_later_rows_wait(
    shipped: Catalog, sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bot.export, "STREAM_CHUNK", 2)
    await add_events(sessions, 7)  # all at T0: the chunks' boundaries fall between equal times
    seen = []
    chunks = bot.export.log_chunks(sessions, LogFilter(), names=False)
    async for chunk in chunks:
        if not seen:
            await add_events(sessions, 1, step="after the export began")
        seen += chunk
    assert len(seen) == 7
    assert "after the export began" not in {row[6] for row in seen}


async def test_the_xlsx_export_goes_on_to_a_next_sheet_at_excels_row_limit(
    shipped: Catalog, sessions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bot.export, "XLSX_MAX_ROWS", 3)  # a header and two rows per sheet
    async with sessions.begin() as session:
        person = Person(created_at=T0, display_name="Bà\x07 Tư\x1f")  # control characters XML cannot hold
        session.add(person)
        await session.flush()
        session.add_all(
            ParticipationEvent(
                person_id=person.id, module="vneid", module_version=1, kind="step", step=str(i), channel="zalo", at=T0
            )
            for i in range(5)
        )
    out = tmp_path / "log.xlsx"
    assert await export_file(sessions, shipped, out, names=True) == 5
    book = openpyxl.load_workbook(out)
    title = shipped.label("export.sheet")
    assert book.sheetnames == [title, f"{title} (2)", f"{title} (3)", shipped.label("export.legend_sheet")]
    rows = [list(book[name].iter_rows(values_only=True)) for name in book.sheetnames[:3]]
    assert [len(sheet) for sheet in rows] == [3, 3, 2]
    assert all(sheet[0][0] == shipped.label("export.at") for sheet in rows)
    assert [r[6] for sheet in rows for r in sheet[1:]] == ["0", "1", "2", "3", "4"]
    assert rows[0][1][9] == "Bà Tư"


async def test_a_failed_xlsx_export_leaves_no_file(
    shipped: Catalog, sessions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_events(sessions, 3)

    def broken(self: object, rows: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bot.export._XlsxLog, "append", broken)
    (tmp_path / "exports").mkdir()
    with pytest.raises(OSError, match="No space left"):
        await export_file(sessions, shipped, tmp_path / "exports" / "log.xlsx")
    assert list((tmp_path / "exports").iterdir()) == []


async def test_the_export_command_filters_and_writes_xlsx(shipped: Catalog, sessions, cli, tmp_path: Path) -> None:
    async with sessions.begin() as session:
        await seed_areas(session, shipped.areas, T0)
        person = Person(created_at=T0, area_code="demo-thon-1", display_name="Bà Tư")
        session.add(person)
        await session.flush()
        for kind, area, day in (("started", "demo-thon-1", 0), ("completed", "demo-thon-1", 1), ("started", None, 1)):
            session.add(
                ParticipationEvent(
                    person_id=person.id,
                    module="vneid",
                    module_version=1,
                    kind=kind,
                    step="",
                    channel="zalo",
                    at=T0 + dt.timedelta(days=day),
                    area_code=area,
                )
            )
    out = tmp_path / "x.xlsx"
    code, stdout, err = await cli("export", "--out", str(out), "--area", "demo", "--from", "2026-11-03")
    assert (code, err) == (0, "")
    assert stdout.strip() == f"1 rows written to {out}"
    rows = list(openpyxl.load_workbook(out).active.iter_rows(values_only=True))
    assert [r[5] for r in rows[1:]] == ["completed"]
    code, _, err = await cli("export", "--out", str(tmp_path / "all.csv"), "--kind", "started", "--names")
    assert code == 0
    assert len(rows_in(tmp_path / "all.csv")) == 2  # rows without a village too: the operator sees everything
    assert "Bà Tư" in {r[9] for r in rows_in(tmp_path / "all.csv")}
    async with sessions() as session:
        audits = list(await session.scalars(select(AuditEntry).where(AuditEntry.action == "log_exported")))
    assert [(a.actor_id, a.area_code, a.detail["names"]) for a in audits] == [(None, "demo", False), (None, None, True)]
    for wrong, message in (
        (["--out", "x.pdf"], "must end in .csv or .xlsx"),
        (["--out", "x.csv", "--area", "nowhere"], "no area 'nowhere'"),
        (["--out", "x.csv", "--module", "nope"], "no module 'nope'"),
    ):
        code, _, err = await cli("export", *wrong)
        assert code == 1
        assert message in err


def rows_in(path: Path) -> list[list[str]]:
    return list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))[1:]


def test_the_progress_bar_draws_in_place() -> None:
    stream = io.StringIO()
    bar = ProgressBar(1_000_000, stream)
    assert bar.line(450_000, 12.4) == f"[{'#' * 14}{'.' * 16}]  45%  450,000/1,000,000 rows  12 s"
    bar(1_000_000)
    bar.close()
    assert stream.getvalue().startswith("\r[")
    assert stream.getvalue().endswith("100%  1,000,000/1,000,000 rows  0 s\n")


class FillingDisk:
    """A file that takes ``room`` bytes, then fails as a full disk does (ENOSPC on write)."""

    def __init__(self, handle, room: int) -> None:
        self._handle, self._room = handle, room

    def write(self, data: bytes) -> int:
        if len(data) > self._room:
            self._handle.write(data[: self._room])
            self._room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self._room -= len(data)
        return self._handle.write(data)

    def __getattr__(self, name: str):
        return getattr(self._handle, name)

    def __enter__(self) -> FillingDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()


# openpyxl leaves a half-saved workbook's zip and sheet writers for the garbage collector, which
# complains about them; collected (and silenced) here, inside the test that caused them.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("suffix", ["csv", "xlsx"])
async def test_a_disk_filling_up_during_an_export_leaves_the_previous_file_and_says_so(
    sessions, cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    await add_events(sessions, 3000)
    out = tmp_path / f"log.{suffix}"
    out.write_bytes(b"last week's complete export")
    opened = Path.open

    def open_on_a_full_disk(path: Path, mode: str = "r", *args, **kwargs):
        handle = opened(path, mode, *args, **kwargs)
        return FillingDisk(handle, room=20_000) if path.name.endswith(".partial") else handle

    monkeypatch.setattr(Path, "open", open_on_a_full_disk)
    code, stdout, err = await cli("export", "--out", str(out))
    assert code == 1
    assert stdout == ""
    assert f"{out}: the export could not be written: No space left on device" in err
    assert "unchanged" in err
    assert out.read_bytes() == b"last week's complete export"
    assert exports_in(tmp_path) == [out.name]  # no partial file left beside it
    gc.collect()


def exports_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith((".log", "log")))
