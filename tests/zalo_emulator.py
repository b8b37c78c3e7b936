"""Small emulators of Zalo's APIs, from the documented shapes (../shared/research/zalo-*.md).

``ZaloOAEmulator``: the OA OpenAPI (``POST /v3.0/oa/message/cs``, ``error`` in an HTTP 200 body)
and OAuth v4 (``POST /v4/oa/access_token``: single-use refresh tokens), plus signed webhook
events for the tests to post. ``ZaloBotEmulator``: the Bot Platform's ``/bot<token>/<method>``,
with getUpdates answering one update per call and 408 when idle.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import itertools
import json
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.channels.zalo_oauth import code_challenge
from storage.clock import Clock, utc_now

APP_ID = "2553928453557884079"
APP_SECRET = "app-secret-key"
OA_SECRET_KEY = "oa-secret-key-from-the-webhook-page"
OA_ID = "388613280879808645"
BOT_TOKEN = "1459232241454765289:bot-secret"
BOT_ID = "1459232241454765289"
_msg_ids = itertools.count(1)


@dataclass
class OASent:
    user_id: str
    text: str
    buttons: list[dict[str, Any]]
    image: str | None
    access_token: str
    at: float = field(default_factory=time.monotonic)


@dataclass
class ZaloOAEmulator:
    clock: Clock = utc_now
    access_lifetime: int = 90000  # seconds, as Zalo's expires_in
    sent: list[OASent] = field(default_factory=list)
    accept_buttons: bool = True
    blocked: set[str] = field(default_factory=set)  # -217
    window: dt.timedelta = dt.timedelta(days=7)
    last_interaction: dict[str, dt.datetime] = field(default_factory=dict)  # unknown users: always in window
    per_minute: int | None = None  # answer -32 beyond this many calls in 60 s
    fail_next_with_5xx: int = 0
    calls: int = 0
    rate_limited: int = 0
    refreshes: int = 0
    token_calls: int = 0
    out_of_window_calls: int = 0
    _access: dict[str, dt.datetime] = field(default_factory=dict)
    _refresh: set[str] = field(default_factory=set)
    _codes: dict[str, str] = field(default_factory=dict)  # authorisation code -> PKCE challenge
    _recent: deque[float] = field(default_factory=deque)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v3.0/oa/message/cs", self._message)
        app.router.add_post("/v4/oa/access_token", self._token)
        return app

    # --- what tests use -------------------------------------------------------------------

    def issue_pair(self) -> tuple[str, str]:
        """A fresh valid pair, as the API Explorer would give it."""
        access, refresh = "AT-" + secrets.token_hex(8), "RT-" + secrets.token_hex(8)
        self._access[access] = self.clock() + dt.timedelta(seconds=self.access_lifetime)
        self._refresh.add(refresh)
        return access, refresh

    def issue_code(self, challenge: str) -> str:
        code = "CODE-" + secrets.token_hex(4)
        self._codes[code] = challenge
        return code

    def refresh_valid(self, token: str) -> bool:
        return token in self._refresh

    def access_valid(self, token: str) -> bool:
        return token in self._access and self._access[token] > self.clock()

    def texts_to(self, user_id: str) -> list[str]:
        return [s.text for s in self.sent if s.user_id == user_id]

    # --- the API ---------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.token_calls += 1
        if request.headers.get("secret_key") != APP_SECRET or form.get("app_id") != APP_ID:
            return web.json_response({"error": -14002, "error_name": "Invalid app secret"})
        grant = form.get("grant_type")
        if grant == "refresh_token":
            token = str(form.get("refresh_token", ""))
            if token not in self._refresh:
                return web.json_response({"error": -14014, "error_name": "Invalid refresh token"})
            self._refresh.discard(token)  # single use
        elif grant == "authorization_code":
            code, verifier = str(form.get("code", "")), str(form.get("code_verifier", ""))
            if self._codes.pop(code, None) != code_challenge(verifier):
                return web.json_response({"error": -14003, "error_name": "Invalid authorization code"})
        else:
            return web.json_response({"error": -14001, "error_name": "Invalid grant type"})
        self.refreshes += grant == "refresh_token"
        access, refresh = self.issue_pair()
        return web.json_response(
            {"access_token": access, "refresh_token": refresh, "expires_in": str(self.access_lifetime)}
        )

    def _error(self, code: int, message: str) -> web.Response:
        return web.json_response({"error": code, "message": message})

    async def _message(self, request: web.Request) -> web.Response:
        self.calls += 1
        if self.fail_next_with_5xx > 0:
            self.fail_next_with_5xx -= 1
            return web.Response(status=502, text="Bad Gateway")
        token = request.headers.get("access_token", "")
        if token not in self._access:
            return self._error(-216, "Access token is invalid")
        if self._access[token] <= self.clock():
            return self._error(-220, "access_token is expired or removed")
        if self.per_minute is not None:
            now = time.monotonic()
            while self._recent and now - self._recent[0] > 60:
                self._recent.popleft()
            if len(self._recent) >= self.per_minute:
                self.rate_limited += 1
                return self._error(-32, "Your application reached limit call api")
            self._recent.append(now)
        try:
            body = await request.json()
            user, message = body["recipient"]["user_id"], body["message"]
        except (ValueError, KeyError, TypeError):
            return self._error(-201, "body is invalid")
        if not isinstance(user, str) or not isinstance(message, dict):
            return self._error(-201, "body is invalid")
        text = message.get("text", "")
        if not isinstance(text, str) or len(text) > 2000:
            return self._error(-201, "text is invalid")
        payload = (message.get("attachment") or {}).get("payload") or {}
        buttons = payload.get("buttons", [])
        if buttons and not self.accept_buttons:
            return self._error(-201, "attachment is invalid")
        elements = payload.get("elements") or [{}]
        image = elements[0].get("url") if payload.get("template_type") == "media" else None
        if not text and not buttons and not image:
            return self._error(-201, "message is invalid")
        if user in self.blocked:
            return self._error(-217, "User has blocked invitation from OA")
        last = self.last_interaction.get(user)
        if last is not None and self.clock() - last > self.window:
            self.out_of_window_calls += 1
            return self._error(-230, "User has not interacted with the OA in the past 7 days")
        self.sent.append(OASent(user, text, buttons, image, token))
        message_id = f"{next(_msg_ids):020x}"
        return web.json_response(
            {"error": 0, "message": "Success", "data": {"message_id": message_id, "user_id": user}}
        )


def oa_event(name: str, user: str, *, text: str | None = None, msg_id: str | None = None, **extra: Any) -> dict:
    """A webhook event in Zalo's shape (user_send_text, user_send_image, follow, ...)."""
    stamp = str(int(time.time() * 1000))
    if name in {"follow", "unfollow"}:
        return {"oa_id": OA_ID, "follower": {"id": user}, "event_name": name, "app_id": APP_ID, "timestamp": stamp}
    if name == "user_click_chatnow":
        return {"user_id": user, "oa_id": OA_ID, "app_id": APP_ID, "event_name": name, "timestamp": stamp}
    message: dict[str, Any] = {"msg_id": msg_id or f"m{next(_msg_ids):019x}"}
    if text is not None:
        message["text"] = text
    if name != "user_send_text":
        message["attachments"] = [{"type": "image", "payload": {"url": "https://example.invalid/a.jpg"}}]
    return {
        "app_id": APP_ID,
        "event_name": name,
        "timestamp": stamp,
        "sender": {"id": user},
        "recipient": {"id": OA_ID},
        "message": message,
        **extra,
    }


