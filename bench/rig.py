"""What the benches share: the bot as its own process (`hocvuso run`) in front of the Bot API emulator."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import itertools
import os
import random
import signal
import socket
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from sqlalchemy import insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.channels.telegram import SECRET_HEADER
from bot.ratelimit import RateLimits
from bot.server import WEBHOOK_PATH
from flows.types import ConversationState
from storage.models import ChannelIdentity, Conversation, Person
from tests.helpers import content_at_any_hour
from tests.telegram_emulator import TOKEN, TelegramEmulator

SECRET = "bench-secret"
RESULTS = Path(__file__).resolve().parent / "results"
WEBHOOK_TIMEOUT = aiohttp.ClientTimeout(total=60)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def cell(value: Any) -> str:
    """A figure for a printed table."""
    return f"{value:,.1f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)


def steady_rate(
    times: list[float], pause: tuple[float, float] | None = None
) -> tuple[float, tuple[float, float], float]:
    """Deliveries per second between the 10th and the 90th percentile of their times (start and tail left
    out), less ``pause`` (the bot down) if it falls inside; also that window and its length."""
    times = sorted(times)
    if len(times) < 10:
        return float("nan"), (0.0, 0.0), 0.0
    low, high = times[len(times) // 10], times[len(times) * 9 // 10]
    span = high - low - (pause[1] - pause[0] if pause and low < pause[0] < high else 0)
    return ((len(times) * 8 // 10) / span if span > 0 else float("nan")), (low, high), span


def rate_within(times: list[float], window: tuple[float, float], span: float) -> float:
    """Deliveries per second within ``window`` (of ``span`` seconds, see steady_rate): e.g. the whole
    channel's, the broadcast's and the replies to residents writing meanwhile, when it ran steadily."""
    low, high = window
    return sum(1 for at in times if low <= at <= high) / span if span > 0 else float("nan")


class Rig:
    """The emulator and the load driver here; the bot as its own process, as in production.

    ``start_bot`` / ``kill_bot`` restart the bot on the same database and emulator (crash scenarios).
    ``command`` runs another bot instead (the peer, bench/peer_ptb.py), configured by the same variables.
    """

    def __init__(
        self,
        data_dir: Path,
        database_url: str,
        emulator: TelegramEmulator,
        limits: RateLimits,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir, self.database_url, self.emulator, self.limits = data_dir, database_url, emulator, limits
        self.extra_env = env or {}  # more settings for the bot (e.g. the Zalo channels)
        self.command = command or [str(Path(sys.executable).parent / "hocvuso"), "run"]
        self.server: asyncio.subprocess.Process | None = None
        self.content = content_at_any_hour(data_dir)

    async def __aenter__(self) -> Rig:
        self.api = TestServer(self.emulator.app())
        await self.api.start_server()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}"
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
        await self.start_bot()
        return self

    async def start_bot(self) -> None:
        per_chat = f"{self.limits.per_chat[0]}/{self.limits.per_chat[1]}" if self.limits.per_chat else "0"
        env = {
            **os.environ,
            "HOCVUSO_DATA_DIR": str(self.data_dir),
            "HOCVUSO_DATABASE_URL": self.database_url,
            "HOCVUSO_PORT": str(self.port),
            "HOCVUSO_PUBLIC_URL": f"http://127.0.0.1:{self.port}",
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_URL": f"http://127.0.0.1:{self.api.port}/bot",
            "TELEGRAM_WEBHOOK_SECRET": SECRET,
            "TELEGRAM_RATE_PER_SECOND": str(self.limits.per_second or 0),
            "TELEGRAM_RATE_PER_CHAT": per_chat,
            "HOCVUSO_CONTENT_DIR": str(self.content),  # no quiet hours: broadcasts go at any hour
            **self.extra_env,
        }
        self.server = await asyncio.create_subprocess_exec(*self.command, env=env, stdout=asyncio.subprocess.DEVNULL)
        for _ in range(600):
            assert self.server.returncode is None, f"{' '.join(self.command)} exited"
            try:
                async with self.http.get(f"http://127.0.0.1:{self.port}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError("hocvuso run did not start")

    async def kill_bot(self) -> None:
        """SIGKILL: no chance to finish anything."""
        assert self.server is not None
        self.server.send_signal(signal.SIGKILL)
        await self.server.wait()

    async def __aexit__(self, *exc: object) -> None:
        if self.server is not None and self.server.returncode is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.server.wait(), 30)
            except TimeoutError:  # the peer's last PicklePersistence flush can take longer: not measured
                self.server.send_signal(signal.SIGKILL)
                await self.server.wait()
        await self.http.close()
        await self.api.close()

    async def post(self, update: dict[str, Any]) -> None:
        """Deliver like Telegram: again until acknowledged with 200 (a request unanswered for a minute
        counts as failed, and is sent again)."""
        while True:
            try:
                async with self.http.post(
                    self.url, json=update, headers={SECRET_HEADER: SECRET}, timeout=WEBHOOK_TIMEOUT
                ) as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)


async def reference(rig: Rig, turns: list[str], chat: int, quiet: float = 0.4) -> list[list[str]]:
    """What each turn gets from this bot, one resident alone and nothing redelivered (before the timed run)."""
    replies: list[list[str]] = []
    for turn in turns:
        seen = len(rig.emulator.texts_to(chat))
        await rig.post(rig.emulator.make_text_update(chat, turn))
        assert await rig.emulator.wait_for_texts(chat, seen + 1, 30), f"no reply to {turn!r}"
        while await rig.emulator.wait_for_texts(chat, len(rig.emulator.texts_to(chat)) + 1, quiet):
            pass  # more replies to the same turn (a check answered: "right!", then the next step)
        replies.append(rig.emulator.texts_to(chat)[seen:])
    return replies


@dataclass(frozen=True)
class Load:
    """Residents walking through ``turns``, each waiting for its replies before the next turn.

    ``concurrency`` residents at a time; when one finishes, a new one starts, until ``seconds`` have
    passed (then each finishes its current turn) or ``residents`` have started. ``rate`` paces the
    updates offered (None: as fast as the replies come). A share ``redeliver`` of updates is posted
    twice, as Telegram does when it did not see the first answer.
    """

    turns: list[str]
    replies: list[list[str]]  # per turn, from reference()
    concurrency: int
    seconds: float | None = None
    residents: int | None = None
    rate: float | None = None
    redeliver: float = 0.1
    first_chat: int = 1
    turn_timeout: float = 120.0


@contextlib.contextmanager
def frozen_heap() -> Iterator[None]:
    """The driver's own objects (earlier scenarios' emulators and figures) out of its garbage collector's way:
    a full collection of them stopped this process, driver and emulator, for 150-300 ms, which counted as
    the bot's latency."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


