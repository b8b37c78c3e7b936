"""Inbound: hocvuso against the peer (python-telegram-bot's ConversationHandler + PicklePersistence), one run.

    python bench/inbound.py [--peer-seconds 90] [--seconds 15] [--concurrency 300] [--known 2000]
                            [--postgres-url URL | --no-postgres]

Both bots run as their own process behind the same Bot API emulator (tests/telegram_emulator.py), fed by
the same driver (bench/rig.py): ``--concurrency`` residents at a time each do the VNeID module (/start,
consent, village, "cai vneid ntn", then the module to its end by typed numbers, answering the check),
waiting for their replies before the next turn; a new resident starts when one finishes; 10% of updates
are delivered twice. Both bots start with ``--known`` residents who used them before (rows in our
database; entries in the peer's pickle file), as a commune's bot would after a while.

Scenarios:
  peer        bench/peer_ptb.py, for ``--peer-seconds`` (long enough for PicklePersistence's 60 s flush)
  sqlite      hocvuso on a fresh SQLite file, for ``--seconds``
  postgresql  hocvuso on a fresh PostgreSQL database (skipped when none answers)
  paced       hocvuso on SQLite at a fixed offered rate (``--paced-rate``): latency when not saturated
  dispatcher  in-process, no HTTP: residents' turns committed per second
  flood       hocvuso on SQLite: residents' latency at a paced load, then the same with one more
              account posting 100 messages a second (the inbound throttle: bot/inbound_throttle.py)

Printed: updates/s over HTTP and the ratio to the peer, p50/p99 from posting an update to its last reply,
lost and duplicated replies (bench/rig.py: drive), the longest silence at the emulator (the peer's flush).
The driver, the emulator and the bot share this machine's cores: compare figures of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from peer_ptb import PICKLE, seed
from rig import RESULTS, Load, Rig, add_residents, cell, drive, fresh_postgres, postgres_answers, reference

from bot.app import App, open_app
from bot.community.consent import AGREE
from bot.config import Settings
from bot.dispatcher import Envelope
from bot.ratelimit import RateLimits
from content import CONTENT_DIR
from flows.types import Inbound, InboundKind
from storage.clock import utc_now
from tests.helpers import as_numbers
from tests.telegram_emulator import TelegramEmulator

DEFAULT_POSTGRES = "postgresql+asyncpg://postgres:postgres@127.0.0.1:5432/postgres"
KNOWN_CHAT = 2_000_000  # residents who used the bot before
REFERENCE_CHATS = itertools.count(900_000)  # one new resident per scenario, alone, for the expected replies
FLOODER = 3_000_000


def script(app: App) -> list[str]:
    return ["/start", "1", "2", "cai vneid ntn", *as_numbers(app.catalog, "vneid")]


async def timed(rig: Rig, turns: list[str], args: argparse.Namespace, seconds: float, **load: Any) -> dict[str, Any]:
    replies = await reference(rig, turns, next(REFERENCE_CHATS))
    return await drive(rig, Load(turns, replies, args.concurrency, seconds=seconds, **load))


async def peer(turns: list[str], args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        await seed(Path(tmp) / PICKLE, range(KNOWN_CHAT, KNOWN_CHAT + args.known))
        print(f"peer: {args.known} known residents in its pickle file in {time.perf_counter() - started:.1f}s")
        command = [sys.executable, str(Path(__file__).parent / "peer_ptb.py")]
        async with Rig(Path(tmp), "", TelegramEmulator(), RateLimits(), command=command) as rig:
            return await timed(rig, turns, args, args.peer_seconds)


@contextlib.asynccontextmanager
async def ours_prepared(url: str, tmp: Path, known: int) -> Any:
    settings = Settings(data_dir=tmp, database_url=url, auto_upgrade=True, content_dir=CONTENT_DIR)
    async with open_app(settings) as app:
        async with app.sessions.begin() as session:
            await add_residents(session, known, KNOWN_CHAT, utc_now(), conversations=True)
        yield app


async def ours(url: str, tmp: Path, turns: list[str], args: argparse.Namespace) -> dict[str, Any]:
    async with ours_prepared(url, tmp, args.known):
        pass
    async with Rig(tmp, url, TelegramEmulator(), RateLimits()) as rig:
        return await timed(rig, turns, args, args.seconds)


async def paced(url: str, tmp: Path, turns: list[str], args: argparse.Namespace) -> dict[str, Any]:
    async with Rig(tmp, url, TelegramEmulator(), RateLimits()) as rig:
        # As long as the saturated runs: at 200/s, a p99 over 7.5 s rested on its 19 slowest replies.
        return await timed(rig, turns, args, args.seconds, rate=args.paced_rate, first_chat=100_000)


async def flood(url: str, tmp: Path, turns: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Residents at a paced load, alone and then with one account posting 100 messages a second."""
    results: dict[str, Any] = {}
    async with Rig(tmp, url, TelegramEmulator(), RateLimits()) as rig:
        replies = await reference(rig, turns, next(REFERENCE_CHATS))
        load = Load(turns, replies, 50, seconds=args.seconds / 2, rate=100, first_chat=200_000)
        alone = await drive(rig, load)
        stop, posted = asyncio.Event(), 0

        async def flooder() -> None:
            nonlocal posted
            posts: set[asyncio.Task[None]] = set()
            while not stop.is_set():
                task = asyncio.create_task(rig.post(rig.emulator.make_text_update(FLOODER, f"tin {posted}")))
                posts.add(task)
                task.add_done_callback(posts.discard)
                posted += 1
                await asyncio.sleep(0.01)
            await asyncio.gather(*posts)

        flooding = asyncio.create_task(flooder())
        flood_started = time.monotonic()
        beside = await drive(rig, Load(turns, replies, 50, seconds=args.seconds / 2, rate=100, first_chat=300_000))
        stop.set()
        await flooding
        flood_seconds = time.monotonic() - flood_started
        await asyncio.sleep(1)
        notice = rig.emulator.texts_to(FLOODER)
        results = {
            "residents_p50_ms": alone["p50_ms"],
            "residents_p99_ms": alone["p99_ms"],
            "with_flood_p50_ms": beside["p50_ms"],
            "with_flood_p99_ms": beside["p99_ms"],
            "lost": alone["lost"] + beside["lost"],
            "duplicated": alone["duplicated"] + beside["duplicated"],
            "flood_posted_per_s": posted / flood_seconds,
            "flood_answered_per_s": len(notice) / flood_seconds,  # the throttle's 5 a second, and one notice
        }
    return results


