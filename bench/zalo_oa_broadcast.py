"""A bulk send on the Zalo OA channel against the OA emulator, at Zalo's 4,000 requests a minute.

    python bench/zalo_oa_broadcast.py [--recipients 3000] [--stale 300] [--database-url URL]

``--recipients`` residents wrote to the OA yesterday; ``--stale`` more last wrote eight days ago, so
Zalo would refuse them (-230). The emulator answers -32 above 4,000 calls in any 60 s. Printed: the
achieved rate (between 10% and 90% of the deliveries) against the limit, -32s provoked, API calls made
for out-of-window residents (should be 0), messages marked "out_window", duplicates and lost.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from sqlalchemy import func, insert, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rig import RESULTS

from bot.app import open_app
from bot.channels.zalo_oa import ZaloOATransport
from bot.channels.zalo_oauth import ZaloTokens
from bot.config import ZALO_OA_LIMITS, Settings
from flows.types import Reply
from storage.clock import utc_now
from storage.models import ChannelIdentity, OutboxMessage, OutboxStatus, Person, Priority
from storage.repo import Outgoing, enqueue
from tests.helpers import content_at_any_hour
from tests.zalo_emulator import APP_ID, APP_SECRET, ZaloOAEmulator

LIMIT_PER_MINUTE = 4000


async def prepare(app: Any, fresh: int, stale: int) -> list[str]:
    """Residents on the OA: ``fresh`` wrote yesterday, ``stale`` eight days ago; one bulk message each."""
    now = utc_now()
    users = [f"{9_000_000_000 + n}" for n in range(fresh + stale)]
    async with app.sessions.begin() as session:
        first = (await session.scalar(select(func.coalesce(func.max(Person.id), 0)))) + 1
        await session.execute(
            insert(Person),
            [{"id": first + n, "created_at": now, "consented_at": now, "subject": n} for n in range(len(users))],
        )
        await session.execute(
            insert(ChannelIdentity),
            [
                {
                    "person_id": first + n,
                    "channel": "zalo_oa",
                    "external_id": user,
                    "created_at": now,
                    "last_inbound_at": now - dt.timedelta(days=1 if n < fresh else 8),
                }
                for n, user in enumerate(users)
            ],
        )
        text = Reply(text="Tối thứ Bảy có lớp hướng dẫn VNeID tại nhà văn hóa thôn. Mời bà con đến dự.").to_dict()
        await enqueue(
            session, [Outgoing("zalo_oa", u, first + n, text, Priority.BULK) for n, u in enumerate(users)], now
        )
    return users


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or f"sqlite+aiosqlite:///{scratch}/bench.db"
        content = content_at_any_hour(Path(scratch))  # the bench must not wait for the end of quiet hours
        settings = Settings(data_dir=Path(scratch), database_url=url, auto_upgrade=True, content_dir=content)
        emulator = ZaloOAEmulator(per_minute=LIMIT_PER_MINUTE)
        api = TestServer(emulator.app())
        await api.start_server()
        base = f"http://127.0.0.1:{api.port}"
        async with open_app(settings) as app, aiohttp.ClientSession() as http:
            users = await prepare(app, args.recipients, args.stale)
            for user in users[args.recipients :]:
                emulator.last_interaction[user] = utc_now() - dt.timedelta(days=8)
            tokens = ZaloTokens(app.sessions, http, APP_ID, APP_SECRET, base)
            await tokens.adopt(emulator.issue_pair()[1])
            window = dt.timedelta(hours=settings.zalo_oa_window_hours)
            app.sender.add_transport(ZaloOATransport(http, tokens, app.catalog, base, ZALO_OA_LIMITS, window))
            started = time.monotonic()
            sender = asyncio.create_task(app.sender.run(poll_seconds=0.2))
            while len(emulator.sent) < args.recipients and time.monotonic() - started < args.recipients / 40 + 60:
                await asyncio.sleep(0.5)
            await asyncio.sleep(1.0)
            sender.cancel()
            async with app.sessions() as session:
                by_status = dict(
                    (
                        await session.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status))
                    ).all()
                )
        await api.close()
    times = sorted(s.at for s in emulator.sent)
    low, high = times[len(times) // 10], times[len(times) * 9 // 10]
    inside = sum(1 for t in times if low <= t <= high)
    rate = (inside - 1) / (high - low) * 60 if high > low else float("nan")
    counts = Counter(s.user_id for s in emulator.sent)
    delivered = set(counts)
    return {
        "recipients_in_window": args.recipients,
        "recipients_out_of_window": args.stale,
        "delivered": len(emulator.sent),
        "rate_per_minute": round(rate),
        "limit_per_minute": LIMIT_PER_MINUTE,
        "share_of_limit": round(rate / LIMIT_PER_MINUTE, 3),
        "errors_-32": emulator.rate_limited,
        "calls_out_of_window": emulator.out_of_window_calls,
        "marked_out_window": by_status.get(OutboxStatus.OUT_OF_WINDOW, 0),
        "duplicated": sum(1 for c in counts.values() if c > 1),
        "lost": sum(1 for u in users[: args.recipients] if u not in delivered),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=3000)
    parser.add_argument("--stale", type=int, default=300)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    result = asyncio.run(bench(args))
    print(f"Zalo OA bulk send ({platform.machine()}, {platform.python_version()})")
    for key, value in result.items():
        print(f"  {key:<26} {value}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "zalo_oa_broadcast.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
