"""Database engine and sessions: SQLite file by default, PostgreSQL by URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from storage import sqlite_inline

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_POOL_TIMEOUT_SECONDS = 60


def default_url(data_dir: Path) -> str:
    """The embedded default: one SQLite file in the data directory."""
    return f"sqlite+aiosqlite:///{data_dir.resolve() / 'hocvuso.db'}"


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str) -> AsyncEngine:
    """Create an async engine; on SQLite, make writers queue instead of failing.

    Any SQLite URL (``sqlite+aiosqlite://`` as configured, or ``sqlite://``) is served by
    storage.sqlite_inline, which runs a transaction's statements on the event loop's thread.
    """
    if is_sqlite(url):
        parsed = make_url(url)
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # One connection per process: transactions queue in asyncio (cheap) instead of spinning in
        # SQLite's busy handler (sleeps of up to 100 ms); another process's write lock is waited for in
        # asyncio too (storage.sqlite_inline). The timeout covers the PRAGMAs run on connecting, then
        # busy_timeout is 0 (_on_connect).
        wait = SQLITE_BUSY_TIMEOUT_MS / 1000
        engine = create_async_engine(
            parsed.set(drivername=f"sqlite+{sqlite_inline.DRIVER}"),
            connect_args={"timeout": wait, "lock_wait": wait},
            pool_size=1,
            max_overflow=0,
            pool_timeout=SQLITE_POOL_TIMEOUT_SECONDS,
        )
        _serialise_sqlite_writes(engine)
        return engine
    return create_async_engine(url, pool_pre_ping=True)


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
    transaction as a writer makes them wait in line (storage.sqlite_inline) instead.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=0")  # from now on BEGIN waits for the write lock in asyncio
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
