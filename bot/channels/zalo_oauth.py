"""The Zalo OA's tokens: an access token (~25 h) and a single-use refresh token (~3 months).

Every refresh returns a new pair and spends the old refresh token, so the new pair is stored
(and the old one retired) in the transaction that read it, before it is used; refreshes are
serialised by a lock in the process and by a row lock on PostgreSQL. The access token is
refreshed ahead of its expiry: if a refresh is interrupted (a crash after Zalo answered, before
the commit), the stored access token still works for hours, and the error says what to do.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import logging
from urllib.parse import urlencode

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.clock import Clock, utc_now
from storage.models import OAuthToken
from storage.repo import app_secret
from storage.tokens import TokenPair, current_token, store_token

log = logging.getLogger(__name__)

PROVIDER = "zalo_oa"
REFRESH_AHEAD = dt.timedelta(hours=6)
REFRESH_RETRY = dt.timedelta(minutes=5)  # after a failed refresh, while the current token still works
VERIFIER_SECRET = "zalo_oa_code_verifier"
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=15)
REAUTHORISE = "run `hocvuso zalo auth` to authorise the OA again"


class TokenError(Exception):
    """No usable token: Zalo refused the grant, or the OA was never authorised."""


def code_challenge(verifier: str) -> str:
    """PKCE S256: base64url(SHA-256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


async def code_verifier(sessions: async_sessionmaker[AsyncSession]) -> str:
    """This installation's PKCE verifier (64 hex characters, within RFC 7636's 43-128)."""
    return await app_secret(sessions, VERIFIER_SECRET)


class ZaloTokens:
    """Hands out a valid access token, refreshing and storing the pair when it is due."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        http: aiohttp.ClientSession,
        app_id: str,
        app_secret: str,
        oauth_url: str,
        clock: Clock = utc_now,
    ) -> None:
        self._sessions = sessions
        self._http = http
        self._app_id = app_id
        self._app_secret = app_secret
        self._oauth_url = oauth_url.rstrip("/")
        self._clock = clock
        self._lock = asyncio.Lock()
        self._cached: tuple[str, dt.datetime] | None = None  # (access token, expires at)
        self._refresh_again_at = dt.datetime.min.replace(tzinfo=dt.UTC)  # after a failed refresh

    def permission_url(self, redirect_uri: str, verifier: str, state: str) -> str:
        """Where the OA's admin consents (once, in a browser); Zalo then redirects with ?code=..."""
        query = urlencode(
            {
                "app_id": self._app_id,
                "redirect_uri": redirect_uri,
                "code_challenge": code_challenge(verifier),
                "state": state,
            }
        )
        return f"{self._oauth_url}/v4/oa/permission?{query}"

    async def access_token(self) -> str:
        """A token to call the OA API with; refreshed first when it expires within REFRESH_AHEAD."""
        now = self._clock()
        if self._cached is not None:
            token, expires = self._cached
            if expires - now > REFRESH_AHEAD or (now < self._refresh_again_at and expires > now):
                return token
        async with self._lock:
            async with self._sessions.begin() as session:
                row = await current_token(session, PROVIDER)
            if row is None:
                raise TokenError(f"the Zalo OA has no token yet: {REAUTHORISE}")
            if row.access_expires_at - now > REFRESH_AHEAD:
                self._cached = (row.access_token, row.access_expires_at)
                return row.access_token
            try:
                return await self._refresh(row.access_token)
            except (TokenError, aiohttp.ClientError, TimeoutError) as exc:
                if row.access_expires_at > now:  # still valid for a while: keep sending with it, retry later
                    log.error("Zalo OA token refresh failed (%s); using the current token until it expires", exc)
                    self._cached = (row.access_token, row.access_expires_at)
                    self._refresh_again_at = now + REFRESH_RETRY
                    return row.access_token
                raise TokenError(
                    f"the Zalo OA token expired and could not be refreshed ({exc}): {REAUTHORISE}"
                ) from exc

    async def refresh(self, stale: str) -> str:
        """After Zalo said ``stale`` is invalid or expired: a new token, unless another call already got one."""
        self._cached = None
        async with self._lock:
            return await self._refresh(stale)

    async def _refresh(self, stale: str) -> str:
        async with self._sessions.begin() as session:
            row = await current_token(session, PROVIDER, lock=True)
            if row is None:
                raise TokenError(f"the Zalo OA has no token yet: {REAUTHORISE}")
            if row.access_token != stale:  # rotated meanwhile (another worker, or an earlier call)
                self._cached = (row.access_token, row.access_expires_at)
                return row.access_token
            pair = await self._grant({"refresh_token": row.refresh_token, "grant_type": "refresh_token"})
            stored = await self._store(session, pair)
        self._cached = (stored.access_token, stored.access_expires_at)
        return stored.access_token

    async def authorise(self, code: str, verifier: str) -> dt.datetime:
        """Exchange the admin's authorisation code for the first pair; returns when its access token expires."""
        pair = await self._grant({"code": code, "grant_type": "authorization_code", "code_verifier": verifier})
        return await self._save(pair)

    async def adopt(self, refresh_token: str) -> dt.datetime:
        """Start from a refresh token minted elsewhere (e.g. the API Explorer): spend it for a stored pair."""
        pair = await self._grant({"refresh_token": refresh_token, "grant_type": "refresh_token"})
        return await self._save(pair)

    async def _save(self, pair: TokenPair) -> dt.datetime:
        async with self._lock, self._sessions.begin() as session:
            await current_token(session, PROVIDER, lock=True)
            stored = await self._store(session, pair)
        self._cached = (stored.access_token, stored.access_expires_at)
        return stored.access_expires_at

    async def _store(self, session: AsyncSession, pair: TokenPair) -> OAuthToken:
        return await store_token(session, PROVIDER, pair, self._clock())

    async def _grant(self, fields: dict[str, str]) -> TokenPair:
        """POST /v4/oa/access_token (form fields, the app secret in a header); the pair Zalo answers."""
        async with self._http.post(
            f"{self._oauth_url}/v4/oa/access_token",
            data={**fields, "app_id": self._app_id},
            headers={"secret_key": self._app_secret},
            timeout=HTTP_TIMEOUT,
        ) as response:
            try:
                data = await response.json(content_type=None)
            except ValueError as exc:
                raise TokenError(f"Zalo's token endpoint answered HTTP {response.status}, not JSON") from exc
        if not isinstance(data, dict):
            raise TokenError("Zalo's token endpoint answered something other than an object")
        access, refresh = data.get("access_token"), data.get("refresh_token")
        if not (isinstance(access, str) and access and isinstance(refresh, str) and refresh):
            reason = data.get("error_name") or data.get("message") or data.get("error_description") or "no tokens"
            raise TokenError(f"Zalo refused the grant (error {data.get('error')}: {reason})")
        try:
            lifetime = float(data.get("expires_in", 90000))
        except (TypeError, ValueError):
            lifetime = 90000.0
        return TokenPair(access, refresh, self._clock() + dt.timedelta(seconds=lifetime))
