"""Areas (provinces, communes, villages): seeding from content, CSV import, tree queries."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import CTE, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from flows.community import AREA_COLUMNS, AreaKind, AreaProblem, AreaSpec, parse_area_rows
from flows.text import fold
from storage.db import conflict_insert
from storage.models import Area

REQUIRED_COLUMNS = ("code", "kind", "name")  # parent, households and adults may be left out
DEPTH = {AreaKind.PROVINCE: 0, AreaKind.COMMUNE: 1, AreaKind.VILLAGE: 2}
_GROUPED_NUMBER = re.compile(r"^\d{1,3}(?:([., ])\d{3})(?:\1\d{3})*$")  # "1.120", "12,500", "1 120"
_DIGITS = re.compile(r"(\d+)")
_FIELDS = ("parent_code", "kind", "name", "households", "adults")


def _levels(specs: Sequence[AreaSpec]) -> list[list[AreaSpec]]:
    """Specs grouped by depth, parents' level first (a level never contains its own parents)."""
    return [level for depth in sorted(set(DEPTH.values())) if (level := [s for s in specs if DEPTH[s.kind] == depth])]


def _values(spec: AreaSpec) -> dict[str, object]:
    return {
        "parent_code": spec.parent,
        "kind": str(spec.kind),
        "name": spec.name,
        "households": spec.households,
        "adults": spec.adults,
    }


async def seed_areas(session: AsyncSession, specs: Sequence[AreaSpec], now: dt.datetime) -> int:
    """Insert the content's areas when the table is empty (a fresh database); return rows inserted.

    Safe when several workers start at once: rows another one inserted meanwhile are skipped.
    """
    if not specs or await session.scalar(select(Area.code).limit(1)) is not None:
        return 0
    inserted = 0
    for level in _levels(specs):
        statement = (
            conflict_insert(session, Area)
            .values([{"code": s.code, **_values(s), "updated_at": now} for s in level])
            .on_conflict_do_nothing(index_elements=["code"])
            .returning(Area.code)
        )
        inserted += len((await session.execute(statement)).all())
    _areas_changed()
    return inserted


async def upsert_areas(session: AsyncSession, specs: Sequence[AreaSpec], now: dt.datetime) -> tuple[int, int]:
    """Insert new areas and update changed ones (parent, kind, name, counts) by code; return (inserted, updated).

    Rows already equal are left alone. Validate first (:func:`read_area_csv`, ``parse_area_rows``).
    """
    stored = {area.code: area for area in await session.scalars(select(Area))}
    inserted = updated = 0
    for level in _levels(specs):
        for spec in level:
            values = _values(spec)
            area = stored.get(spec.code)
            if area is None:
                session.add(Area(code=spec.code, updated_at=now, **values))
                inserted += 1
            elif any(getattr(area, name) != values[name] for name in _FIELDS):
                for name in _FIELDS:
                    setattr(area, name, values[name])
                area.updated_at = now
                updated += 1
        await session.flush()  # this level's rows exist before the next level points at them
    _areas_changed()
    return inserted, updated


async def area_kinds(session: AsyncSession) -> dict[str, AreaKind]:
    """Every stored area's kind, by code (what ``parse_area_rows`` takes as ``known``)."""
    return {code: AreaKind(kind) for code, kind in await session.execute(select(Area.code, Area.kind))}


def _subtree(codes: Collection[str]) -> CTE:
    """A recursive CTE of the given (existing) codes and every code under them."""
    tree = select(Area.code).where(Area.code.in_(list(codes))).cte("subtree", recursive=True)
    child = aliased(Area)
    return tree.union(select(child.code).where(child.parent_code == tree.c.code))


async def descendants(session: AsyncSession, codes: Collection[str]) -> set[str]:
    """The given codes (those that exist) and every area under them, at any depth; one query."""
    if not codes:
        return set()
    tree = _subtree(codes)
    return set(await session.scalars(select(tree.c.code)))


def name_key(name: str) -> tuple[object, ...]:
    """Sort key for area names: Vietnamese without diacritics, numbers by value ("Thôn 2" before "Thôn 10")."""
    return tuple(int(part) if part.isdigit() else part for part in _DIGITS.split(fold(name)))


async def villages(session: AsyncSession, within: Collection[str] | None = None) -> list[Area]:
    """Villages (under ``within`` codes, at any depth, when given), ordered by commune then name."""
    if within is not None and not within:
        return []
    parent = aliased(Area)
    query = (
        select(Area, parent.name)
        .join(parent, parent.code == Area.parent_code)
        .where(Area.kind == AreaKind.VILLAGE.value)
    )
    if within is not None:
        query = query.where(Area.code.in_(select(_subtree(within).c.code)))
    rows = (await session.execute(query)).all()
    rows.sort(key=lambda row: (name_key(row[1]), row[0].parent_code, name_key(row[0].name), row[0].code))
    return [area for area, _ in rows]


async def communes(session: AsyncSession) -> list[Area]:
    """Every commune, ordered by name."""
    found = list(await session.scalars(select(Area).where(Area.kind == AreaKind.COMMUNE.value)))
    return sorted(found, key=lambda a: (name_key(a.name), a.code))


