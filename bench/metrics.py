"""Per-area metrics on a synthetic province: time per call. Prints a table, writes JSON.

    python bench/metrics.py [--communes 15] [--database-url URL] [--corrects-index]

Each commune has 10 villages of 500 households (about 4 residents each, 20,000 per commune) and
about 3 log rows per resident: the default province has 300,000 residents and about 1 million
events. ``--database-url`` must name an empty database (default: a fresh SQLite file).
Calls timed: ``area_metrics`` for the province, one commune and one village (what ``/cuatoi``
asks), ``household_statuses`` for one village (the household screen) and for the province.
``--corrects-index`` first adds the partial index on ``participation_events.corrects_id`` that the
schema lacks (every query looks up the retractions; without it, that is a pass over the whole log).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from content import read_content
from flows.catalog import load_catalog
from flows.community import IN_PERSON
from storage.db import create_engine, make_sessionmaker
from storage.metrics import area_metrics, household_statuses
from storage.migrate import upgrade
from storage.models import Area, Household, ParticipationEvent, Person

RESULTS = Path(__file__).resolve().parent / "results"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
MODULES = ["vneid", "dich_vu_cong", "lua_dao", "binh_dan_hoc_vu_so", "vneid_installed"]
CHUNK = 50_000


def province(communes: int, seed: int = 1) -> dict[str, list[dict[str, Any]]]:
    """Rows for every table, ids included."""
    rng = random.Random(seed)
    area = {"households": None, "adults": None, "updated_at": T0}
    rows: dict[str, list[dict[str, Any]]] = {"areas": [], "households": [], "persons": [], "events": []}
    rows["areas"].append({"code": "bp", "parent_code": None, "kind": "province", "name": "Tỉnh", **area})
    person_id = event_id = household_id = 0
    for c in range(1, communes + 1):
        rows["areas"].append({"code": f"b{c}", "parent_code": "bp", "kind": "commune", "name": f"Xã {c}", **area})
        for v in range(1, 11):
            village = f"b{c}-v{v}"
            counts = {"households": 520, "adults": 1500, "updated_at": T0, "name": village}
            rows["areas"].append({"code": village, "parent_code": f"b{c}", "kind": "village", **counts})
            for _ in range(500):
                household_id += 1
                rows["households"].append(
                    {"id": household_id, "code": f"B{household_id:08d}", "area_code": village, "label": "Nhà"}
                )
                for _ in range(rng.choice((1, 2, 3, 4, 4, 5, 6, 7))):
                    person_id += 1
                    subject = rng.getrandbits(62)
                    rows["persons"].append(
                        {"id": person_id, "subject": subject, "area_code": village, "household_id": household_id}
                    )
                    engagement = rng.random()
                    for module in MODULES:
                        if rng.random() >= engagement * 0.7:
                            continue
                        at = T0 + dt.timedelta(seconds=rng.randrange(180 * 86400))
                        kinds = ["started", "completed"] if rng.random() < 0.7 else ["started"]
                        assisted = rng.random() < 0.2
                        if assisted and kinds[-1] == "completed" and rng.random() < 0.03:
                            kinds.append("retracted")  # a volunteer's mistake, undone
                        for kind in kinds:
                            event_id += 1
                            rows["events"].append(
                                {
                                    "id": event_id,
                                    "person_id": person_id,
                                    "subject": subject,
                                    "area_code": village,
                                    "module": module,
                                    "module_version": 1,
                                    "kind": kind,
                                    "step": "",
                                    "channel": IN_PERSON if assisted else "zalo",
                                    "at": at,
                                    "assisted_by": None,
                                    "corrects_id": event_id - 1 if kind == "retracted" else None,
                                }
                            )
                            at += dt.timedelta(minutes=10)
    for household in rows["households"]:
        household["created_at"] = T0
    for person in rows["persons"]:
        person |= {"created_at": T0, "consented_at": T0, "display_name": None, "mentor_id": None}
    return rows


async def timed(call: Any, repeat: int = 3) -> float:
    """Best of ``repeat`` runs, in milliseconds."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        best = min(best, time.perf_counter() - started)
    return best * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--communes", type=int, default=15)
    parser.add_argument("--database-url", default="", help="an empty database; default: a fresh SQLite file")
    parser.add_argument("--corrects-index", action="store_true", help="add an index on corrects_id first")
    args = parser.parse_args()
    community = load_catalog(read_content()).community
    with tempfile.TemporaryDirectory() as folder:
        url = args.database_url or f"sqlite+aiosqlite:///{folder}/metrics.db"
        engine = create_engine(url)
        await upgrade(engine)
        sessions = make_sessionmaker(engine)
        rows = province(args.communes)
        started = time.perf_counter()
        async with sessions.begin() as session:
            for model, name in ((Area, "areas"), (Household, "households"), (Person, "persons")):
                await session.execute(insert(model.__table__), rows[name])
            for start in range(0, len(rows["events"]), CHUNK):
                await session.execute(insert(ParticipationEvent.__table__), rows["events"][start : start + CHUNK])
        async with engine.begin() as connection:
            if args.corrects_index:
                await connection.exec_driver_sql(
                    "CREATE INDEX ix_bench_corrects ON participation_events (corrects_id) WHERE corrects_id IS NOT NULL"
                )
            await connection.exec_driver_sql("ANALYZE")  # what autovacuum would do after a big import
        results: dict[str, Any] = {
            "machine": f"{platform.machine()}, {platform.python_version()}",
            "database": engine.dialect.name,
            "corrects_index": args.corrects_index,
            "residents": len(rows["persons"]),
            "households": len(rows["households"]),
            "events": len(rows["events"]),
            "load_s": time.perf_counter() - started,
        }
        async with sessions() as session:
            calls = {
                "area_metrics_province_ms": lambda: area_metrics(session, community, year=2026),
                "area_metrics_commune_ms": lambda: area_metrics(session, community, ["b1"], year=2026),
                "area_metrics_village_ms": lambda: area_metrics(session, community, ["b1-v1"], year=2026),
                "household_statuses_village_ms": lambda: household_statuses(session, community, ["b1-v1"]),
                "household_statuses_province_ms": lambda: household_statuses(session, community),
            }
            for name, call in calls.items():
                results[name] = await timed(call, 1 if "province" in name else 3)
                print(f"{name:34} {results[name]:10.1f}", flush=True)
        await engine.dispose()
    print(json.dumps(results, indent=2))
    RESULTS.mkdir(exist_ok=True)
    suffix = "_corrects_index" if args.corrects_index else ""
    (RESULTS / f"metrics_{results['database']}{suffix}.json").write_text(
        json.dumps(results, indent=2), encoding="utf-8"
    )


if __name__ == "__main__":
    asyncio.run(main())
