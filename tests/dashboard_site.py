"""The bot's web app with two communes, for the dashboard's HTTP tests: officers, residents, log rows, logins."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bot.app import App, open_app
from bot.channels.web import WebChat, WebTransport
from bot.config import Settings
from bot.dashboard.links import issue_login_link
from bot.server import create_web_app
from content import CONTENT_DIR
from flows.community import AreaKind, AreaSpec
from storage.areas import upsert_areas
from storage.clock import utc_now
from storage.models import AuditEntry, ParticipationEvent, Person, Role
from storage.repo import new_subject
from storage.roles import grant

# Commune A is the shipped demo commune ("demo", villages demo-thon-1..3 and demo-tdp-1); commune B is added.
COMMUNE_B = [
    AreaSpec(code="xa-b", kind=AreaKind.COMMUNE, name="Xã Bên Kia"),
    AreaSpec(
        code="xa-b-thon-1", parent="xa-b", kind=AreaKind.VILLAGE, name="Thôn Bên Sông", households=100, adults=250
    ),
]
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_in(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no form with a CSRF token on the page"
    return found.group(1)


@asynccontextmanager
async def open_site(db_url: str, tmp_path: Path, **settings_given: Any) -> AsyncIterator[Site]:
    """The bot's web app on a fresh database, with commune B beside the demo commune; ``settings_given``
    changes Settings fields (e.g. the Zalo OA's, for its sending window)."""
    settings = Settings(
        data_dir=tmp_path, database_url=db_url, auto_upgrade=True, content_dir=CONTENT_DIR, **settings_given
    )
    async with open_app(settings) as app:
        web_app = create_web_app(app, WebChat(app.catalog, app.dispatcher, app.sessions, WebTransport()))
        async with TestClient(TestServer(web_app)) as client:
            site = Site(app, client, utc_now())
            await site.add_commune_b()
            yield site


@dataclass
class Site:
    app: App
    client: TestClient
    now: dt.datetime

    async def add_commune_b(self) -> None:
        async with self.app.sessions.begin() as session:
            await upsert_areas(session, COMMUNE_B, self.now)

    async def person(self, area: str | None = None, name: str | None = None) -> tuple[int, int]:
        """A consented person; returns (id, subject)."""
        async with self.app.sessions.begin() as session:
            person = Person(created_at=self.now, consented_at=self.now, subject=new_subject(), area_code=area)
            person.display_name = name
            session.add(person)
            await session.flush()
            return person.id, person.subject

    async def officer(self, area: str = "demo", name: str | None = "Chị Lan") -> int:
        person_id, _ = await self.person(name=name)
        async with self.app.sessions.begin() as session:
            await grant(session, person_id, Role.OFFICER, area, None, self.now)
        return person_id

    async def events(
        self, who: tuple[int, int], area: str, *rows: tuple[str, str], at: dt.datetime | None = None
    ) -> None:
        """(kind, module) rows for a person in a village, at ``at`` (default: a day ago)."""
        person_id, subject = who
        moment = at or self.now - dt.timedelta(days=1)
        async with self.app.sessions.begin() as session:
            session.add_all(
                ParticipationEvent(
                    person_id=person_id,
                    subject=subject,
                    area_code=area,
                    module=module,
                    module_version=1,
                    kind=kind,
                    step="",
                    channel="telegram",
                    at=moment,
                )
                for kind, module in rows
            )

    async def link(self, person_id: int, now: dt.datetime | None = None) -> str:
        """A login link's path."""
        async with self.app.sessions.begin() as session:
            issued = await issue_login_link(session, person_id, "http://bot.test", now or self.now, person_id)
        assert issued is not None
        return issued[0].removeprefix("http://bot.test")

    async def login(self, person_id: int) -> str:
        """Log the client in as this officer; returns the session's CSRF token (from the overview's forms)."""
        path = await self.link(person_id)
        page = await self.client.get(path)
        assert page.status == 200
        done = await self.client.post(path, data={"csrf": csrf_in(await page.text())}, allow_redirects=False)
        assert done.status == 303, await done.text()
        overview = await self.client.get("/dashboard/")
        assert overview.status == 200, await overview.text()
        return csrf_in(await overview.text())

    async def audit(self, action: str) -> list[AuditEntry]:
        async with self.app.sessions() as session:
            return list(
                await session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id))
            )
