"""Schema migrations with Alembic, run from code (``hocvuso db upgrade``, or at start)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import create_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class SchemaOutdated(RuntimeError):
    """The database needs migrations that are not to be applied automatically."""


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` in one transaction."""

    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as connection:
        await connection.run_sync(run)


async def is_current(engine: AsyncEngine) -> bool:
    """True when the database is at the newest revision."""

    def check(connection: Connection) -> bool:
        heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
        return set(MigrationContext.configure(connection).get_current_heads()) == heads

    async with engine.connect() as connection:
        return await connection.run_sync(check)


@asynccontextmanager
async def open_database(url: str, auto_upgrade: bool) -> AsyncIterator[AsyncEngine]:
    """An engine on ``url``, upgraded to the newest schema (``auto_upgrade``) or checked to be at it."""
    engine = create_engine(url)
    try:
        if auto_upgrade:
            await upgrade(engine)
        elif not await is_current(engine):
            raise SchemaOutdated("the database schema is out of date: run `hocvuso db upgrade`")
        yield engine
    finally:
        await engine.dispose()
