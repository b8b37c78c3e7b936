"""`hocvuso run` as a real process, Telegram by webhook: SIGKILL mid-run, restart, nothing lost or duplicated."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer
from sqlalchemy import func, select

from bot.channels.telegram import SECRET_HEADER, message_text
from flows.catalog import Catalog
from flows.types import Inbound, InboundKind
from storage.db import create_engine, make_sessionmaker
from storage.models import OutboxMessage
from tests.chat import reference_replies
from tests.helpers import T0
from tests.telegram_emulator import TOKEN, TelegramEmulator

HOCVUSO = str(Path(sys.executable).parent / "hocvuso")
SECRET = "crash-test-secret"
RESIDENTS = 40
# Typed, as on a text-only channel: agree ("1"), the first village ("1"), then a module.
TURNS = ["/start", "1", "1", "cai vneid ntn", "1", "2", "menu"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data: Path, port: int, api_url: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "HOCVUSO_DATA_DIR": str(data),
        "HOCVUSO_DATABASE_URL": "",
        "HOCVUSO_PORT": str(port),
        "HOCVUSO_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_URL": api_url,
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
        "TELEGRAM_RATE_PER_SECOND": "0",
        "TELEGRAM_RATE_PER_CHAT": "0",
    }
    with (data.parent / "server.log").open("ab") as log:
        return subprocess.Popen([HOCVUSO, "run"], env=env, stdout=log, stderr=log)


async def wait_healthy(http: aiohttp.ClientSession, port: int, process: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        assert process.poll() is None, "server exited; see server.log in the test's tmp_path"
        try:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("server did not become healthy")


async def expected_for(catalog: Catalog, scratch: Path) -> list[str]:
    inbounds = [Inbound(InboundKind.START if t == "/start" else InboundKind.TEXT, T0, text=t) for t in TURNS]
    return [message_text(r) for r in await reference_replies(catalog, inbounds, scratch / "expected.db")]


def without_repeats(texts: list[str]) -> tuple[list[str], int]:
    """Drop runs that repeat the run just before them: replies in flight at the kill, sent again in order
    after the restart (a recipient's replies claimed together go out one after the other, so two or more
    may be in flight at once). Return the rest and how many were dropped."""
    kept: list[str] = []
    at = 0
    while at < len(texts):
        run = next((n for n in range(min(len(kept), len(texts) - at), 0, -1) if texts[at : at + n] == kept[-n:]), 0)
        if run:
            at += run
        else:
            kept.append(texts[at])
            at += 1
    return kept, len(texts) - len(kept)


def test_a_resent_run_of_replies_is_dropped_once_and_counted() -> None:
    assert without_repeats(["a", "b", "c", "b", "c", "d"]) == (["a", "b", "c", "d"], 2)
    assert without_repeats(["a", "a", "b"]) == (["a", "b"], 1)
    assert without_repeats(["a", "b", "a", "c"]) == (["a", "b", "a", "c"], 0)  # not a repeat of the run before


async def test_sigkill_mid_run_then_restart_loses_and_duplicates_nothing(shipped: Catalog, tmp_path: Path) -> None:
    emulator = TelegramEmulator()
    api = TestServer(emulator.app())
    await api.start_server()
    api_url = f"http://127.0.0.1:{api.port}/bot"
    port = free_port()
    data = tmp_path / "data"
    server = start_server(data, port, api_url)
    updates = {chat: [] for chat in range(500, 500 + RESIDENTS)}
    for chat in updates:
        for turn in TURNS:
            updates[chat].append(emulator.make_text_update(chat, turn))
    posted = 0
    killed = asyncio.Event()
    restarted = asyncio.Event()
    try:
        async with aiohttp.ClientSession() as http:
            await wait_healthy(http, port, server)

            async def deliver(update: dict) -> None:
                """Like Telegram: the same update again and again until it is acknowledged with 200."""
                nonlocal posted
                while True:
                    try:
                        async with http.post(
                            f"http://127.0.0.1:{port}/telegram/webhook", json=update, headers={SECRET_HEADER: SECRET}
                        ) as response:
                            if response.status == 200:
                                posted += 1
                                return
                    except aiohttp.ClientError:
                        pass
                    await (restarted.wait() if killed.is_set() else asyncio.sleep(0.05))

            async def resident(chat: int) -> None:
                for update in updates[chat]:
                    await deliver(update)

            async def killer() -> None:
                while posted < RESIDENTS * len(TURNS) // 2:
                    await asyncio.sleep(0.01)
                server.send_signal(signal.SIGKILL)
                server.wait(timeout=30)
                killed.set()

            async def restarter() -> subprocess.Popen[bytes]:
                await killed.wait()
                again = start_server(data, port, api_url)
                await wait_healthy(http, port, again)
                restarted.set()
                return again

            _, server_after, *_ = await asyncio.gather(killer(), restarter(), *(resident(chat) for chat in updates))
            server = server_after
            expected = await expected_for(shipped, tmp_path)
            deadline = asyncio.get_running_loop().time() + 60
            while len(emulator.sent) < RESIDENTS * len(expected):
                assert asyncio.get_running_loop().time() < deadline, "replies were lost"
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        await api.close()

    engine = create_engine(f"sqlite+aiosqlite:///{data / 'hocvuso.db'}")
    async with make_sessionmaker(engine)() as session:
        in_flight_at_kill = await session.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.last_error.like("interrupted%"))
        )
    await engine.dispose()
    repeated = 0
    for chat, texts in emulator.by_chat().items():
        kept, dropped = without_repeats(texts)
        assert kept == expected, chat
        repeated += dropped
    assert repeated <= in_flight_at_kill  # only replies that were in flight at the kill may arrive twice