def signed(event: dict[str, Any], signer: str = APP_ID, key: str = OA_SECRET_KEY) -> tuple[bytes, dict[str, str]]:
    """The raw body and headers Zalo would post for ``event``."""
    body = json.dumps(event, ensure_ascii=False)
    mac = hashlib.sha256(f"{signer}{body}{event.get('timestamp', '')}{key}".encode()).hexdigest()
    return body.encode(), {"X-ZEvent-Signature": f"mac={mac}", "Content-Type": "application/json"}


@dataclass
class BotSent:
    chat_id: str
    text: str
    photo: str | None = None


@dataclass
class ZaloBotEmulator:
    token: str = BOT_TOKEN
    wrap_updates: bool = True  # getUpdates/webhook bodies as {ok, result}, else bare
    sent: list[BotSent] = field(default_factory=list)
    echo: bool = False  # deliver the bot's own messages back as updates (seen on the real platform)
    quota_left: int | None = None  # 429 "Quota exceeded" once spent
    fail_next_with_403: int = 0  # the platform's 403 means "Internal server error"
    poll_wait: float = 0.5  # seconds a getUpdates call waits before 408
    webhook: dict[str, Any] = field(default_factory=dict)
    _updates: deque[dict[str, Any]] = field(default_factory=deque)
    _new: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        return app

    def text_update(self, chat_id: str, text: str, message_id: str | None = None) -> dict[str, Any]:
        message = {
            "from": {"id": chat_id, "display_name": "Người dân", "is_bot": False},
            "chat": {"id": chat_id, "chat_type": "PRIVATE"},
            "text": text,
            "message_id": message_id or f"{next(_msg_ids):020x}",
            "date": int(time.time() * 1000),
        }
        update = {"event_name": "message.text.received", "message": message}
        return {"ok": True, "result": update} if self.wrap_updates else update

    def push(self, update: dict[str, Any]) -> None:
        """Queue an update for getUpdates."""
        self._updates.append(update)
        self._new.set()

    def texts_to(self, chat_id: str) -> list[str]:
        return [s.text for s in self.sent if s.chat_id == chat_id]

    def _fail(self, status: int, description: str) -> web.Response:
        return web.json_response({"ok": False, "error_code": status, "description": description}, status=status)

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return self._fail(401, "Unauthorized")
        method = request.match_info["method"]
        try:
            params = await request.json() if request.can_read_body else {}
        except ValueError:
            return self._fail(400, "Bad Request")
        if method == "getMe":
            return web.json_response({"ok": True, "result": {"id": BOT_ID, "account_name": "bot.Test"}})
        if method == "setWebhook":
            secret = str(params.get("secret_token", ""))
            if not str(params.get("url", "")).startswith("https://") or not 8 <= len(secret) <= 256:
                return self._fail(400, "Bad Request")
            self.webhook = dict(params)
            return web.json_response({"ok": True, "result": {"url": params["url"], "updated_at": 1}})
        if method == "deleteWebhook":
            self.webhook = {}
            return web.json_response({"ok": True, "result": {"url": "", "updated_at": 1}})
        if method == "getUpdates":
            if self.webhook:
                return self._fail(400, "Bad Request")
            if not self._updates:
                self._new.clear()
                try:
                    await asyncio.wait_for(self._new.wait(), self.poll_wait)
                except TimeoutError:
                    return self._fail(408, "Request timeout")
            update = self._updates.popleft()
            return web.json_response(update if "ok" in update else {"ok": True, "result": update})
        if method in {"sendMessage", "sendPhoto"}:
            if self.fail_next_with_403 > 0:
                self.fail_next_with_403 -= 1
                return self._fail(403, "Internal server error")
            if self.quota_left is not None:
                if self.quota_left <= 0:
                    return self._fail(429, "Quota exceeded")
                self.quota_left -= 1
            chat = params.get("chat_id")
            text = params.get("text", params.get("caption", ""))
            if not isinstance(chat, str) or not isinstance(text, str) or len(text) > 2000:
                return self._fail(400, "Bad Request")
            if method == "sendMessage" and not text:
                return self._fail(400, "Bad Request")
            self.sent.append(BotSent(chat, text, params.get("photo")))
            message_id = f"{next(_msg_ids):020x}"
            if self.echo:
                self.push(
                    {
                        "event_name": "message.text.received",
                        "message": {
                            "from": {"id": BOT_ID, "display_name": "Bot", "is_bot": True},
                            "chat": {"id": chat, "chat_type": "PRIVATE"},
                            "text": text,
                            "message_id": message_id,
                            "date": int(time.time() * 1000),
                        },
                    }
                )
            return web.json_response({"ok": True, "result": {"message_id": message_id, "date": 1}})
        return self._fail(404, "Not Found")
