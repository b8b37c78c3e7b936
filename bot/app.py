"""Everything a running bot needs, opened and closed in one place."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.config import Settings
from bot.dispatcher import Dispatcher
from bot.inbound_throttle import InboundThrottle, too_fast_notice
from bot.sender import OutboxSender
from content import read_content
from flows.catalog import Catalog, load_catalog
from storage.areas import seed_areas
from storage.clock import utc_now
from storage.db import make_sessionmaker
from storage.migrate import open_database


@dataclass(frozen=True)
class App:
    settings: Settings
    catalog: Catalog
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    dispatcher: Dispatcher
    sender: OutboxSender


@asynccontextmanager
async def open_app(settings: Settings) -> AsyncIterator[App]:
    """Load content, open (and if configured, upgrade) the database, wire the dispatcher and sender."""
    catalog = load_catalog(read_content(settings.content_dir))
    async with open_database(settings.database_url, settings.auto_upgrade) as engine:
        sessions = make_sessionmaker(engine)
        async with sessions.begin() as session:  # a fresh database gets the content's areas
            await seed_areas(session, catalog.areas, utc_now())
        sender = OutboxSender(sessions, {}, quiet_hours=catalog.community.quiet_hours)
        throttle = InboundThrottle(too_fast_notice(catalog, sessions, sender.wake))
        dispatcher = Dispatcher(
            catalog,
            sessions,
            on_commit=sender.wake,
            base_url=settings.base_url,
            throttle=throttle,
            windows=settings.sending_windows,
            handoff=sender,
        )
        yield App(settings, catalog, engine, sessions, dispatcher, sender)
