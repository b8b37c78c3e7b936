"""Areas: CSV reading (line numbers, BOM, semicolons), seeding, upserts, tree queries, and `hocvuso areas`."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from flows.catalog import Catalog
from flows.community import AreaKind, AreaSpec
from storage.areas import (
    PLACES_TTL_SECONDS,
    area_kinds,
    area_tree,
    communes,
    descendants,
    places,
    read_area_csv,
    seed_areas,
    upsert_areas,
    villages,
)
from storage.models import Area
from tests.conftest import Cli
from tests.helpers import T0

HEADER = "code,parent,kind,name,households,adults"


def spec(code: str, parent: str | None, kind: str, name: str, households: int | None = None) -> AreaSpec:
    return AreaSpec(code=code, parent=parent, kind=AreaKind(kind), name=name, households=households)


# A province with two communes; names chosen so that name order differs from code order.
TREE = [
    spec("p", None, "province", "Tỉnh Mẫu"),
    spec("a", "p", "commune", "Xã Bình"),
    spec("b", "p", "commune", "Xã An"),
    spec("a1", "a", "village", "Thôn 10", 100),
    spec("a2", "a", "village", "Thôn 2", 200),
    spec("a3", "a", "village", "Thôn Đông", 300),
    spec("b1", "b", "village", "Thôn Chợ", 50),
]


def write(tmp_path: Path, text: str, name: str = "areas.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


async def count_areas(sessions) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(Area)) or 0


# --- reading CSV files (no database) ---------------------------------------------------------


def test_problems_are_reported_at_their_file_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"{HEADER}\n"  # 1
        "hp,,commune,Xã Hương Phố,,\n"  # 2
        "hp-1,hp,village,Thôn 1,320,900\n"  # 3
        "\n"  # 4: blank lines are skipped but still counted
        'hp-2,hp,village,"Thôn\n'  # 5: a quoted name over two lines
        'Hai",abc,10\n'  # 6
        "hp-1,hp,village,Thôn Một,1,1\n"  # 7: code used twice
        "hp-3,nowhere,village,Thôn 3,,\n"  # 8
        "hp-4,hp,hamlet,Thôn 4,,\n"  # 9
        "hp-5,hp,village,Thôn 5,1,2,3\n"  # 10: one value too many
        ",,,,,\n",  # 11: an empty row as Excel writes it
    )
    specs, problems = read_area_csv(path)
    assert [p.row for p in problems] == [5, 7, 8, 9, 10]
    assert "households" in problems[0].message
    assert "already used on row 3" in problems[1].message
    assert "'nowhere' is not a known area" in problems[2].message
    assert problems[3].message.startswith("kind:")
    assert "7 values, but the header has 6 columns" in problems[4].message
    assert [s.code for s in specs][:2] == ["hp", "hp-1"]  # parents first


@pytest.mark.parametrize("delimiter", [",", ";"])
@pytest.mark.parametrize("bom", [True, False])
def test_excel_files_with_bom_or_semicolons_are_read(tmp_path: Path, delimiter: str, bom: bool) -> None:
    rows = [HEADER.split(","), ["hp", "", "commune", "Xã Hương Phố", "", ""], ["hp-1", "hp", "village", "Thôn 1"]]
    rows[2] += ["1.120", "3 400"] if delimiter == ";" else ['"1,120"', "3400"]
    text = "\r\n".join(delimiter.join(row) for row in rows) + "\r\n"
    path = write(tmp_path, ("\ufeff" if bom else "") + text)
    specs, problems = read_area_csv(path)
    assert problems == []
    assert [(s.code, s.parent, s.kind, s.name, s.households, s.adults) for s in specs] == [
        ("hp", None, AreaKind.COMMUNE, "Xã Hương Phố", None, None),
        ("hp-1", "hp", AreaKind.VILLAGE, "Thôn 1", 1120, 3400),
    ]


def test_unknown_and_missing_columns_are_named(tmp_path: Path) -> None:
    specs, problems = read_area_csv(write(tmp_path, "Code,kind,nam,households,adult\nx,commune,X,,\n"))
    assert specs == []
    assert [p.row for p in problems] == [1, 1]
    assert "unknown column(s): nam, adult" in problems[0].message
    assert "missing column(s): name" in problems[1].message
    assert HEADER in problems[1].message


def test_optional_columns_may_be_left_out(tmp_path: Path) -> None:
    specs, problems = read_area_csv(write(tmp_path, "name,kind,code\nXã A,commune,xa-a\n"))
    assert problems == []
    assert specs == [spec("xa-a", None, "commune", "Xã A")]


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "the file is empty"), (f"{HEADER}\n\n", "no areas"), ("code,kind,name,kind\n", "repeated column(s): kind")],
)
def test_files_without_areas_are_refused(tmp_path: Path, text: str, message: str) -> None:
    specs, problems = read_area_csv(write(tmp_path, text))
    assert specs == []
    assert len(problems) == 1
    assert message in problems[0].message


def test_a_file_that_is_not_utf8_is_refused_at_its_first_bad_line(tmp_path: Path) -> None:
    path = write(tmp_path, f"{HEADER}\nhp,,commune,Xa,,\nhp-1,hp,village,Thôn Đông,,\n", encoding="cp1258")
    specs, problems = read_area_csv(path)
    assert specs == []
    assert [p.row for p in problems] == [3]
    assert "UTF-8" in problems[0].message


# --- the database ----------------------------------------------------------------------------


async def test_seeding_happens_only_on_an_empty_table(shipped: Catalog, sessions) -> None:
    async with sessions.begin() as session:
        assert await seed_areas(session, shipped.areas, T0) == len(shipped.areas)
    async with sessions.begin() as session:
        assert await seed_areas(session, shipped.areas, T0) == 0
    assert await count_areas(sessions) == len(shipped.areas)


async def test_seeding_leaves_imported_areas_alone(shipped: Catalog, sessions) -> None:
    async with sessions.begin() as session:
        await upsert_areas(session, TREE[:2], T0)
    async with sessions.begin() as session:
        assert await seed_areas(session, shipped.areas, T0) == 0
        assert set(await area_kinds(session)) == {"p", "a"}


async def test_upsert_inserts_updates_and_leaves_equal_rows_alone(sessions) -> None:
    async with sessions.begin() as session:
        assert await upsert_areas(session, TREE, T0) == (len(TREE), 0)
    later = T0 + dt.timedelta(days=1)
    changed = [
        spec("a1", "a", "village", "Thôn 10", 150),  # new count
        spec("b1", "a", "village", "Thôn Chợ", 50),  # moved to another commune
        spec("a2", "a", "village", "Thôn 2", 200),  # unchanged
        spec("b2", "b", "village", "Thôn Mới", 10),  # new
    ]
    async with sessions.begin() as session:
        assert await upsert_areas(session, changed, later) == (1, 2)
    async with sessions() as session:
        stored = {a.code: a for a in await session.scalars(select(Area))}
    assert stored["a1"].households == 150
    assert stored["a1"].updated_at == later
    assert stored["b1"].parent_code == "a"
    assert stored["a2"].updated_at == T0
    assert stored["b2"].parent_code == "b"
    assert stored["p"].kind == "province"


async def test_a_csv_may_add_villages_to_a_stored_commune(shipped: Catalog, sessions, tmp_path: Path) -> None:
    async with sessions.begin() as session:
        await seed_areas(session, shipped.areas, T0)
    path = write(tmp_path, f"{HEADER}\ndemo-thon-9,demo,village,Thôn Mới,12,30\n")
    assert [p.message for p in read_area_csv(path)[1]] == ["parent 'demo' is not a known area"]  # without `known`
    async with sessions.begin() as session:
        specs, problems = read_area_csv(path, await area_kinds(session))
        assert problems == []
        assert await upsert_areas(session, specs, T0) == (1, 0)
    async with sessions() as session:
        found = [v.code for v in await villages(session, within=["demo"])]
    assert "demo-thon-9" in found
    assert len(found) == 1 + sum(a.kind == AreaKind.VILLAGE for a in shipped.areas)


async def test_a_csv_cannot_change_the_kind_of_a_stored_area(sessions, tmp_path: Path) -> None:
    async with sessions.begin() as session:
        await upsert_areas(session, TREE, T0)
        known = await area_kinds(session)
    path = write(tmp_path, f"{HEADER}\nb,p,commune,Xã An,,\na2,p,commune,Xã Hai,,\n")
    _, problems = read_area_csv(path, known)
    assert [(p.row, p.message) for p in problems] == [
        (3, "'a2' is already stored as a village; its kind cannot change")
    ]


async def test_descendants_reach_every_level(sessions) -> None:
    async with sessions.begin() as session:
        await upsert_areas(session, TREE, T0)
    async with sessions() as session:
        assert await descendants(session, ["p"]) == {s.code for s in TREE}
        assert await descendants(session, ["a"]) == {"a", "a1", "a2", "a3"}
        assert await descendants(session, ["a1", "b"]) == {"a1", "b", "b1"}
        assert await descendants(session, []) == set()
        assert await descendants(session, ["nowhere"]) == set()


async def test_villages_and_communes_come_in_reading_order(sessions) -> None:
    async with sessions.begin() as session:
        await upsert_areas(session, TREE, T0)
    async with sessions() as session:
        assert [c.code for c in await communes(session)] == ["b", "a"]  # Xã An, Xã Bình
        # By commune name, then by name: numbers by value, "Đ" as "D".
        assert [v.code for v in await villages(session)] == ["b1", "a2", "a1", "a3"]
        assert [v.code for v in await villages(session, within=["a"])] == ["a2", "a1", "a3"]
        assert [v.code for v in await villages(session, within=["p"])] == ["b1", "a2", "a1", "a3"]
        assert [v.code for v in await villages(session, within=["a3", "b1"])] == ["b1", "a3"]
        assert await villages(session, within=[]) == []
        tree = [(depth, area.code) for depth, area in await area_tree(session)]
    assert tree == [(0, "p"), (1, "b"), (2, "b1"), (1, "a"), (2, "a2"), (2, "a1"), (2, "a3")]


async def test_the_village_question_reads_areas_once_and_sees_changes(sessions, monkeypatch) -> None:
    async with sessions.begin() as session:
        await upsert_areas(session, TREE, T0)
    async with sessions() as session:
        found = await places(session)
    assert [c.code for c in found.communes] == ["b", "a"]
    assert [v.code for v in found.villages["a"]] == ["a2", "a1", "a3"]
    async with sessions.begin() as session:  # what another process (the CLI) would write
        session.add(Area(code="a4", parent_code="a", kind="village", name="Thôn 1", updated_at=T0))
    async with sessions() as session:
        assert [v.code for v in (await places(session)).villages["a"]] == ["a2", "a1", "a3"]  # still in memory
        later = time.monotonic() + PLACES_TTL_SECONDS
        monkeypatch.setattr("storage.areas._monotonic", lambda: later)
        assert [v.code for v in (await places(session)).villages["a"]] == ["a4", "a2", "a1", "a3"]
    async with sessions.begin() as session:  # an import in this process: seen at once
        await upsert_areas(session, [spec("a5", "a", "village", "Thôn 0")], T0)
    async with sessions() as session:
        assert [v.code for v in (await places(session)).villages["a"]] == ["a5", "a4", "a2", "a1", "a3"]


# --- `hocvuso areas` ---------------------------------------------------------------------------


async def test_cli_import_with_problems_writes_nothing(cli: Cli, sessions, tmp_path: Path) -> None:
    path = write(tmp_path, f"{HEADER}\nhp,,commune,Xã Hương Phố,,\nhp-1,hp,village,Thôn 1,-5,\nhp-2,hq,village,X,,\n")
    code, out, err = await cli("areas", "import", str(path))
    assert code == 1
    assert out == ""
    lines = err.splitlines()
    assert lines[0].startswith(f"{path}:3: households:")
    assert lines[1] == f"{path}:4: parent 'hq' is not a known area"
    assert lines[2:] == [f"2 problem(s) in {path}; nothing was imported"]
    assert await count_areas(sessions) == 0


async def test_cli_imports_then_updates_and_lists(cli: Cli, sessions, tmp_path: Path) -> None:
    first = write(
        tmp_path, f"\ufeff{HEADER.replace(',', ';')}\nhp;;commune;Xã Hương Phố;;\nhp-1;hp;village;Thôn 1;10;20\n"
    )
    assert await cli("areas", "import", str(first)) == (0, "2 area(s) added, 0 updated, 0 unchanged\n", "")
    second = write(tmp_path, f"{HEADER}\nhp-1,hp,village,Thôn 1,11,20\nhp-2,hp,village,Thôn 2,,\n", "more.csv")
    assert await cli("areas", "import", str(second)) == (0, "1 area(s) added, 1 updated, 0 unchanged\n", "")
    code, out, _ = await cli("areas", "list")
    assert code == 0
    assert out.splitlines() == [
        "hp  Xã Hương Phố [commune]: 11 households, 20 adults in its villages",
        "  hp-1  Thôn 1 [village]: 11 households, 20 adults",
        "  hp-2  Thôn 2 [village]: no official counts",
    ]
    assert await count_areas(sessions) == 3  # importing does not add the demo areas


async def test_cli_on_a_fresh_database(cli: Cli, tmp_path: Path) -> None:
    code, out, _ = await cli("areas", "list")
    assert code == 0
    assert out.startswith("no areas yet")
    missing = tmp_path / "missing.csv"
    assert await cli("areas", "import", str(missing)) == (1, "", f"{missing}: no such file\n")
