"""When broadcasts go out: APScheduler 3 with its persistent SQLAlchemy job store, one leader at a time.

Every ``hocvuso run`` process starts a scheduler *paused*: it can add and remove jobs (they are
written to the job store at once) but runs none. The process that holds the leader lock resumes
its scheduler and runs the jobs: on PostgreSQL a session-level advisory lock, so that several web
workers sharing one database run each job once; on SQLite there is one process per commune and it
leads. The job store lives in the main database on PostgreSQL, and in a file beside the SQLite
database on SQLite (APScheduler's job store is synchronous: in the same SQLite file, its writes
would wait on our own open transactions while holding up the event loop).

The broadcasts table stays the truth: a job only says "look at broadcast N now". The leader's
``tick`` (every ``TICK_SECONDS``) adds jobs missing for confirmed broadcasts (e.g. confirmed by a
process that crashed before scheduling), finishes runs a crash interrupted, sends reminders (modules
and classes) and seats people waiting for a class where a seat is free.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from bot.broadcasts import class_notices, reminders
from bot.broadcasts.service import pending_runs, start_run, yearly_due
from flows.catalog import Catalog
from storage.clock import LOCAL_TZ, Clock, utc_now
from storage.models import Broadcast, BroadcastStatus

log = logging.getLogger(__name__)

TICK_SECONDS = 30.0
LEADER_RETRY_SECONDS = 15.0
LOCK_KEY = int.from_bytes(hashlib.sha256(b"hocvuso scheduler").digest()[:8], "big", signed=True)
_current: BroadcastScheduler | None = None  # the running scheduler, for jobs loaded from the store


def current() -> BroadcastScheduler | None:
    """The scheduler of this process, if it runs one (``hocvuso run``)."""
    return _current


async def fire_broadcast(broadcast_id: int) -> None:
    """The job of a scheduled broadcast (referenced by name in the job store)."""
    if _current is not None:
        await _current.fire(broadcast_id)


async def _tick() -> None:
    if _current is not None:
        await _current.tick()


def job_id(broadcast_id: int) -> str:
    return f"broadcast-{broadcast_id}"


def sync_url(url: str) -> str:
    """The job store's synchronous URL for our async one (psycopg for asyncpg; a sibling file for SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        jobs = "" if database in ("", ":memory:") else str(Path(database).with_suffix(".jobs.db"))
        return str(parsed.set(drivername="sqlite", database=jobs or None))
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