async def drive(rig: Rig, load: Load) -> dict[str, Any]:
    """Run the load; latency is from posting an update to the arrival of its last reply at the emulator.

    lost: expected replies that never came; duplicated: replies that came but were not expected (a
    redelivery answered twice, or a conversation pushed a step too far by it); both per resident, for
    the turns they did. gave_up: turns whose replies did not come within ``turn_timeout``.
    """
    emulator, rng = rig.emulator, random.Random(1)
    counts = [len(replies) for replies in load.replies]
    chats = itertools.count(load.first_chat)
    posted_at: dict[tuple[int, int], float] = {}
    turns_done: dict[int, int] = {}
    totals = Counter[str]()
    next_slot = 0.0
    started = time.monotonic()
    deadline = started + load.seconds if load.seconds else float("inf")

    async def pace() -> None:
        nonlocal next_slot
        if load.rate:
            now = time.monotonic()
            slot, next_slot = max(now, next_slot), max(now, next_slot) + 1 / load.rate
            await asyncio.sleep(slot - now)

    async def resident(chat: int) -> None:
        expected = 0
        for index, turn in enumerate(load.turns):
            if time.monotonic() >= deadline:
                return
            await pace()
            update = emulator.make_text_update(chat, turn)
            posted_at[(chat, index)] = time.monotonic()
            await rig.post(update)
            totals["posted"] += 1
            if rng.random() < load.redeliver:
                await rig.post(update)
                totals["posted"] += 1
                totals["redelivered"] += 1
            expected += counts[index]
            turns_done[chat] = index + 1
            if not await emulator.wait_for_texts(chat, expected, load.turn_timeout):
                totals["gave_up"] += 1
                return

    async def worker() -> None:
        while time.monotonic() < deadline and (load.residents is None or totals["residents"] < load.residents):
            totals["residents"] += 1
            await resident(next(chats))

    with frozen_heap():
        await asyncio.gather(*(worker() for _ in range(load.concurrency)))
    elapsed = time.monotonic() - started

    def received() -> int:  # by this load's residents only (others may be writing meanwhile)
        return sum(len(emulator.texts_to(chat)) for chat in turns_done)

    quiet_since, count = time.monotonic(), received()
    while time.monotonic() - quiet_since < 2 and time.monotonic() - started < elapsed + 120:  # late replies
        await asyncio.sleep(0.2)
        if received() != count:
            quiet_since, count = time.monotonic(), received()
    arrivals: dict[int, list[float]] = {}
    for sent in emulator.sent:
        arrivals.setdefault(sent.chat_id, []).append(sent.at)
    latencies: list[float] = []
    lost = duplicated = 0
    for chat, done in turns_done.items():
        expected_texts = Counter(text for replies in load.replies[:done] for text in replies)
        got = Counter(emulator.texts_to(chat))
        lost += sum((expected_texts - got).values())
        duplicated += sum((got - expected_texts).values())
        seen = 0
        for index in range(done):
            seen += counts[index]
            if seen <= len(arrivals.get(chat, [])):
                latencies.append((arrivals[chat][seen - 1] - posted_at[(chat, index)]) * 1000)
    during = sorted(s.at for s in emulator.sent if started <= s.at <= started + elapsed)
    return {
        "residents": totals["residents"],
        "updates": totals["posted"],
        "redelivered": totals["redelivered"],
        "seconds": elapsed,
        "updates_per_s": totals["posted"] / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "lost": lost,
        "duplicated": duplicated,
        "gave_up": totals["gave_up"],
        "longest_silence_s": max((b - a for a, b in itertools.pairwise(during)), default=float("nan")),
    }


