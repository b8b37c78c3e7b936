"""The web chat: try every flow in a browser, no Telegram or Zalo account needed.

The outbox is the message store: the web "transport" only announces that a
row is ready, and the page long-polls for sent rows addressed to its session.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from typing import Any

from aiohttp import web
from sqlalchemy import select

from bot.dispatcher import Dispatcher, Envelope
from bot.pages import render
from bot.ratelimit import RateLimits
from flows.catalog import Catalog
from flows.types import Inbound, InboundKind, Reply
from storage.clock import Clock, utc_now
from storage.models import OutboxMessage, OutboxStatus

CHANNEL = "web"
COOKIE = "hocvuso_chat"
LONG_POLL_SECONDS = 20.0
_TOKEN = re.compile(r"^[0-9a-f]{32}$")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_TEXT = 5000


class WebTransport:
    """Marks web messages as deliverable and wakes the page that waits for them."""

    channel = CHANNEL
    limits = RateLimits()

    def __init__(self) -> None:
        self._ready = asyncio.Condition()

    async def send(self, recipient: str, reply: Reply) -> None:
        async with self._ready:
            self._ready.notify_all()

    async def wait(self, seconds: float) -> None:
        """Return when a message is handed over, or after ``seconds``."""
        async with self._ready:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):  # not wait_for, see OutboxSender._run_channel
                    await self._ready.wait()


class WebChat:
    """Routes of the web chat."""

    def __init__(
        self, catalog: Catalog, dispatcher: Dispatcher, sessions: Any, transport: WebTransport, clock: Clock = utc_now
    ) -> None:
        self._catalog = catalog
        self._dispatcher = dispatcher
        self._sessions = sessions
        self._transport = transport
        self._clock = clock

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/chat", self.page),
            web.post("/chat/api/send", self.send),
            web.get("/chat/api/messages", self.messages),
        ]

    async def page(self, request: web.Request) -> web.Response:
        token = request.cookies.get(COOKIE, "")
        html = render("chat.html", labels=self._catalog.messages.labels)
        response = web.Response(text=html, content_type="text/html")
        if not _TOKEN.match(token):
            response.set_cookie(COOKIE, secrets.token_hex(16), httponly=True, samesite="Strict", max_age=90 * 86400)
        return response

    async def send(self, request: web.Request) -> web.Response:
        token = _session(request)
        if request.headers.get("X-Requested-With") != "hocvuso":
            raise web.HTTPForbidden(text="missing X-Requested-With header")
        try:
            body = await request.json()
        except ValueError as exc:
            raise web.HTTPBadRequest(text="body must be JSON") from exc
        if not isinstance(body, dict) or not _CLIENT_ID.match(str(body.get("id", ""))):
            raise web.HTTPBadRequest(text="'id' (1-64 of A-Z a-z 0-9 _ -) is required")
        now = self._clock()
        if body.get("start") is True:
            inbound = Inbound(InboundKind.START, now)
        elif isinstance(body.get("button"), str) and len(body["button"]) <= 64:
            inbound = Inbound(InboundKind.BUTTON, now, button_id=body["button"])
        elif isinstance(body.get("text"), str) and len(body["text"]) <= MAX_TEXT:
            inbound = Inbound(InboundKind.TEXT, now, text=body["text"])
        else:
            raise web.HTTPBadRequest(text=f"one of 'start', 'button' or 'text' (at most {MAX_TEXT} characters)")
        await self._dispatcher.handle(Envelope(CHANNEL, f"{token}:{body['id']}", token, inbound))
        return web.json_response({"ok": True})

    async def messages(self, request: web.Request) -> web.Response:
        token = _session(request)
        try:
            after = int(request.query.get("after", "0"))
        except ValueError as exc:
            raise web.HTTPBadRequest(text="'after' must be a number") from exc
        deadline = asyncio.get_running_loop().time() + LONG_POLL_SECONDS
        while not (found := await self._sent_after(token, after)):
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            # Woken by the sender; the short timeout also covers other workers' sends.
            await self._transport.wait(min(left, 1.0))
        return web.json_response({"messages": found})

    async def _sent_after(self, token: str, after: int) -> list[dict[str, Any]]:
        async with self._sessions() as session:
            rows = await session.execute(
                select(OutboxMessage.id, OutboxMessage.payload)
                .where(
                    OutboxMessage.channel == CHANNEL,
                    OutboxMessage.recipient == token,
                    # Claimed and sending too: the web transport cannot fail, the row is readable once handed over.
                    OutboxMessage.status.in_([OutboxStatus.CLAIMED, OutboxStatus.SENDING, OutboxStatus.SENT]),
                    OutboxMessage.id > after,
                )
                .order_by(OutboxMessage.id)
                .limit(50)
            )
            return [{"id": row_id, **payload} for row_id, payload in rows]


def _session(request: web.Request) -> str:
    token = request.cookies.get(COOKIE, "")
    if not _TOKEN.match(token):
        raise web.HTTPUnauthorized(text="open /chat first")
    return token