class BroadcastScheduler:
    def __init__(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        catalog: Catalog,
        wake_sender: Callable[[], None],
        database_url: str,
        clock: Clock = utc_now,
    ) -> None:
        self._engine = engine
        self._sessions = sessions
        self._catalog = catalog
        self._wake_sender = wake_sender
        self._clock = clock
        self._job_engine = create_sync_engine(sync_url(database_url), pool_pre_ping=True)
        self._scheduler = AsyncIOScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self._job_engine), "memory": MemoryJobStore()},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=dt.UTC,
        )
        self._leader: asyncio.Task[None] | None = None
        self._lock_connection: AsyncConnection | None = None
        self.leading = asyncio.Event()
        self._stopped = False

    def wake_sender(self) -> None:
        self._wake_sender()

    async def start(self) -> None:
        global _current
        _current = self
        self._scheduler.start(paused=True)
        self._leader = asyncio.create_task(self._lead())

    async def stop(self) -> None:
        global _current
        if self._stopped:
            return
        self._stopped = True
        self.leading.clear()
        if self._leader is not None:
            self._leader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._leader
        self._scheduler.shutdown(wait=False)
        await self._release()
        self._job_engine.dispose()
        if _current is self:
            _current = None

    async def schedule(self, broadcast_id: int) -> None:
        """(Re)write the job of a confirmed broadcast: once at its time, or every year. Safe to repeat."""
        async with self._sessions() as session:
            broadcast = await session.get(Broadcast, broadcast_id)
        if broadcast is None or broadcast.status != BroadcastStatus.SCHEDULED:
            with contextlib.suppress(Exception):
                self._scheduler.remove_job(job_id(broadcast_id))
            return
        if broadcast.every_year:
            month_day, hour_minute = broadcast.every_year.split()
            month, day = month_day.split("-")
            hour, minute = hour_minute.split(":")
            trigger = CronTrigger(month=month, day=day, hour=hour, minute=minute, timezone=LOCAL_TZ)
        else:
            trigger = DateTrigger(run_date=broadcast.send_at or self._clock(), timezone=dt.UTC)
        self._scheduler.add_job(
            fire_broadcast, trigger, args=[broadcast_id], id=job_id(broadcast_id), replace_existing=True
        )

    async def fire(self, broadcast_id: int) -> None:
        """Start (or finish) the run that is due now."""
        now = self._clock()
        async with self._sessions() as session:
            broadcast = await session.get(Broadcast, broadcast_id)
        if broadcast is None or broadcast.status != BroadcastStatus.SCHEDULED:
            return
        due = yearly_due(broadcast.every_year, now) if broadcast.every_year else (broadcast.send_at or now)
        if await start_run(self._sessions, self._catalog, broadcast_id, due, now) is not None:
            self._wake_sender()

    async def tick(self) -> None:
        """The leader's housekeeping: missing jobs, interrupted runs, reminders."""
        now = self._clock()
        async with self._sessions() as session:
            scheduled = list(
                await session.execute(
                    select(Broadcast.id, Broadcast.send_at, Broadcast.every_year).where(
                        Broadcast.status == BroadcastStatus.SCHEDULED
                    )
                )
            )
            interrupted = await pending_runs(session)
        for broadcast_id, send_at, every_year in scheduled:
            if self._scheduler.get_job(job_id(broadcast_id)) is None:
                if every_year is None and send_at is not None and send_at <= now:
                    await self.fire(broadcast_id)  # due while no job existed (a crash before scheduling)
                else:
                    await self.schedule(broadcast_id)
        for broadcast_id, due_at in interrupted:
            if await start_run(self._sessions, self._catalog, broadcast_id, due_at, now) is not None:
                self._wake_sender()
        queued = await reminders.send_due(self._sessions, self._catalog, now)
        queued += await class_notices.send_reminders(self._sessions, self._catalog, now)
        queued += await class_notices.fill_waiting_lists(self._sessions, self._catalog, now)
        if queued:
            self._wake_sender()

    # --- leadership ------------------------------------------------------------------------

    async def _lead(self) -> None:
        while True:
            try:
                if not self.leading.is_set() and await self._acquire():
                    log.info("this process runs the broadcast scheduler")
                    self._scheduler.add_job(
                        _tick, "interval", seconds=TICK_SECONDS, id="tick", jobstore="memory", replace_existing=True
                    )
                    self._scheduler.resume()
                    try:
                        await self.tick()
                    finally:
                        self.leading.set()
                elif self.leading.is_set() and not await self._still_leading():
                    log.warning("lost the scheduler lock; pausing")
                    self._scheduler.pause()
                    self.leading.clear()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler leadership check failed")
            await asyncio.sleep(LEADER_RETRY_SECONDS)

    async def _acquire(self) -> bool:
        if self._engine.dialect.name != "postgresql":
            return True
        connection = await self._engine.connect()
        got = await connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY})
        await connection.commit()
        if not got:
            await connection.close()
            return False
        self._lock_connection = connection
        return True

    async def _still_leading(self) -> bool:
        if self._lock_connection is None:
            return self._engine.dialect.name != "postgresql"
        try:
            await self._lock_connection.execute(text("SELECT 1"))
            await self._lock_connection.commit()
            return True
        except Exception:
            await self._release()
            return False

    async def _release(self) -> None:
        """Give the lock up: the connection is closed, not returned to the pool (where it would keep the lock)."""
        if self._lock_connection is None:
            return
        connection, self._lock_connection = self._lock_connection, None
        with contextlib.suppress(Exception):
            await connection.invalidate()
        with contextlib.suppress(Exception):
            await connection.close()
