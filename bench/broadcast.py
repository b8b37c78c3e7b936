"""A broadcast to many residents through `hocvuso run` and the Bot API emulator, with a SIGKILL halfway.

    python bench/broadcast.py [--recipients 20000] [--rate 200] [--kill-at 0.5] [--database-url URL]

Telegram allows about 30 messages a second; 20,000 messages at that rate take 11 minutes. The bench
raises the limit proportionally instead (``--rate``, applied to both the emulator, which answers 429
above it, and the bot's sender), so the same queue drains at the same share of its limit, faster.
While it drains, new residents write to the bot: their first reply's latency shows that replies go
before bulk. At ``--kill-at`` of the messages delivered the bot is killed (SIGKILL) and restarted.

Printed: the achieved rate against the limit (between 10% and 90% of the deliveries, restart
excluded), 429s provoked, duplicates (a chat that got the message twice), lost (no message and not
marked "unknown"), "unknown" (in flight at the kill: not resent, by design), replies p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rig import RESULTS, Rig, add_residents, percentile, rate_within, steady_rate

from bot.app import open_app
from bot.broadcasts import service
from bot.config import Settings
from bot.ratelimit import RateLimits
from content import CONTENT_DIR
from storage.audience import Audience
from storage.clock import utc_now
from storage.db import create_engine, make_sessionmaker
from storage.models import OutboxMessage, Person, Role
from storage.roles import grant
from tests.telegram_emulator import TelegramEmulator

FIRST_CHAT = 1_000_000
WRITERS_CHAT = 5_000_000  # residents writing while the broadcast drains
TEXT = "Chào {{ ten }}! Tối thứ Bảy có lớp hướng dẫn VNeID tại nhà văn hóa {{ thon }}. Mời bạn đến dự."


async def prepare(settings: Settings, recipients: int) -> int:
    """A commune with ``recipients`` reachable residents in one village and a confirmed broadcast to them."""
    async with open_app(settings) as app, app.sessions.begin() as session:
        now = utc_now()
        volunteer = Person(created_at=now, consented_at=now, subject=0, area_code="demo-thon-1")
        session.add(volunteer)
        await session.flush()
        await grant(session, volunteer.id, Role.VOLUNTEER, "demo-thon-1", None, now)
        await add_residents(session, recipients, FIRST_CHAT, now)
        audience = Audience(areas=("demo-thon-1",), channels=("telegram",))
        draft = await service.create_draft(session, volunteer.id, audience, TEXT, now)
        assert await service.confirm(session, draft.id, now)
        return draft.id


class Outbox:
    """Reads the bot's outbox from here (one engine: the load driver must not steal the emulator's time)."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        self.sessions = make_sessionmaker(self.engine)

    async def counts(self) -> dict[str, int]:
        async with self.sessions() as session:
            rows = await session.execute(
                select(OutboxMessage.status, func.count())
                .where(OutboxMessage.run_id.is_not(None))
                .group_by(OutboxMessage.status)
            )
            return {status: count for status, count in rows}

    async def statuses(self) -> dict[int, str]:
        """Each recipient's message status (chat id -> status)."""
        async with self.sessions() as session:
            rows = await session.execute(
                select(OutboxMessage.recipient, OutboxMessage.status).where(OutboxMessage.run_id.is_not(None))
            )
            return {int(recipient): status for recipient, status in rows}


