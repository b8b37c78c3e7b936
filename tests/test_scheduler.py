"""The broadcast scheduler: APScheduler jobs in the persistent job store, fired once, surviving a
restart, and one leader among several workers on PostgreSQL (real time, a few seconds)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import func, select, text

import bot.broadcasts.scheduler as scheduler_module
from bot.broadcasts import service
from bot.broadcasts.scheduler import BroadcastScheduler, job_id, sync_url
from flows.catalog import Catalog
from storage.areas import seed_areas
from storage.audience import Audience
from storage.clock import LOCAL_TZ, utc_now
from storage.db import create_engine, make_sessionmaker
from storage.models import ChannelIdentity, OutboxMessage, Person, Role
from storage.roles import grant
from tests.helpers import T0


@pytest.fixture
async def author(shipped: Catalog, sessions) -> int:
    """A volunteer of Thôn Đông, and three residents there who can be reached."""
    async with sessions.begin() as session:
        await seed_areas(session, shipped.areas, T0)
        people = [Person(created_at=T0, consented_at=T0, subject=i, area_code="demo-thon-1") for i in range(4)]
        session.add_all(people)
        await session.flush()
        session.add_all(
            ChannelIdentity(person_id=p.id, channel="web", external_id=f"w{i}", created_at=T0)
            for i, p in enumerate(people)
        )
        await grant(session, people[0].id, Role.VOLUNTEER, "demo-thon-1", None, T0)
        return people[0].id


async def confirmed(sessions, author: int, send_at: dt.datetime | None, every_year: str | None = None) -> int:
    async with sessions.begin() as session:
        draft = await service.create_draft(
            session, author, Audience(areas=("demo-thon-1",)), "Chào {{ ten }}", T0, send_at, every_year
        )
        assert await service.confirm(session, draft.id, T0)
        return draft.id


async def bulk_count(sessions) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).where(OutboxMessage.run_id.is_not(None))) or 0


async def wait_for_bulk(sessions, count: int, seconds: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while await bulk_count(sessions) != count:
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


def make(engine, sessions, shipped: Catalog, db_url: str) -> BroadcastScheduler:
    return BroadcastScheduler(engine, sessions, shipped, lambda: None, db_url)


async def test_a_job_fires_at_its_time_once(engine, sessions, shipped: Catalog, db_url: str, author: int) -> None:
    broadcast_id = await confirmed(sessions, author, utc_now() + dt.timedelta(seconds=2))
    scheduler = make(engine, sessions, shipped, db_url)
    await scheduler.start()
    try:
        await asyncio.wait_for(scheduler.leading.wait(), 10)
        assert scheduler._scheduler.get_job(job_id(broadcast_id)) is not None  # the tick scheduled it
        assert await bulk_count(sessions) == 0
        await wait_for_bulk(sessions, 4)
        await asyncio.sleep(1)
        assert await bulk_count(sessions) == 4
        assert scheduler._scheduler.get_job(job_id(broadcast_id)) is None  # a one-off job is gone once run
    finally:
        await scheduler.stop()


async def test_jobs_survive_a_restart(engine, sessions, shipped: Catalog, db_url: str, author: int) -> None:
    broadcast_id = await confirmed(sessions, author, utc_now() + dt.timedelta(seconds=4))
    first = make(engine, sessions, shipped, db_url)
    await first.start()
    await asyncio.wait_for(first.leading.wait(), 10)
    await first.schedule(broadcast_id)
    await first.stop()  # the process goes away before the job is due
    store = create_sync_engine(sync_url(db_url))
    with store.connect() as connection:
        stored = connection.execute(text("SELECT id FROM apscheduler_jobs")).scalars().all()
    store.dispose()
    assert stored == [job_id(broadcast_id)]
    assert await bulk_count(sessions) == 0
    second = make(engine, sessions, shipped, db_url)
    await second.start()
    try:
        await wait_for_bulk(sessions, 4)
    finally:
        await second.stop()


async def test_a_cancelled_broadcast_loses_its_job_and_sends_nothing(
    engine, sessions, shipped: Catalog, db_url: str, author: int
) -> None:
    broadcast_id = await confirmed(sessions, author, None, every_year="10-10 08:00")
    scheduler = make(engine, sessions, shipped, db_url)
    await scheduler.start()
    try:
        await asyncio.wait_for(scheduler.leading.wait(), 10)
        job = scheduler._scheduler.get_job(job_id(broadcast_id))
        assert job is not None
        assert f"{job.next_run_time.astimezone(LOCAL_TZ):%m-%d %H:%M}" == "10-10 08:00"
        async with sessions.begin() as session:
            assert await service.cancel(session, broadcast_id, author, T0)
        await scheduler.schedule(broadcast_id)
        assert scheduler._scheduler.get_job(job_id(broadcast_id)) is None
        await scheduler.fire(broadcast_id)  # a job that fired anyway: nothing happens
        assert await bulk_count(sessions) == 0
    finally:
        await scheduler.stop()


@pytest.mark.parametrize("db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True)
async def test_one_leader_among_workers_and_a_new_one_when_it_goes(
    engine, sessions, shipped: Catalog, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scheduler_module, "LEADER_RETRY_SECONDS", 0.2)
    engines = [create_engine(db_url) for _ in range(3)]  # like three `hocvuso run` processes
    workers = [make(own, make_sessionmaker(own), shipped, db_url) for own in engines]
    for worker in workers:
        await worker.start()
    try:
        await asyncio.sleep(1.5)
        leaders = [w for w in workers if w.leading.is_set()]
        assert len(leaders) == 1
        await leaders[0].stop()
        rest = [w for w in workers if w is not leaders[0]]
        await asyncio.sleep(1.5)
        assert sum(w.leading.is_set() for w in rest) == 1
    finally:
        for worker in workers:
            await worker.stop()
        for own in engines:
            await own.dispose()


def test_the_job_store_url_follows_the_database_url() -> None:
    assert sync_url("sqlite+aiosqlite:////data/hocvuso.db") == "sqlite:////data/hocvuso.jobs.db"
    assert sync_url("postgresql+asyncpg://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