@dataclass(frozen=True)
class Place:
    code: str
    name: str


@dataclass(frozen=True)
class Places:
    """What the village question offers: every commune by name, and each commune's villages by name."""

    communes: tuple[Place, ...]
    villages: Mapping[str, tuple[Place, ...]]  # by commune code


PLACES_TTL_SECONDS = 10.0  # areas imported by another process (the CLI) show up this soon
_places: dict[str, tuple[float, Places]] = {}  # by database URL
_monotonic = time.monotonic  # tests move it


async def places(session: AsyncSession) -> Places:
    """:func:`communes` and their :func:`villages`, kept in memory: the question is asked of every new
    resident, and areas change a few times a year. Imports in this process refresh it at once."""
    key = session.get_bind().url.render_as_string()
    cached = _places.get(key)
    if cached is not None and _monotonic() - cached[0] < PLACES_TTL_SECONDS:
        return cached[1]
    found = await communes(session)
    villages_of = {
        commune.code: tuple(Place(v.code, v.name) for v in await villages(session, within=[commune.code]))
        for commune in found
    }
    result = Places(tuple(Place(c.code, c.name) for c in found), villages_of)
    _places[key] = (_monotonic(), result)
    return result


def _areas_changed() -> None:
    _places.clear()


async def area_tree(session: AsyncSession) -> list[tuple[int, Area]]:
    """Every area as (depth, area), each followed by its children, siblings ordered by name."""
    children: dict[str | None, list[Area]] = {}
    for area in await session.scalars(select(Area)):
        children.setdefault(area.parent_code, []).append(area)
    for siblings in children.values():
        siblings.sort(key=lambda a: (name_key(a.name), a.code))
    ordered: list[tuple[int, Area]] = []

    def walk(code: str | None, depth: int) -> None:
        for area in children.get(code, []):
            ordered.append((depth, area))
            walk(area.code, depth + 1)

    walk(None, 0)
    return ordered


def read_area_csv(path: Path, known: Mapping[str, AreaKind] | None = None) -> tuple[list[AreaSpec], list[AreaProblem]]:
    """Read and validate an areas CSV (UTF-8 with or without BOM; comma or semicolon separated).

    Problems carry the file's line number (the header is line 1). ``known`` are
    the areas already stored: rows may use them as parents, but not change their kind.
    """
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        return [], [AreaProblem(line, 'not UTF-8 text: in Excel, save as "CSV UTF-8 (Comma delimited)"')]
    return parse_area_csv(text, known)


def parse_area_csv(text: str, known: Mapping[str, AreaKind] | None = None) -> tuple[list[AreaSpec], list[AreaProblem]]:
    """:func:`read_area_csv` on text already read."""
    header_line = text.split("\n", 1)[0]
    delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    expected = ",".join(AREA_COLUMNS)
    first = next(reader, None)
    if first is None:
        return [], [AreaProblem(1, f"the file is empty; the first line must be {expected}")]
    header = [cell.strip().lower() for cell in first]
    unknown = [name for name in header if name and name not in AREA_COLUMNS]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    repeated = sorted({name for name in header if name and header.count(name) > 1})
    problems: list[AreaProblem] = []
    if unknown:
        problems.append(AreaProblem(1, f"unknown column(s): {', '.join(unknown)} (expected {expected})"))
    if missing:
        problems.append(AreaProblem(1, f"missing column(s): {', '.join(missing)} (expected {expected})"))
    if repeated:
        problems.append(AreaProblem(1, f"repeated column(s): {', '.join(repeated)}"))
    if problems:
        return [], problems

    rows: list[tuple[int, dict[str, object]]] = []
    line = reader.line_num + 1
    for cells in reader:
        row, line = line, reader.line_num + 1  # a quoted value may span lines
        if not any(cell.strip() for cell in cells):
            continue
        if any(cell.strip() for cell in cells[len(header) :]):
            problems.append(AreaProblem(row, f"{len(cells)} values, but the header has {len(header)} columns"))
        data = {name: _cell(name, cell) for name, cell in zip(header, cells, strict=False) if name}
        rows.append((row, data))
    if not rows:
        return [], [AreaProblem(1, "no areas: the file has only a header")]

    specs, found = parse_area_rows(rows, known)
    problems += found
    first_line = {str(data.get("code")): row for row, data in reversed(rows)}
    for spec in specs:
        if known and spec.code in known and known[spec.code] != spec.kind:
            problems.append(
                AreaProblem(
                    first_line.get(spec.code, 1),
                    f"'{spec.code}' is already stored as a {known[spec.code]}; its kind cannot change",
                )
            )
    return specs, sorted(problems, key=lambda p: p.row)


def _cell(column: str, value: str) -> str:
    """A cell without surrounding spaces; counts may use thousands separators as Excel shows them."""
    value = value.strip()
    if column in ("households", "adults") and _GROUPED_NUMBER.match(value):
        return re.sub(r"[., ]", "", value)
    return value
