"""Login without passwords: signed one-time links, session cookies and CSRF tokens, all keyed by one secret.

A link carries the officer's person id, its expiry (10 minutes) and a random nonce, signed with HMAC-SHA256.
Nothing is stored when it is made; using it stores the nonce (``storage.logins``), so it works once, and
that row is then the session. The session cookie and the CSRF token are signatures of the nonce: the
server can recompute them, nobody else can.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Role
from storage.repo import app_secret_in
from storage.roles import active_grants, audit

DASHBOARD_SECRET = "dashboard_key"
LINK_LIFETIME = dt.timedelta(minutes=10)
SESSION_LIFETIME = dt.timedelta(hours=8)  # an office day; then a new link
LOGIN_PATH = "/dashboard/login/"
_TOKEN = re.compile(r"^(\d{1,18})\.(\d{1,12})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$")
_COOKIE = re.compile(r"^([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$")


def sign(key: bytes, purpose: str, message: str) -> str:
    """HMAC-SHA256 of ``purpose:message``, URL-safe (43 characters)."""
    digest = hmac.new(key, f"{purpose}:{message}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _valid(key: bytes, purpose: str, message: str, signature: str) -> bool:
    return hmac.compare_digest(sign(key, purpose, message), signature)


@dataclass(frozen=True)
class LinkClaims:
    person_id: int
    expires: dt.datetime
    nonce: str


def make_token(key: bytes, person_id: int, expires: dt.datetime) -> str:
    payload = f"{person_id}.{int(expires.timestamp())}.{secrets.token_urlsafe(16)}"
    return f"{payload}.{sign(key, 'login', payload)}"


def read_token(key: bytes, token: str) -> LinkClaims | None:
    """The claims of a link this installation signed (expired or not); None for anything else."""
    found = _TOKEN.match(token)
    if not found:
        return None
    person, expires, nonce, signature = found.groups()
    if not _valid(key, "login", f"{person}.{expires}.{nonce}", signature):
        return None
    return LinkClaims(int(person), dt.datetime.fromtimestamp(int(expires), dt.UTC), nonce)


def session_cookie(key: bytes, nonce: str) -> str:
    return f"{nonce}.{sign(key, 'session', nonce)}"


def read_session_cookie(key: bytes, value: str) -> str | None:
    """The session's nonce if the cookie is one we set; None otherwise."""
    found = _COOKIE.match(value)
    if not found or not _valid(key, "session", found.group(1), found.group(2)):
        return None
    return found.group(1)


def csrf_token(key: bytes, nonce: str) -> str:
    """The token every form of this session carries."""
    return sign(key, "csrf", nonce)


def csrf_valid(key: bytes, nonce: str, token: str) -> bool:
    return hmac.compare_digest(csrf_token(key, nonce), token)


async def dashboard_key(session: AsyncSession) -> bytes:
    return bytes.fromhex(await app_secret_in(session, DASHBOARD_SECRET))


async def issue_login_link(
    session: AsyncSession, person_id: int, base_url: str, now: dt.datetime, actor_id: int | None
) -> tuple[str, dt.datetime] | None:
    """A one-time login link for an officer, and when it expires; None when the person is no officer.

    Audited as ``login_link_created`` (``actor_id`` None: the operator, from the CLI).
    """
    grants = [g for g in await active_grants(session, person_id) if g.role == Role.OFFICER]
    if not grants:
        return None
    expires = now + LINK_LIFETIME
    token = make_token(await dashboard_key(session), person_id, expires)
    await audit(
        session,
        actor_id,
        "login_link_created",
        grants[0].area_code,
        now=now,
        person_id=person_id,
        expires_at=expires.isoformat(),
    )
    return f"{base_url.rstrip('/')}{LOGIN_PATH}{token}", expires
