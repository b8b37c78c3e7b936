"""Everything a running bot needs, opened and closed in one place."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.config import Settings
from bot.dispatcher import Dispatcher
from bot.sender import OutboxSender
from content import read_content
from flows.catalog import Catalog, load_catalog
from storage.db import create_engine, make_sessionmaker
from storage.migrate import is_current, upgrade


class SchemaOutdated(RuntimeError):
    """The database needs ``hocvuso db upgrade`` and auto-upgrade is off."""


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
    engine = create_engine(settings.database_url)
    try:
        if settings.auto_upgrade:
            await upgrade(engine)
        elif not await is_current(engine):
            raise SchemaOutdated("the database schema is out of date: run `hocvuso db upgrade`")
        sessions = make_sessionmaker(engine)
        sender = OutboxSender(sessions, {})
        dispatcher = Dispatcher(catalog, sessions, on_commit=sender.wake)
        yield App(settings, catalog, engine, sessions, dispatcher, sender)
    finally:
        await engine.dispose()
