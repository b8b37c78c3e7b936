"""End to end in a real headless Chromium (Debian's `chromium`, driven by Playwright for Python): an officer of
commune A opens a login link from `hocvuso login`, sees only their commune, and downloads an export.

Skips, saying why, when /usr/bin/chromium is missing, unless HOCVUSO_REQUIRE_CHROMIUM=1 (as CI sets it).
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from content import read_content
from flows.catalog import load_catalog
from flows.community import AreaKind, AreaSpec
from storage.areas import seed_areas, upsert_areas
from storage.clock import utc_now
from storage.db import create_engine, make_sessionmaker
from storage.migrate import upgrade
from storage.models import ParticipationEvent, Person, Role
from storage.repo import new_subject
from storage.roles import grant
from tests.test_server_crash import free_port, wait_healthy

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium stalls on a closed network, trying to reach Google.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOCVUSO = str(Path(sys.executable).parent / "hocvuso")

if not CHROMIUM.exists():
    if os.environ.get("HOCVUSO_REQUIRE_CHROMIUM") == "1":
        raise RuntimeError(f"{CHROMIUM} is missing and HOCVUSO_REQUIRE_CHROMIUM=1: apt-get install chromium")
    pytest.skip(
        f"{CHROMIUM} is missing (apt-get install chromium; HOCVUSO_REQUIRE_CHROMIUM=1 makes this an error)",
        allow_module_level=True,
    )

from playwright.async_api import async_playwright  # noqa: E402


async def prepare(url: str) -> int:
    """The demo commune (A) and commune B, a resident learning in each, an officer of A; returns the officer's id."""
    engine = create_engine(url)
    now = utc_now()
    try:
        await upgrade(engine)
        sessions = make_sessionmaker(engine)
        async with sessions.begin() as session:
            await seed_areas(session, load_catalog(read_content()).areas, now)
            await upsert_areas(
                session,
                [
                    AreaSpec(code="xa-b", kind=AreaKind.COMMUNE, name="Xã Bên Kia"),
                    AreaSpec(code="xa-b-1", parent="xa-b", kind=AreaKind.VILLAGE, name="Thôn Bên Sông"),
                ],
                now,
            )
            officer = Person(created_at=now, consented_at=now, subject=new_subject(), display_name="Chị Lan")
            residents = [
                Person(created_at=now, consented_at=now, subject=new_subject(), area_code=area)
                for area in ("demo-thon-1", "xa-b-1")
            ]
            session.add_all([officer, *residents])
            await session.flush()
            await grant(session, officer.id, Role.OFFICER, "demo", None, now)
            for resident in residents:
                for kind in ("started", "completed"):
                    session.add(
                        ParticipationEvent(
                            person_id=resident.id,
                            subject=resident.subject,
                            area_code=resident.area_code,
                            module="vneid",
                            module_version=1,
                            kind=kind,
                            step="",
                            channel="zalo",
                            at=now - dt.timedelta(hours=1),
                        )
                    )
            return officer.id
    finally:
        await engine.dispose()


def start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen([HOCVUSO, "run"], env=env, stdout=output, stderr=output)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[str, dict[str, str]]]:
    """`hocvuso run` on a fresh SQLite database; yields its base URL and environment."""
    port = free_port()
    env = {
        **os.environ,
        "HOCVUSO_DATA_DIR": str(tmp_path / "data"),
        "HOCVUSO_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'data' / 'hocvuso.db'}",
        "HOCVUSO_PORT": str(port),
    }
    env.pop("HOCVUSO_PUBLIC_URL", None)
    env.pop("TELEGRAM_BOT_TOKEN", None)
    env["OFFICER_ID"] = str(await prepare(env["HOCVUSO_DATABASE_URL"]))
    process = start(env, tmp_path / "server.log")
    try:
        async with aiohttp.ClientSession() as http:
            await wait_healthy(http, port, process)
        yield f"http://127.0.0.1:{port}", env
    finally:
        process.terminate()
        process.wait(timeout=20)


async def test_an_officer_logs_in_with_a_link_sees_their_commune_and_downloads_an_export(
    server: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    base, env = server
    made = await asyncio.to_thread(
        subprocess.run, [HOCVUSO, "login", env["OFFICER_ID"]], env=env, capture_output=True, text=True, check=True
    )
    link = re.search(r"(http://\S+/dashboard/login/\S+)", made.stdout)
    assert link, made.stdout
    assert link.group(1).startswith(base)

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(accept_downloads=True)
            await page.goto(link.group(1))
            await page.get_by_role("button", name="Vào trang quản lý").click()
            await page.wait_for_url(f"{base}/dashboard/")
            assert await page.locator("h1").inner_text() == "Xã Mẫu (dữ liệu ví dụ)"
            body = await page.locator("main").inner_text()
            assert "Thôn Đông" in body
            assert "Bên Sông" not in body
            assert "Bên Kia" not in body
            cookies = {c["name"]: c for c in await page.context.cookies()}
            assert cookies["hocvuso_dashboard"]["httpOnly"]
            assert cookies["hocvuso_dashboard"]["sameSite"] == "Strict"

            other = await page.goto(f"{base}/dashboard/?area=xa-b")
            assert other is not None
            assert other.status == 403

            await page.goto(f"{base}/dashboard/export")
            await page.get_by_label("Bài học").select_option("vneid")
            async with page.expect_download() as waiting:
                await page.get_by_role("button", name="Tải về").click()
            download = await waiting.value
            saved = tmp_path / download.suggested_filename
            await download.save_as(saved)
        finally:
            await browser.close()

    assert re.fullmatch(r"nhat-ky-demo-\d{8}\.csv", saved.name)
    rows = list(csv.reader(io.StringIO(saved.read_bytes().decode("utf-8-sig"))))
    assert rows[0][0] == "Thời gian"
    assert [(r[3], r[5], r[8]) for r in rows[1:]] == [
        ("vneid", "started", "Thôn Đông"),
        ("vneid", "completed", "Thôn Đông"),
    ]
    assert re.fullmatch(r"p-[0-9a-f]{12}", rows[1][1])
