"""Telegram throughput and latency against the local Bot API emulator. Prints a table, writes JSON.

    python bench/telegram_webhook.py [--residents 300] [--database-url URL] [--bulk 900]

Scenarios (one process; the load driver shares the machine's cores with the bot):
  dispatcher   inbound events committed per second, in-process, no HTTP
  webhook      residents doing the VNeID module over HTTP, 10% of updates delivered twice,
               emulator limits off: updates/s, p50/p99 from delivery to the last reply, lost, duplicated
  paced        the same at a fixed offered rate (default 200 updates/s): p50/p99 latency
  bulk         a bulk send draining at Telegram's limits (30/s, 1/s per chat) while residents chat:
               achieved bulk rate, 429s provoked, residents' reply p50/p99
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rig import RESULTS, Rig, percentile

from bot.app import App, open_app
from bot.community.consent import AGREE
from bot.config import TELEGRAM_LIMITS, Settings
from bot.dispatcher import Envelope
from bot.ratelimit import RateLimits
from content import CONTENT_DIR
from flows.types import Inbound, InboundKind, Reply
from storage.clock import utc_now
from storage.models import Priority
from storage.repo import Outgoing, enqueue
from tests.chat import reference_turns
from tests.helpers import T0, as_numbers
from tests.telegram_emulator import TelegramEmulator


async def script(app: App, scratch: Path) -> tuple[list[str], list[int]]:
    """The turns of one resident (consent typed as "1", then the VNeID module by numbers) and how many
    replies each turn gets."""
    turns = ["/start", "1", "cai vneid ntn", *as_numbers(app.catalog, "vneid")[1:]]
    inbounds = [Inbound(InboundKind.START if t == "/start" else InboundKind.TEXT, T0, text=t) for t in turns]
    replies = await reference_turns(app.catalog, inbounds, scratch / "script.db")
    return turns, [len(turn) for turn in replies]


async def bench_dispatcher(app: App, events: int, people: int = 500) -> dict[str, Any]:
    """In-process, no HTTP. First contacts (consent, then a village: two events each) are timed apart
    from the turns that follow, which are what a person does for the rest of their life with the bot."""
    gate = asyncio.Semaphore(64)

    async def one(event_id: str, user: str, inbound: Inbound) -> None:
        async with gate:
            await app.dispatcher.handle(Envelope("bench", event_id, user, inbound))

    async def timed(inbounds: list[tuple[str, str, Inbound]]) -> float:
        started = time.perf_counter()
        await asyncio.gather(*(one(*item) for item in inbounds))
        return len(inbounds) / (time.perf_counter() - started)

    users = [f"u{i}" for i in range(people)]
    agree = await timed([(f"a-{u}", u, Inbound(InboundKind.BUTTON, utc_now(), button_id=AGREE)) for u in users])
    village = await timed([(f"v-{u}", u, Inbound(InboundKind.TEXT, utc_now(), text="1")) for u in users])
    texts = ["cai vneid ntn", "1", "menu", "lua dao qua mang", "2"]
    turns = [
        (f"t{i}", users[i % people], Inbound(InboundKind.TEXT, utc_now(), text=texts[(i // people) % len(texts)]))
        for i in range(events)
    ]
    return {
        "events": events,
        "events_per_s": await timed(turns),
        "first_contacts": people,
        "agree_per_s": agree,
        "village_per_s": village,
    }


async def run_residents(
    rig: Rig, turns: list[str], counts: list[int], residents: int, rate: float | None, first_chat: int
) -> dict[str, Any]:
    """Residents go through the turns; latency = delivery of an update to its last reply at the emulator."""
    emulator, rng = rig.emulator, random.Random(1)
    posted_at: dict[tuple[int, int], float] = {}
    ticket = asyncio.Semaphore(0)
    duplicates = 0

    async def pacer(total: int) -> None:
        for _ in range(total):
            ticket.release()
            if rate:
                await asyncio.sleep(1 / rate)

    async def resident(chat: int) -> None:
        nonlocal duplicates
        expected_so_far = 0
        for index, turn in enumerate(turns):
            await ticket.acquire()
            update = emulator.make_text_update(chat, turn)
            posted_at[(chat, index)] = time.monotonic()
            await rig.post(update)
            if rng.random() < 0.1:
                duplicates += 1
                await rig.post(update)
            expected_so_far += counts[index]
            while len(emulator.texts_to(chat)) < expected_so_far:  # a resident reads before answering
                await asyncio.sleep(0.005)

    chats = list(range(first_chat, first_chat + residents))
    started = time.perf_counter()
    await asyncio.gather(pacer(residents * len(turns)), *(resident(c) for c in chats))
    elapsed = time.perf_counter() - started
    await asyncio.sleep(0.5)
    latencies, lost, duplicated = [], 0, 0
    per_chat: dict[int, list[float]] = {}
    for sent in emulator.sent:
        per_chat.setdefault(sent.chat_id, []).append(sent.at)
    for chat in chats:
        arrivals = per_chat.get(chat, [])
        expected_total = sum(counts)
        lost += max(0, expected_total - len(arrivals))
        duplicated += max(0, len(arrivals) - expected_total)
        seen = 0
        for index, count in enumerate(counts):
            seen += count
            if seen <= len(arrivals):
                latencies.append((arrivals[seen - 1] - (posted_at[(chat, index)] - 0)) * 1000)
    updates = residents * len(turns)
    return {
        "residents": residents,
        "updates": updates,
        "redelivered": duplicates,
        "updates_per_s": (updates + duplicates) / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "lost": lost,
        "duplicated": duplicated,
    }


async def bench_bulk(rig: Rig, app: App, bulk: int, turns: list[str], counts: list[int]) -> dict[str, Any]:
    payload = Reply(text="Thông báo: lớp học kỹ năng số tối thứ Bảy tại nhà văn hóa thôn.").to_dict()
    async with app.sessions.begin() as session:
        bulk_rows = [Outgoing("telegram", str(900_000 + i), None, payload, Priority.BULK) for i in range(bulk)]
        await enqueue(session, bulk_rows, utc_now())
    start_count = len(rig.emulator.sent)
    started = time.perf_counter()
    residents = await run_residents(rig, turns[:4], counts[:4], 20, rate=5, first_chat=800_000)
    while sum(1 for s in rig.emulator.sent if s.chat_id >= 900_000) < bulk:
        await asyncio.sleep(0.1)
    elapsed = time.perf_counter() - started
    sent = len(rig.emulator.sent) - start_count
    return {
        "bulk": bulk,
        "bulk_rate_per_s": bulk / elapsed,
        "of_limit_pct": 100 * sent / elapsed / TELEGRAM_LIMITS.per_second,  # type: ignore[operator]
        "429s": rig.emulator.too_many_requests,
        "resident_p50_ms": residents["p50_ms"],
        "resident_p99_ms": residents["p99_ms"],
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--residents", type=int, default=300)
    parser.add_argument("--paced-rate", type=float, default=200.0)
    parser.add_argument("--bulk", type=int, default=900, help="bulk messages (20000 takes about 11 minutes)")
    parser.add_argument("--database-url", default="", help="default: a fresh SQLite file")
    args = parser.parse_args()
    results: dict[str, Any] = {"machine": f"{platform.machine()}, {platform.python_version()}"}
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        settings = Settings(data_dir=Path(tmp), database_url=url, auto_upgrade=True, content_dir=CONTENT_DIR)
        async with open_app(settings) as app:
            turns, counts = await script(app, Path(tmp))
            results["dispatcher"] = await bench_dispatcher(app, 3000)
            print("dispatcher done", results["dispatcher"], flush=True)
            rig_args = (Path(tmp), url)
            async with Rig(*rig_args, TelegramEmulator(), RateLimits()) as rig:
                results["webhook"] = await run_residents(rig, turns, counts, args.residents, None, 1)
            print("webhook done", results["webhook"], flush=True)
            async with Rig(*rig_args, TelegramEmulator(), RateLimits()) as rig:
                results["paced"] = await run_residents(rig, turns, counts, 100, args.paced_rate, 100_000)
            print("paced done", results["paced"], flush=True)
            emulator = TelegramEmulator(max_per_second=TELEGRAM_LIMITS.per_second)
            async with Rig(*rig_args, emulator, TELEGRAM_LIMITS) as rig:
                results["bulk"] = await bench_bulk(rig, app, args.bulk, turns, counts)
    results["database"] = "postgresql" if args.database_url.startswith("postgresql") else "sqlite"
    print(f"\nTelegram bench ({results['database']}, {results['machine']})")
    for name, row in results.items():
        if isinstance(row, dict):
            cells = ", ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())
            print(f"  {name:<11} {cells}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"telegram_webhook_{results['database']}.json"
    out.write_text(json.dumps(results, indent=2, default=statistics.mean), encoding="utf-8")
    print(f"  written to {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")


if __name__ == "__main__":
    asyncio.run(main())