async def add_residents(
    session: AsyncSession,
    count: int,
    first_chat: int,
    now: dt.datetime,
    area: str = "demo-thon-1",
    conversations: bool = False,
) -> list[int]:
    """``count`` consented residents with a Telegram account each (chat ids from ``first_chat``), in bulk;
    with ``conversations``, each also has a conversation (at the menu). Returns their person ids."""
    state = ConversationState().to_dict()
    people: list[int] = []
    for start in range(0, count, 5000):
        size = min(count, start + 5000) - start
        ids = list(
            await session.scalars(
                insert(Person).returning(Person.id, sort_by_parameter_order=True),
                [
                    {"created_at": now, "consented_at": now, "subject": start + i + 1, "area_code": area}
                    for i in range(size)
                ],
            )
        )
        chats = range(first_chat + start, first_chat + start + size)
        await session.execute(
            insert(ChannelIdentity),
            [
                {"person_id": i, "channel": "telegram", "external_id": str(chat), "created_at": now}
                for i, chat in zip(ids, chats, strict=True)
            ],
        )
        if conversations:
            await session.execute(
                insert(Conversation), [{"person_id": i, "state": state, "updated_at": now} for i in ids]
            )
        people += ids
    return people


@contextlib.asynccontextmanager
async def fresh_postgres(server_url: str) -> AsyncIterator[str]:
    """A throwaway database on the server at ``server_url``: its URL, dropped afterwards."""
    import asyncpg

    url = make_url(server_url)
    name = f"hocvuso_bench_{uuid.uuid4().hex[:10]}"
    login = {"host": url.host, "port": url.port or 5432, "user": url.username, "password": url.password}

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(**login, database=url.database)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    await admin(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def postgres_answers(server_url: str) -> bool:
    import asyncpg

    url = make_url(server_url)
    try:
        connection = await asyncpg.connect(
            host=url.host, port=url.port or 5432, user=url.username, password=url.password, database=url.database
        )
    except (OSError, asyncpg.PostgresError):
        return False
    await connection.close()
    return True
