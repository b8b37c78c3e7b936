"""A broadcast at Telegram's real limit: hocvuso's outbox against the peer's loop, one run.

    python bench/broadcast_vs_ptb.py [--recipients 900] [--channel telegram]

Three contenders send the same message to ``--recipients`` residents through the Bot API emulator,
which answers 429 (retry_after 1 s) whenever more than the channel's limit go out in a second:
  hocvuso        a broadcast confirmed in hocvuso (``hocvuso run``, its outbox sender at 30 msg/s)
  ptb_loop       bench/peer_ptb.py: /phattin starts a loop over the subscribers that waits
                 ``retry_after`` on a 429 and tries again (no limiter)
  ptb_limiter    the same loop with python-telegram-bot's AIORateLimiter (its defaults: 30 msg/s)
While it drains, a new resident writes /start every half second: the latency of their first reply
shows whether replies wait behind the broadcast; "unanswered" counts those with no reply within 10 s.

Printed: achieved rate between 10% and 90% of the deliveries against the limit, the channel's rate in
that time (the broadcast and the replies to the residents writing: both count toward the limit), time
to deliver all, 429s provoked, lost and duplicated, residents' reply p50/p99. The emulator, the driver and the bot share
this machine's cores: compare figures of one run.

Other channels: CHANNELS maps a channel to its limit and emulator. Zalo OA has a bench of its own
(bench/zalo_oa_broadcast.py): the peer has no Zalo channel.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from broadcast import FIRST_CHAT, TEXT, prepare, residents_writing
from peer_ptb import PICKLE, VOLUNTEER_CHAT, seed
from rig import RESULTS, Rig, cell, percentile, rate_within, steady_rate

from bot.config import TELEGRAM_LIMITS, Settings
from bot.ratelimit import RateLimits
from content import CONTENT_DIR
from tests.telegram_emulator import TelegramEmulator


@dataclass(frozen=True)
class Channel:
    limits: RateLimits
    emulator: Callable[[float], TelegramEmulator]


CHANNELS = {
    "telegram": Channel(TELEGRAM_LIMITS, lambda rate: TelegramEmulator(max_per_second=rate)),
}
PEER_TEXT = "Tối thứ Bảy có lớp hướng dẫn VNeID tại nhà văn hóa thôn. Mời bạn đến dự."


async def contender(name: str, channel: Channel, recipients: int, tmp: Path) -> dict[str, Any]:
    rate = channel.limits.per_second or 30.0
    emulator = channel.emulator(rate)
    if name == "hocvuso":
        url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
        await prepare(Settings(data_dir=tmp, database_url=url, auto_upgrade=True, content_dir=CONTENT_DIR), recipients)
        rig = Rig(tmp, url, emulator, channel.limits)
    else:
        await seed(tmp / PICKLE, range(FIRST_CHAT, FIRST_CHAT + recipients))
        command = [sys.executable, str(Path(__file__).parent / "peer_ptb.py")]
        rig = Rig(tmp, "", emulator, RateLimits(), command=command + (["--rate-limiter"] if "limiter" in name else []))
    replies: list[tuple[float, float | None]] = []
    stop = asyncio.Event()

    def bulk() -> list[float]:
        return [s.at for s in emulator.sent if FIRST_CHAT <= s.chat_id < FIRST_CHAT + recipients]

    async with rig:
        started = time.monotonic()
        if name != "hocvuso":
            await rig.post(emulator.make_text_update(VOLUNTEER_CHAT, f"/phattin {PEER_TEXT}"))
        writers = asyncio.create_task(residents_writing(rig, stop, replies, text="/start"))
        deadline = started + 3 * recipients / rate + 60
        while len(bulk()) < recipients and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        finished = time.monotonic()
        await asyncio.sleep(2)  # anything sent twice late
        stop.set()
        await writers
    times = bulk()
    per_chat = Counter(s.chat_id for s in emulator.sent if FIRST_CHAT <= s.chat_id < FIRST_CHAT + recipients)
    achieved, window, span = steady_rate(times)
    channel = rate_within([s.at for s in emulator.sent], window, span)  # with the replies to residents
    latencies = [ms for _, ms in replies if ms is not None]
    return {
        "limit_per_s": rate,
        "achieved_per_s": achieved,
        "of_limit_pct": 100 * achieved / rate,
        "channel_per_s": channel,
        "channel_of_limit_pct": 100 * channel / rate,
        "all_delivered_s": (max(times) if times else finished) - started,
        "429s": emulator.too_many_requests,
        "lost": recipients - len(per_chat),
        "duplicated": sum(n - 1 for n in per_chat.values()),
        "replies": len(latencies),
        "unanswered": len(replies) - len(latencies),  # no reply within 10 s (a 429 the bot did not retry)
        "reply_p50_ms": percentile(latencies, 50),
        "reply_p99_ms": percentile(latencies, 99),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=900, help="900 take 30 s at 30 msg/s")
    parser.add_argument("--channel", choices=sorted(CHANNELS), default="telegram")
    parser.add_argument("--only", nargs="*", choices=["hocvuso", "ptb_loop", "ptb_limiter"])
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "channel": args.channel,
        "recipients": args.recipients,
        "text": TEXT,
    }
    for name in args.only or ["hocvuso", "ptb_loop", "ptb_limiter"]:
        with tempfile.TemporaryDirectory() as tmp:
            results[name] = await contender(name, CHANNELS[args.channel], args.recipients, Path(tmp))
        print(name, results[name], flush=True)
    columns = ["achieved_per_s", "of_limit_pct", "channel_per_s", "channel_of_limit_pct", "all_delivered_s", "429s"]
    columns += ["lost", "duplicated"]
    columns += ["reply_p50_ms", "reply_p99_ms", "replies", "unanswered"]
    print(f"\nBroadcast at {args.channel}'s limit, {args.recipients} recipients ({results['machine']})")
    print("  " + " | ".join(["contender", *columns]))
    for name in ("hocvuso", "ptb_loop", "ptb_limiter"):
        if name in results:
            row = results[name]
            print("  " + " | ".join([name, *(cell(row[c]) for c in columns)]))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"broadcast_vs_ptb_{args.channel}.json"
    out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"  written to {out}")


if __name__ == "__main__":
    asyncio.run(main())
