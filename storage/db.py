"""Database engine and sessions: SQLite file by default, PostgreSQL by URL."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_POOL_TIMEOUT_SECONDS = 60


def default_url(data_dir: Path) -> str:
    """The embedded default: one SQLite file in the data directory."""
    return f"sqlite+aiosqlite:///{data_dir.resolve() / 'hocvuso.db'}"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str) -> AsyncEngine:
    """Create an async engine; on SQLite, make writers queue instead of failing."""
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # One connection per process: transactions queue in asyncio (cheap) instead of spinning in
        # SQLite's busy handler (sleeps of up to 100 ms); another process's write lock is waited for in
        # asyncio too (InlineSQLite). Connected as SQLAlchemy's aiosqlite dialect does (check_same_thread
        # False); the timeout covers the PRAGMAs run on connecting, then busy_timeout is 0 (_on_connect).
        timeout = SQLITE_BUSY_TIMEOUT_MS / 1000
        connect = partial(sqlite3.connect, database or ":memory:", timeout=timeout, check_same_thread=False)
        engine = create_async_engine(
            url,
            async_creator=partial(_open_sqlite, connect),
            pool_size=1,
            max_overflow=0,
            pool_timeout=SQLITE_POOL_TIMEOUT_SECONDS,
        )
        _serialise_sqlite_writes(engine)
        return engine
    return create_async_engine(url, pool_pre_ping=True)


# What may wait stays on aiosqlite's thread: COMMIT (a checkpoint's fsync now and then), the PRAGMAs run
# when connecting, closing the connection. A ROLLBACK with no transaction open (the pool's reset) does
# nothing and runs inline.
_THREAD_CALLS = frozenset({"commit", "backup", "executescript", "iterdump"})
_THREAD_STATEMENTS = ("COMMIT", "END", "ROLLBACK", "PRAGMA", "VACUUM")
_LOCK_RETRY_SECONDS = (0.001, 0.05)  # first and longest pause while another process holds the write lock


class InlineSQLite(aiosqlite.Connection):
    """aiosqlite, but a transaction's statements run on the event loop's thread instead of aiosqlite's.

    aiosqlite hands each call to its thread and the result back, which costs the event loop's next turn:
    about a millisecond a statement once the bot is busy, while SQLite itself answers in microseconds
    (its pages are in memory, and a commit in WAL mode with synchronous=NORMAL does not wait for the
    disk). A turn's transaction of thirty statements held the process's one connection thirty
    milliseconds, and every other transaction waited for it.

    Between BEGIN IMMEDIATE and COMMIT this connection holds the write lock, so no statement there waits
    for anyone. BEGIN IMMEDIATE itself does not wait in SQLite's busy handler (busy_timeout is 0 once
    connected): while another process holds the lock it is tried again after a pause in asyncio, for up
    to ``lock_wait`` seconds, and then raises "database is locked" as SQLite would.
    """

    def __init__(self, connector: Callable[[], sqlite3.Connection], lock_wait: float) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._thread.daemon = True  # as SQLAlchemy makes aiosqlite's own: it never keeps the process alive
        self._lock_wait = lock_wait

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        connection, sql = self._connection, _statement(args)
        if not self._running or connection is None or _on_thread(fn, sql, connection):
            return await super()._execute(fn, *args, **kwargs)
        if sql.startswith("BEGIN"):
            return await self._begin(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    async def _begin(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + self._lock_wait
        pause, longest = _LOCK_RETRY_SECONDS
        while True:
            try:
                return fn(*args, **kwargs)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, longest)


def _statement(args: tuple[Any, ...]) -> str:
    return args[0].lstrip()[:8].upper() if args and isinstance(args[0], str) else ""


def _on_thread(fn: Callable[..., Any], sql: str, connection: sqlite3.Connection) -> bool:
    name = getattr(fn, "__name__", "")
    if name == "rollback":
        return connection.in_transaction
    if name == "close":  # the connection's, not a cursor's
        return getattr(fn, "__self__", None) is connection
    return name in _THREAD_CALLS or sql.startswith(_THREAD_STATEMENTS)


async def _open_sqlite(connector: Callable[[], sqlite3.Connection]) -> aiosqlite.Connection:
    return await InlineSQLite(connector, lock_wait=SQLITE_BUSY_TIMEOUT_MS / 1000)


def conflict_insert(session: AsyncSession, entity: Any) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into ``entity`` that can say what to do ON CONFLICT, in the session's database's dialect."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(entity)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def _serialise_sqlite_writes(engine: AsyncEngine) -> None:
    """Take SQLite's write lock at BEGIN (BEGIN IMMEDIATE) and wait for it.

    pysqlite's default deferred transactions fail with "database is locked"
    when two readers both try to upgrade to writers; starting every
    transaction as a writer makes them wait in line (InlineSQLite) instead.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=0")  # from now on InlineSQLite waits for the write lock, in asyncio
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
