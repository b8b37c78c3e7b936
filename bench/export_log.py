"""Exporting a big participation log: hocvuso's CSV and XLSX exports against what an office would otherwise do
(pandas ``read_sql`` + ``to_csv`` / ``to_excel``), on the same database in the same run. Prints a table, writes JSON.

    pip install -e ".[bench]"          # pandas, for the comparison (make bench does it)
    python bench/export_log.py [--rows 1000000] [--database-url URL] [--skip-pandas]

Each export runs in a fresh process, so that its peak memory (RSS, VmHWM) is its own. hocvuso's
rows are what `hocvuso export` writes (pseudonyms, village names, Excel-safe cells) through the same code
as the dashboard; pandas reads the raw columns (person ids, area codes) into one DataFrame and writes it.
Targets for 1,000,000 rows: CSV <= 15 s, XLSX <= 90 s, peak RSS <= 150 MB.
``--database-url`` must name an empty database (default: a fresh SQLite file).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.export import ExportFormat, export_file
from content import read_content
from flows.catalog import load_catalog
from flows.community import IN_PERSON
from storage.areas import seed_areas
from storage.db import create_engine, make_sessionmaker
from storage.migrate import upgrade
from storage.models import ParticipationEvent, Person

RESULTS = Path(__file__).resolve().parent / "results"
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
MODULES = ["vneid", "dich_vu_cong", "lua_dao", "binh_dan_hoc_vu_so", "gia_dinh_so"]
KINDS = ["started", "step", "step", "step", "check_passed", "stuck", "completed"]
ROWS_PER_PERSON = 20
CHUNK = 50_000
PANDAS_QUERY = (
    "SELECT at, person_id, channel, module, module_version, kind, step, assisted_by, area_code "
    "FROM participation_events ORDER BY at, id"
)
TARGETS = {"csv": 15.0, "xlsx": 90.0, "rss_mb": 150.0}


async def fill(url: str, rows: int, seed: int = 1) -> float:
    """A migrated database with the demo commune, rows / 20 residents and ``rows`` log events; seconds taken."""
    started = time.perf_counter()
    rng = random.Random(seed)
    catalog = load_catalog(read_content())
    engine = create_engine(url)
    await upgrade(engine)
    sessions = make_sessionmaker(engine)
    villages = [a.code for a in catalog.areas if a.kind == "village"]
    people = max(1, rows // ROWS_PER_PERSON)
    async with sessions.begin() as session:
        await seed_areas(session, catalog.areas, T0)
        for start in range(0, people, CHUNK):
            batch = range(start + 1, min(people, start + CHUNK) + 1)
            await session.execute(
                insert(Person.__table__),
                [
                    {
                        "id": i,
                        "created_at": T0,
                        "consented_at": T0,
                        "subject": rng.getrandbits(62),
                        "area_code": villages[i % len(villages)],
                        # a few names a resident typed as a formula: the export must make them inert
                        "display_name": '=HYPERLINK("http://x.example","y")' if i % 97 == 0 else f"Người {i}",
                    }
                    for i in batch
                ],
            )
    for start in range(0, rows, CHUNK):
        async with sessions.begin() as session:
            batch = []
            for n in range(start, min(rows, start + CHUNK)):
                person = n % people + 1
                assisted = rng.random() < 0.1
                batch.append(
                    {
                        "person_id": person,
                        "subject": person,
                        "area_code": villages[person % len(villages)],
                        "module": rng.choice(MODULES),
                        "module_version": 1,
                        "kind": rng.choice(KINDS),
                        "step": f"buoc_{rng.randrange(12)}",
                        "channel": IN_PERSON if assisted else rng.choice(("zalo", "telegram")),
                        "at": T0 + dt.timedelta(seconds=n * 15),
                        "assisted_by": 1 if assisted else None,
                        "corrects_id": None,
                    }
                )
            await session.execute(insert(ParticipationEvent.__table__), batch)
    async with engine.begin() as connection:
        await connection.exec_driver_sql("ANALYZE")
    await engine.dispose()
    return time.perf_counter() - started


def worker(tool: str, export_format: str, url: str, out: Path) -> dict[str, Any]:
    """One export in this process: seconds, rows, bytes, peak RSS."""
    started = time.perf_counter()
    if tool == "hocvuso":
        rows = asyncio.run(_hocvuso(url, out, ExportFormat(export_format)))
    else:
        import pandas as pd
        from sqlalchemy import create_engine as create_sync_engine

        sync_url = url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")
        frame = pd.read_sql(PANDAS_QUERY, create_sync_engine(sync_url))
        if export_format == "csv":
            frame.to_csv(out, index=False, encoding="utf-8-sig")
        else:
            frame.to_excel(out, index=False)
        rows = len(frame)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": rows, "bytes": out.stat().st_size, "peak_rss_mb": peak_rss_kb() / 1024}


def peak_rss_kb() -> int:
    """This process's peak RSS. VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over ``exec``
    from the forked parent, which here holds the generated log."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def _hocvuso(url: str, out: Path, export_format: ExportFormat) -> int:
    catalog = load_catalog(read_content())
    engine = create_engine(url)
    try:
        return await export_file(make_sessionmaker(engine), catalog, out, export_format=export_format)
    finally:
        await engine.dispose()


def run_worker(tool: str, export_format: str, url: str, folder: Path, timeout: float) -> dict[str, Any]:
    out = folder / f"{tool}.{export_format}"
    command = [sys.executable, __file__, "--worker", tool, export_format, "--database-url", url, "--out", str(out)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout:.0f} s"}
    finally:
        out.unlink(missing_ok=True)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database-url", default="", help="an empty database; default: a fresh SQLite file")
    parser.add_argument("--skip-pandas", action="store_true", help="only hocvuso's exports")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one export may take (default 1800)")
    parser.add_argument("--worker", nargs=2, metavar=("TOOL", "FORMAT"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.database_url, args.out)))
        return
    if not args.skip_pandas:
        try:
            import pandas  # noqa: F401
        except ImportError:
            sys.exit('pandas is missing: pip install -e ".[bench]" (or pass --skip-pandas)')
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        url = args.database_url or f"sqlite+aiosqlite:///{folder}/log.db"
        load = asyncio.run(fill(url, args.rows))
        print(f"{args.rows:,} log rows loaded in {load:.0f} s ({url.split(':')[0]})", flush=True)
        runs = [("hocvuso", "csv"), ("hocvuso", "xlsx")]
        if not args.skip_pandas:
            runs += [("pandas", "csv"), ("pandas", "xlsx")]
        measured = {}
        print(f"{'export':<18} {'seconds':>9} {'peak RSS MB':>12} {'rows':>10} {'file MB':>9}", flush=True)
        for tool, export_format in runs:
            result = run_worker(tool, export_format, url, folder, args.timeout)
            measured[f"{tool}_{export_format}"] = result
            name = f"{tool} {export_format.upper()}"
            if "error" in result:
                print(f"{name:<18} {result['error']}", flush=True)
                continue
            print(
                f"{name:<18} {result['seconds']:>9.1f} {result['peak_rss_mb']:>12.0f} {result['rows']:>10,} "
                f"{result['bytes'] / 1e6:>9.0f}",
                flush=True,
            )
    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), "")
    results = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {cpu}, Python {platform.python_version()}",
        "database": url.split(":")[0],
        "rows": args.rows,
        "load_s": load,
        "targets": TARGETS,
        **measured,
    }
    print(json.dumps(results, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"export_log_{results['database'].split('+')[0]}.json").write_text(
        json.dumps(results, indent=2), encoding="utf-8"
    )


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []


if __name__ == "__main__":
    main()
