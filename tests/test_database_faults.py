"""The database failing under the bot: SQLite locked by other writers, PostgreSQL connections cut mid-run.

Whatever fails, a webhook is answered 503 with Retry-After (never 500), the platform delivers it again,
and every resident ends up with exactly the replies they would have had without the fault.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

import storage.db
from bot.app import open_app
from bot.channels.telegram import SECRET_HEADER
from bot.config import Settings
from bot.dispatcher import Envelope
from bot.server import WEBHOOK_PATH
from content import CONTENT_DIR
from flows.types import Inbound, InboundKind
from storage.models import Person, ProcessedInbound
from tests.helpers import T0
from tests.telegram_emulator import TelegramEmulator
from tests.test_telegram import SECRET, emulator, expected_texts, harness, wait_until, webhook_client  # noqa: F401

TURNS = ["/start", "1", "1", "cai vneid ntn", "1", "2", "menu"]
INBOUNDS = [Inbound(InboundKind.START if t == "/start" else InboundKind.TEXT, T0, text=t) for t in TURNS]


def settings_for(url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, database_url=url, auto_upgrade=True, content_dir=CONTENT_DIR)


async def deliver(client: TestClient, update: dict, statuses: list[int]) -> None:
    """Like Telegram: again, a moment later, until acknowledged with 200."""
    while True:
        response = await client.post(WEBHOOK_PATH, json=update, headers={SECRET_HEADER: SECRET})
        statuses.append(response.status)
        if response.status == 200:
            return
        assert response.status == 503, await response.text()
        assert response.headers["Retry-After"] == "1"
        await asyncio.sleep(0.05)


async def residents_chat(
    emu: TelegramEmulator, client: TestClient, chats: range, expected: list[str], statuses: list[int]
) -> None:
    """Each chat walks through TURNS (one reply each), waiting for its reply; at the end every chat has
    exactly the replies a resident has without any fault."""
    assert len(expected) == len(TURNS)

    async def resident(chat: int) -> None:
        for index, turn in enumerate(TURNS):
            await deliver(client, emu.make_text_update(chat, turn), statuses)
            await wait_until(lambda chat=chat, n=index + 1: len(emu.texts_to(chat)) >= n, 60)

    await asyncio.gather(*(resident(chat) for chat in chats))
    await asyncio.sleep(0.5)
    assert {chat: emu.texts_to(chat) for chat in chats} == {chat: expected for chat in chats}


# --- SQLite -------------------------------------------------------------------------------------

HOLDER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO app_secrets (name, value) VALUES ('holder', 'x') ON CONFLICT (name) DO NOTHING")
    time.sleep(0.05)
    db.execute("COMMIT")
    time.sleep(0.01)
"""