async def residents_writing(
    rig: Rig, stop: asyncio.Event, replies: list[tuple[float, float | None]], text: str = "xin chào"
) -> None:
    """A new resident writes every half second; (when, ms until their first reply, or None if none came
    within 10 s) is recorded."""
    chat = WRITERS_CHAT
    while not stop.is_set():
        chat += 1
        posted = time.monotonic()
        await rig.post(rig.emulator.make_text_update(chat, text))
        answered = await rig.emulator.wait_for_texts(chat, 1, 10)
        replies.append((posted, (time.monotonic() - posted) * 1000 if answered else None))
        await asyncio.sleep(0.5)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=200.0, help="messages/s, for the emulator and the sender")
    parser.add_argument("--kill-at", type=float, default=0.5, help="share delivered when the bot is killed (0: never)")
    parser.add_argument("--database-url", default="", help="default: a fresh SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        settings = Settings(data_dir=Path(tmp), database_url=url, auto_upgrade=True, content_dir=CONTENT_DIR)
        prepared = time.perf_counter()
        await prepare(settings, args.recipients)
        print(f"{args.recipients} residents and a confirmed broadcast in {time.perf_counter() - prepared:.1f}s")
        emulator = TelegramEmulator(max_per_second=args.rate)
        replies: list[tuple[float, float | None]] = []
        stop = asyncio.Event()
        killed_at: tuple[float, float] | None = None
        outbox = Outbox(url)
        async with Rig(Path(tmp), url, emulator, RateLimits(per_second=args.rate)) as rig:
            writers = asyncio.create_task(residents_writing(rig, stop, replies))

            def bulk_delivered() -> int:
                return sum(1 for s in emulator.sent if s.chat_id < WRITERS_CHAT)

            if args.kill_at:
                while bulk_delivered() < args.kill_at * args.recipients:
                    await asyncio.sleep(0.05)
                down = time.monotonic()
                await rig.kill_bot()
                await rig.start_bot()
                killed_at = (down, time.monotonic())
                print(f"killed at {bulk_delivered()} delivered; back after {killed_at[1] - killed_at[0]:.1f}s")
            while True:
                counts = await outbox.counts()
                if counts and not any(counts.get(status) for status in ("pending", "claimed", "sending")):
                    break
                await asyncio.sleep(1)
            stop.set()
            await writers
        everything = list(emulator.sent)
        bulk = [s for s in everything if s.chat_id < WRITERS_CHAT]
        statuses = await outbox.statuses()
        await outbox.engine.dispose()
    per_chat = Counter(s.chat_id for s in bulk)
    achieved, (low, high), span = steady_rate([s.at for s in bulk], killed_at)
    channel = rate_within([sent.at for sent in everything], (low, high), span)
    unknown = counts.get("unknown", 0)
    received = set(per_chat)
    lost = sum(1 for chat, status in statuses.items() if chat not in received and status != "unknown")
    lost += args.recipients - len(statuses)  # never queued
    # Replies asked for while the bot was down wait for the restart: left out of the latency figures.
    kept = [ms for at, ms in replies if not killed_at or not killed_at[0] - 2 <= at <= killed_at[1]]
    latencies = [ms for ms in kept if ms is not None]
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "database": "postgresql" if url.startswith("postgresql") else "sqlite",
        "recipients": args.recipients,
        "limit_per_s": args.rate,
        "achieved_per_s": achieved,
        "of_limit_pct": 100 * achieved / args.rate,
        "channel_per_s": channel,  # the broadcast and the replies to residents writing meanwhile
        "channel_of_limit_pct": 100 * channel / args.rate,
        "429s": emulator.too_many_requests,
        "duplicated": sum(n - 1 for n in per_chat.values() if n > 1),
        "lost": lost,
        "unknown_after_kill": unknown,
        "unknown_that_arrived": sum(1 for chat, status in statuses.items() if status == "unknown" and chat in received),
        "killed": bool(killed_at),
        "replies": len(latencies),
        "unanswered": len(kept) - len(latencies),
        "reply_p50_ms": percentile(latencies, 50),
        "reply_p99_ms": percentile(latencies, 99),
    }
    print(f"\nBroadcast bench ({results['database']}, {results['machine']})")
    for key, value in results.items():
        print(f"  {key:<20} {value:.1f}" if isinstance(value, float) else f"  {key:<20} {value}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"broadcast_{results['database']}.json"
    out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"  written to {out}")


if __name__ == "__main__":
    asyncio.run(main())
