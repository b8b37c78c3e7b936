"""The participation-log export: pseudonymous, Excel-safe, never half-written."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

import bot.export
from bot.export import export_csv, pseudonym, pseudonym_key, safe_cell
from flows.catalog import Catalog
from storage.models import ParticipationEvent, Person
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

    def disk_full(value: object) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bot.export, "safe_cell", disk_full)
    with pytest.raises(OSError, match="No space left"):
        await export_csv(sessions, shipped, out)
    assert out.read_text(encoding="utf-8") == "previous complete export"
    assert list(out.parent.iterdir()) == [out]