async def test_several_engines_and_a_process_writing_one_sqlite_file_lose_nothing(tmp_path: Path) -> None:
    """Two apps (two engines, as two workers would have) take the same events, some twice, while another
    process keeps taking SQLite's write lock: each event is processed once, each account is one person."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    async with open_app(settings_for(url, tmp_path)) as first, open_app(settings_for(url, tmp_path)) as second:
        holder = await asyncio.create_subprocess_exec(sys.executable, "-c", HOLDER, str(tmp_path / "shared.db"), "4")
        try:
            envelopes = [
                Envelope("bench", f"e{chat}-{turn}", str(chat), Inbound(InboundKind.TEXT, T0, text=text))
                for chat in range(30)
                for turn, text in enumerate(["xin chào", "xin chào"])
            ]
            results = await asyncio.gather(
                *(first.dispatcher.handle(e) for e in envelopes),
                *(second.dispatcher.handle(e) for e in envelopes),  # every event delivered to both workers
            )
        finally:
            await asyncio.wait_for(holder.wait(), 30)
        assert holder.returncode == 0
        assert sum(results) == len(envelopes)  # exactly one of the two copies was processed
        async with first.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(ProcessedInbound)) == len(envelopes)


async def test_a_sqlite_transaction_hands_only_its_commit_to_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = storage.db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'inline.db'}")
    try:
        async with engine.connect() as connection:
            await connection.get_raw_connection()  # connected: opening and the PRAGMAs went to a thread
            loop = asyncio.get_running_loop()
            handed: list[str] = []
            hand_over = loop.run_in_executor

            def counting(executor: Any, call: Any, *args: Any) -> Any:
                handed.append(getattr(call, "__name__", repr(call)))
                return hand_over(executor, call, *args)

            monkeypatch.setattr(loop, "run_in_executor", counting)
            async with connection.begin():
                await connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
                for x in range(20):
                    await connection.exec_driver_sql(f"INSERT INTO t VALUES ({x})")
                assert (await connection.exec_driver_sql("SELECT count(*) FROM t")).scalar() == 20
            assert handed == ["commit"]  # BEGIN IMMEDIATE and the 22 statements ran on the loop's thread
        async with engine.connect() as connection:
            assert (await connection.exec_driver_sql("SELECT count(*) FROM t")).scalar() == 20
    finally:
        await engine.dispose()


async def test_waiting_for_another_process_s_sqlite_lock_does_not_stop_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "waiting.db"
    engine = storage.db.create_engine(f"sqlite+aiosqlite:///{path}")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        other.execute("BEGIN IMMEDIATE")
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())

        async def write() -> None:
            async with engine.begin() as connection:
                await connection.exec_driver_sql("INSERT INTO t VALUES (1)")

        writing = asyncio.create_task(write())
        await asyncio.sleep(0.3)
        assert not writing.done()  # waiting for the lock...
        assert ticks >= 10  # ...while the loop goes on
        other.execute("COMMIT")
        await asyncio.wait_for(writing, 5)
        ticker.cancel()
        assert other.execute("SELECT count(*) FROM t").fetchone() == (1,)
    finally:
        other.close()
        await engine.dispose()


async def test_a_sqlite_lock_held_too_long_answers_503_and_the_redelivery_is_processed_once(
    emulator,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(storage.db, "SQLITE_BUSY_TIMEOUT_MS", 200)
    emu, base_url = emulator
    path = tmp_path / "locked.db"
    async with (
        open_app(settings_for(f"sqlite+aiosqlite:///{path}", tmp_path)) as app,
        harness(app, base_url) as h,
        webhook_client(h) as client,
    ):
        h.start_sender()
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's long write (a migration, a backup, an import)
        update = emu.make_text_update(77, "/start")
        response = await client.post(WEBHOOK_PATH, json=update, headers={SECRET_HEADER: SECRET})
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        other.execute("COMMIT")
        other.close()
        statuses: list[int] = []
        await deliver(client, update, statuses)
        await deliver(client, update, statuses)  # and once more: a redelivery changes nothing
        await wait_until(lambda: len(emu.texts_to(77)) == 1)
        await asyncio.sleep(0.3)
        assert len(emu.texts_to(77)) == 1
        async with app.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(ProcessedInbound)) == 1


# --- PostgreSQL ---------------------------------------------------------------------------------


async def cut_connections(db_url: str, times: int, every: float) -> int:
    """pg_terminate_backend on every connection to the test database, ``times`` times: what a
    server restart (or a failover) does to the bot's pool. Returns how many connections were cut."""
    url = make_url(db_url)
    admin = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, database="postgres"
    )
    cut = 0
    try:
        for _ in range(times):
            await asyncio.sleep(every)
            rows = await admin.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                url.database,
            )
            cut += sum(1 for row in rows if row[0])
    finally:
        await admin.close()
    return cut


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_postgresql_connections_cut_mid_run_lose_and_duplicate_nothing(
    db_url: str,
    emulator,  # noqa: F811
    tmp_path: Path,
) -> None:
    emu, base_url = emulator
    async with (
        open_app(settings_for(db_url, tmp_path)) as app,
        harness(app, base_url) as h,
        webhook_client(h) as client,
    ):
        h.start_sender()
        expected = await expected_texts(app, INBOUNDS, tmp_path)
        statuses: list[int] = []
        chatting = asyncio.create_task(residents_chat(emu, client, range(900, 930), expected, statuses))
        cut = await cut_connections(db_url, times=40, every=0.05)  # dense: commits are short
        await chatting
        async with app.sessions() as session:
            people = await session.scalar(select(func.count()).select_from(Person))
    assert cut > 0
    assert 503 in statuses  # the cuts hit requests in progress, which were delivered again
    assert people == 30