async def dispatcher(app: App, events: int = 3000, people: int = 500) -> dict[str, Any]:
    """In-process, no HTTP: first contacts (consent, then a village), then turns of known residents."""
    gate = asyncio.Semaphore(64)

    async def one(event_id: str, user: str, inbound: Inbound) -> None:
        async with gate:
            await app.dispatcher.handle(Envelope("bench", event_id, user, inbound))

    async def per_second(inbounds: list[tuple[str, str, Inbound]]) -> float:
        started = time.perf_counter()
        await asyncio.gather(*(one(*item) for item in inbounds))
        return len(inbounds) / (time.perf_counter() - started)

    users = [f"u{i}" for i in range(people)]
    agree = await per_second([(f"a-{u}", u, Inbound(InboundKind.BUTTON, utc_now(), button_id=AGREE)) for u in users])
    village = await per_second([(f"v-{u}", u, Inbound(InboundKind.TEXT, utc_now(), text="1")) for u in users])
    texts = ["cai vneid ntn", "1", "menu", "lua dao qua mang", "2"]
    turns = [
        (f"t{i}", users[i % people], Inbound(InboundKind.TEXT, utc_now(), text=texts[(i // people) % len(texts)]))
        for i in range(events)
    ]
    return {"events_per_s": await per_second(turns), "agree_per_s": agree, "village_per_s": village}


async def settle(seconds: float = 3.0) -> None:
    """Between scenarios: the disk writes of the last one (the peer's pickle file is rewritten thousands of
    times) are flushed before the next one is timed, so that no scenario pays for another's writeback."""
    await asyncio.to_thread(os.sync)
    await asyncio.sleep(seconds)


def print_table(results: dict[str, Any]) -> None:
    print(f"\nInbound bench ({results['machine']}); peer: {results['peer_is']}")
    columns = ["updates_per_s", "ratio", "p50_ms", "p99_ms", "lost", "duplicated", "gave_up", "longest_silence_s"]
    columns += ["residents", "updates", "redelivered", "seconds"]
    print("  " + " | ".join(["scenario", *columns]))
    for name in ("peer", "sqlite", "postgresql", "paced"):
        row = results.get(name)
        if row:
            print("  " + " | ".join([name, *(cell(row.get(c, "")) for c in columns)]))
    for name in ("dispatcher", "flood"):
        if results.get(name):
            print(f"  {name}: " + ", ".join(f"{k}={cell(v)}" for k, v in results[name].items()))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer-seconds", type=float, default=90.0)
    parser.add_argument("--seconds", type=float, default=15.0, help="each of hocvuso's timed scenarios")
    parser.add_argument("--concurrency", type=int, default=300)
    parser.add_argument("--known", type=int, default=2_000, help="residents who used the bot before")
    parser.add_argument("--paced-rate", type=float, default=200.0)
    parser.add_argument("--postgres-url", default=os.environ.get("HOCVUSO_TEST_POSTGRES_URL") or DEFAULT_POSTGRES)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--only", nargs="*", help="some scenarios only")
    args = parser.parse_args()
    wanted = set(args.only or ["peer", "sqlite", "postgresql", "paced", "dispatcher", "flood"])
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "peer_is": "python-telegram-bot 22 ConversationHandler(persistent) + PicklePersistence(defaults), "
        "webhook into application.update_queue",
    }
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        settings = Settings(data_dir=Path(tmp), database_url=sqlite_url, auto_upgrade=True, content_dir=CONTENT_DIR)
        async with open_app(settings) as app:
            turns = script(app)
        if "peer" in wanted:
            results["peer"] = await peer(turns, args)
            await settle()
            print("peer", results["peer"], flush=True)
        if "sqlite" in wanted:
            results["sqlite"] = await ours(sqlite_url, Path(tmp), turns, args)
            await settle()
            print("sqlite", results["sqlite"], flush=True)
        if "postgresql" in wanted and not args.no_postgres:
            if await postgres_answers(args.postgres_url):
                with tempfile.TemporaryDirectory() as pg_tmp:
                    async with fresh_postgres(args.postgres_url) as pg_url:
                        results["postgresql"] = await ours(pg_url, Path(pg_tmp), turns, args)
                await settle()
                print("postgresql", results["postgresql"], flush=True)
            else:
                print(f"no PostgreSQL answers at {args.postgres_url}: skipped", flush=True)
        if "paced" in wanted:
            results["paced"] = await paced(sqlite_url, Path(tmp), turns, args)
            await settle()
        if "dispatcher" in wanted:
            with tempfile.TemporaryDirectory() as d_tmp:
                url = f"sqlite+aiosqlite:///{Path(d_tmp) / 'd.db'}"
                in_process = Settings(Path(d_tmp), url, auto_upgrade=True, content_dir=CONTENT_DIR)
                async with open_app(in_process) as app:
                    results["dispatcher"] = await dispatcher(app)
        if "flood" in wanted:
            results["flood"] = await flood(sqlite_url, Path(tmp), turns, args)
    base = (results.get("peer") or {}).get("updates_per_s")
    for name in ("peer", "sqlite", "postgresql", "paced"):
        if results.get(name) and base:
            results[name]["ratio"] = results[name]["updates_per_s"] / base
    print_table(results)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "inbound.json"
    out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"  written to {out}")


if __name__ == "__main__":
    asyncio.run(main())
