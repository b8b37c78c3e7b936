"""Who is asking: the officer behind a session cookie, their areas, and the CSRF check on every POST."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.dashboard.links import csrf_token, read_session_cookie
from storage.logins import session_person
from storage.models import Area, Person, Role
from storage.roles import active_grants, scope

SESSION_COOKIE = "hocvuso_dashboard"
LOGIN_COOKIE = "hocvuso_login"  # double-submit token of the login form, before any session exists
COOKIE_PATH = "/dashboard/"


@dataclass(frozen=True)
class Officer:
    """A logged-in officer: every page, export and report is limited to ``scope``."""

    person_id: int
    name: str | None
    nonce: str  # the session's id
    csrf: str
    scope: frozenset[str]  # the areas they may see: their grants' areas and everything under them
    roots: tuple[str, ...]  # the top areas of that scope, ordered by code

    def may_see(self, area_code: str) -> bool:
        return area_code in self.scope


class NotLoggedIn(Exception):
    """No open session behind the request's cookie."""


class NoLongerOfficer(Exception):
    """An open session, but the person holds no officer role any more."""


async def officer_of(session: AsyncSession, key: bytes, cookie: str, now: dt.datetime) -> Officer:
    """The officer of an open session (NotLoggedIn, NoLongerOfficer otherwise); the role is checked every time."""
    nonce = read_session_cookie(key, cookie)
    person_id = await session_person(session, nonce, now) if nonce else None
    if nonce is None or person_id is None:
        raise NotLoggedIn
    areas = await scope(session, person_id, Role.OFFICER)
    if not areas:
        raise NoLongerOfficer
    granted = {g.area_code for g in await active_grants(session, person_id) if g.role == Role.OFFICER}
    parents = dict((await session.execute(select(Area.code, Area.parent_code).where(Area.code.in_(granted)))).all())
    roots = tuple(sorted(code for code in granted if parents.get(code) not in areas))
    name = await session.scalar(select(Person.display_name).where(Person.id == person_id))
    return Officer(person_id, name, nonce, csrf_token(key, nonce), frozenset(areas), roots)


def set_cookie(response: web.StreamResponse, name: str, value: str, secure: bool, max_age: int, path: str) -> None:
    response.set_cookie(name, value, httponly=True, samesite="Strict", secure=secure, max_age=max_age, path=path)
