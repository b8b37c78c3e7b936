"""SQLite for SQLAlchemy's asyncio engine, with a transaction's statements run on the event loop's thread.

SQLAlchemy's aiosqlite dialect hands every call to aiosqlite's thread and awaits it: a statement costs
three hand-overs between greenlets and four coroutines, about a hundred microseconds of Python on the
loop's thread, while SQLite itself answers in a few (its pages are in memory, and a commit in WAL mode
with synchronous=NORMAL does not wait for the disk). This dialect calls :mod:`sqlite3` directly instead.

What may wait goes to a thread, as before: COMMIT (a checkpoint's fsync now and then), the PRAGMAs run on
connecting, opening and closing the connection. Between BEGIN IMMEDIATE and COMMIT the connection holds
SQLite's write lock, so no statement there waits for anyone. BEGIN IMMEDIATE itself does not wait in
SQLite's busy handler (storage.db sets busy_timeout to 0 once connected): while another process holds the
lock it is tried again after a pause in asyncio, for up to ``lock_wait`` seconds, and then raises
"database is locked" as SQLite would.

Built on SQLAlchemy 2.1's adapter classes for asyncio drivers (sqlalchemy.connectors.asyncio), as its own
aiosqlite dialect is; pyproject.toml pins that minor version.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from sqlalchemy import util
from sqlalchemy.connectors.asyncio import (
    AsyncAdapt_dbapi_connection,
    AsyncAdapt_dbapi_cursor,
    AsyncAdapt_dbapi_module,
    AsyncAdapt_dbapi_ss_cursor,
)
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.util.concurrency import await_, in_greenlet

DRIVER = "hocvuso"  # sqlite+hocvuso:// (storage.db.create_engine turns sqlite+aiosqlite:// into it)
LOCK_WAIT_SECONDS = 30.0
_LOCK_RETRY_SECONDS = (0.001, 0.05)  # first and longest pause while another process holds the write lock
_THREAD_STATEMENTS = ("COMMIT", "END", "PRAGMA", "VACUUM")


def _on_thread(call: Callable[[], Any]) -> Any:
    """Run ``call`` on a worker thread and wait for it in asyncio (from inside SQLAlchemy's greenlet)."""
    if not in_greenlet():  # e.g. a connection closed by the garbage collector
        return call()
    return await_(asyncio.get_running_loop().run_in_executor(None, call))


async def _ready() -> None:
    """An awaitable that completes at once, without a turn of the event loop."""


def _handed_over() -> None:
    """Pass through asyncio once, at no cost: SQLAlchemy's AsyncConnection.execute raises unless the driver
    awaited something (to catch a synchronous driver used by mistake), and this one has nothing to await."""
    if in_greenlet():
        await_(_ready())


def _begin(cursor: sqlite3.Cursor, operation: str, lock_wait: float) -> None:
    """BEGIN, tried again in asyncio while another process holds the write lock."""
    deadline = time.monotonic() + lock_wait
    pause, longest = _LOCK_RETRY_SECONDS
    while True:
        try:
            cursor.execute(operation)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline or not in_greenlet():
                raise
        await_(asyncio.sleep(pause))
        pause = min(pause * 2, longest)


class InlineCursor(AsyncAdapt_dbapi_cursor):
    """A sqlite3 cursor whose rows are read at once, as SQLAlchemy's adapter for aiosqlite reads them."""

    __slots__ = ()
    _awaitable_cursor_close = False

    def _aenter_cursor(self, cursor: Any) -> Any:
        return cursor

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        cursor: sqlite3.Cursor = self._cursor
        head = operation.lstrip()[:8].upper()
        given = () if parameters is None else parameters
        if head.startswith("BEGIN"):
            _begin(cursor, operation, self._adapt_connection.lock_wait)
        elif head.startswith(_THREAD_STATEMENTS):
            _on_thread(partial(cursor.execute, operation, given))
        else:
            _handed_over()
            cursor.execute(operation, given)
        if cursor.description and not self.server_side:
            self._rows = collections.deque(cursor.fetchall())

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        _handed_over()
        self._cursor.executemany(operation, seq_of_parameters)

    def setinputsizes(self, *inputsizes: Any) -> None:
        pass


class InlineServerSideCursor(InlineCursor, AsyncAdapt_dbapi_ss_cursor):
    """Rows read as they are fetched (SQLAlchemy's ``stream``): each page on the loop's thread."""

    __slots__ = ()
    server_side = True

    def close(self) -> None:
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        return self._cursor.fetchmany(self._cursor.arraysize if size is None else size)

    def fetchall(self) -> Sequence[Any]:
        return self._cursor.fetchall()

    def __iter__(self) -> Any:
        return iter(self._cursor)


class InlineConnection(AsyncAdapt_dbapi_connection):
    """A sqlite3 connection shared by the loop's thread (statements) and worker threads (what may wait)."""

    __slots__ = ("lock_wait",)
    _cursor_cls = InlineCursor
    _ss_cursor_cls = InlineServerSideCursor

    def __init__(self, dbapi: Any, connection: sqlite3.Connection, lock_wait: float) -> None:
        super().__init__(dbapi, connection)
        self.lock_wait = lock_wait

    @property
    def isolation_level(self) -> str | None:
        return self._connection.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._connection.isolation_level = value

    def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._connection.create_function(*args, **kwargs)

    def commit(self) -> None:
        _on_thread(self._connection.commit)

    def rollback(self) -> None:
        self._connection.rollback()  # nothing to wait for: WAL mode just forgets the transaction's pages

    def close(self) -> None:
        _on_thread(self._connection.close)

    def terminate(self) -> None:
        self._connection.close()


class InlineDBAPI(AsyncAdapt_dbapi_module):
    """What SQLAlchemy uses as the DBAPI module: sqlite3's names, and :meth:`connect`."""

    def __init__(self) -> None:
        super().__init__(sqlite3, dbapi_module=sqlite3)
        self.paramstyle = "qmark"
        self.has_stop = False
        for name in (
            "DatabaseError",
            "Error",
            "IntegrityError",
            "InterfaceError",
            "NotSupportedError",
            "OperationalError",
            "ProgrammingError",
            "sqlite_version",
            "sqlite_version_info",
            "PARSE_COLNAMES",
            "PARSE_DECLTYPES",
            "Binary",
        ):
            setattr(self, name, getattr(sqlite3, name))

    def connect(self, *args: Any, lock_wait: float = LOCK_WAIT_SECONDS, **kwargs: Any) -> InlineConnection:
        kwargs["check_same_thread"] = False  # statements on the loop's thread, COMMIT on a worker's
        connection = _on_thread(partial(sqlite3.connect, *args, **kwargs))
        return InlineConnection(self, connection, lock_wait)


class InlineSQLiteDialect(SQLiteDialect_aiosqlite):
    driver = DRIVER
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> InlineDBAPI:  # type: ignore[override]
        return InlineDBAPI()

    def retrieve_dbapi_version(self, dbapi: Any) -> util.VersionInfo:
        return tuple(sqlite3.sqlite_version_info)


registry.register(f"sqlite.{DRIVER}", __name__, "InlineSQLiteDialect")
