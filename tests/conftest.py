"""Shared fixtures: content folders, catalogs, and databases on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.app import App, open_app
from bot.cli import main
from bot.config import Settings
from content import CONTENT_DIR, read_content
from flows.catalog import AREAS_FILE, COMMUNITY_FILE, ROUTING_FILE, SCAM_FILE, Catalog, load_catalog
from storage.db import create_engine, make_sessionmaker
from storage.migrate import upgrade
from tests.helpers import content_at_any_hour

DATA = Path(__file__).parent / "data"
T0 = dt.datetime(2026, 11, 2, 1, 30, tzinfo=dt.UTC)
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres:postgres@127.0.0.1:5432/postgres"
POSTGRES_URL = os.environ.get("HOCVUSO_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL
REQUIRE_POSTGRES = os.environ.get("HOCVUSO_REQUIRE_POSTGRES") == "1"

Cli = Callable[..., Awaitable[tuple[int, str, str]]]


def make_content(
    root: Path, modules: dict[str, str] | None = None, messages: str | None = None, community: str | None = None
) -> Path:
    """A content folder with the shipped messages, routing, scam signs and areas, and the given module files
    (name -> YAML); by default the "Gia đình số" rule requires the first given module."""
    content = root / "content"
    (content / "modules").mkdir(parents=True)
    if messages is None:
        shutil.copy(CONTENT_DIR / "messages.yaml", content / "messages.yaml")
    else:
        (content / "messages.yaml").write_text(messages, encoding="utf-8")
    for name in (ROUTING_FILE, SCAM_FILE, AREAS_FILE):
        shutil.copy(CONTENT_DIR / name, content / name)
    modules = modules or {"mini.yaml": (DATA / "mini_module.yaml").read_text(encoding="utf-8")}
    for name, text in modules.items():
        (content / "modules" / name).write_text(text, encoding="utf-8")
    if community is None:
        found = re.search(r"^id:\s*(\w+)\s*$", next(iter(modules.values())), re.MULTILINE)
        first = found.group(1) if found else "mini"
        community = (
            f"gia_dinh_so: {{required_modules: [{first}], others_min_modules: 1}}\n"
            f'field_visit:\n  - {{id: helped, label: "Đã được hướng dẫn", module: {first}}}\n'
            '  - {id: vneid_level2, label: "Đã có tài khoản mức 2"}\n'
        )
    (content / COMMUNITY_FILE).write_text(community, encoding="utf-8")
    return content


@pytest.fixture(scope="session")
def shipped() -> Catalog:
    return load_catalog(read_content())


@pytest.fixture
def mini(tmp_path: Path) -> Catalog:
    return load_catalog(read_content(make_content(tmp_path)))


async def _postgres_database() -> tuple[str, str]:
    """Create a throwaway database; return (its URL, its name)."""
    import asyncpg

    url = make_url(POSTGRES_URL)
    name = f"hocvuso_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, database=url.database
    )
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return url.set(database=name).render_as_string(hide_password=False), name


async def _drop_postgres_database(name: str) -> None:
    import asyncpg

    url = make_url(POSTGRES_URL)
    admin = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, database=url.database
    )
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


_postgres_unreachable: list[str] = []  # the first connection error, so later tests skip at once


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        return
    if _postgres_unreachable:
        pytest.skip(_postgres_unreachable[0])
    try:
        url, name = await _postgres_database()
    except Exception as exc:  # any connection failure
        if REQUIRE_POSTGRES:
            raise
        _postgres_unreachable.append(
            f"no PostgreSQL reachable at {make_url(POSTGRES_URL).render_as_string()} ({type(exc).__name__}); "
            "set HOCVUSO_TEST_POSTGRES_URL, or run .ci/postgres.sh"
        )
        pytest.skip(_postgres_unreachable[0])
    yield url
    await _drop_postgres_database(name)


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated database engine."""
    engine = create_engine(db_url)
    await upgrade(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)


@pytest.fixture
def cli(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run ``hocvuso ARGS`` (in a thread: it runs its own event loop); returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("HOCVUSO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HOCVUSO_DATABASE_URL", db_url)
    for name in ("HOCVUSO_CONTENT_DIR", "HOCVUSO_AUTO_UPGRADE"):
        monkeypatch.delenv(name, raising=False)

    async def run(*args: str) -> tuple[int, str, str]:
        code = await asyncio.to_thread(main, list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="session")
def any_hour_content(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return content_at_any_hour(tmp_path_factory.mktemp("any_hour"))


@pytest.fixture
async def app(tmp_path: Path, db_url: str, any_hour_content: Path) -> AsyncIterator[App]:
    """The whole bot (catalog, database, dispatcher, sender) on each database, no channel attached.

    The shipped content without quiet hours: its sender delivers broadcasts whatever the hour the tests run.
    """
    settings = Settings(data_dir=tmp_path, database_url=db_url, auto_upgrade=True, content_dir=any_hour_content)
    async with open_app(settings) as opened:
        yield opened
