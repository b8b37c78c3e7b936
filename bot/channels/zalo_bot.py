"""The Zalo Bot Platform (bot-api.zaloplatforms.com): a Telegram-like API, text only.

Facts and their confidence: ../shared/research/zalo-bot.md. Handled both ways where sources
disagree: the webhook body wrapped in ``{ok, result}`` or bare, getUpdates answering one update
or a list. There are no buttons: options are numbered and answered with a number.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hmac
import json
import logging
from typing import Any

import aiohttp
from aiohttp import web

from bot.channels.text import event_key, split_text, storable
from bot.dispatcher import Dispatcher, Envelope
from bot.ratelimit import RateLimits
from bot.render import numbered_text
from bot.transport import Rejected, RetryLater
from flows.catalog import Catalog
from flows.types import Inbound, InboundKind, Reply
from storage.clock import Clock, utc_now

log = logging.getLogger(__name__)

CHANNEL = "zalo_bot"
WEBHOOK_PATH = "/zalo/bot/webhook"
SECRET_HEADER = "X-Bot-Api-Secret-Token"
TEXT_LIMIT = 2000
POLL_TIMEOUT_SECONDS = 30
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=15)
POLL_HTTP_TIMEOUT = aiohttp.ClientTimeout(total=POLL_TIMEOUT_SECONDS + 15)
TEXT_EVENT = "message.text.received"


class MalformedUpdate(ValueError):
    """An update whose fields make no sense (no chat, an id that is not text...)."""


class BotApiError(Exception):
    """The Bot API answered ``ok: false`` (or not JSON)."""

    def __init__(self, status: int, code: int | None, description: str) -> None:
        super().__init__(f"Zalo Bot API error {code or status}: {description}")
        self.status = status
        self.code = code or status


def unwrap(data: Any) -> Any:
    """The update inside ``{"ok": true, "result": {...}}``, or the body itself when it is bare."""
    if isinstance(data, dict) and data.get("ok") is True and "result" in data:
        return data["result"]
    return data


def _id(value: Any, what: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > 100 or not storable(value):
        raise MalformedUpdate(f"{what} is missing or not an id")
    return value


def read_update(update: Any, bot_id: str, now: dt.datetime) -> Envelope | None:
    """An inbound event, or None for what the bot ignores (groups, its own echoes, unknown events)."""
    if not isinstance(update, dict) or not isinstance(update.get("event_name"), str):
        raise MalformedUpdate("no event_name")
    name = update["event_name"]
    if not name.startswith("message."):
        return None
    message = update.get("message")
    if not isinstance(message, dict):
        raise MalformedUpdate("no message")
    sender, chat = message.get("from"), message.get("chat")
    if not isinstance(sender, dict) or not isinstance(chat, dict):
        raise MalformedUpdate("no sender or chat")
    sender_id = _id(sender.get("id"), "message.from.id")
    if sender.get("is_bot") is True or (bot_id and sender_id == bot_id):
        return None  # the bot's own message, echoed back
    if str(chat.get("chat_type", "PRIVATE")).upper() != "PRIVATE":
        return None  # groups are in beta and only mention the bot: not a resident's conversation
    chat_id = _id(chat.get("id"), "message.chat.id")
    if "message_id" in message:
        event_id = _id(message["message_id"], "message.message_id")
    else:  # seen missing in some payloads: the send time still tells two messages apart
        event_id = event_key("sent", chat_id, _id(message.get("date"), "message.date"))
    if name != TEXT_EVENT:
        return Envelope(CHANNEL, event_id, chat_id, Inbound(InboundKind.OTHER, now))
    text = message.get("text")
    if not isinstance(text, str) or not storable(text):
        raise MalformedUpdate("message.text is not text")
    kind = InboundKind.START if text.strip().lower().split(" ")[0] == "/start" else InboundKind.TEXT
    return Envelope(CHANNEL, event_id, chat_id, Inbound(kind, now, text=text))


class ZaloBotApi:
    """``POST {base}{token}/{method}`` with a JSON body; the ``result`` of ``{ok: true, result}``."""

    def __init__(self, http: aiohttp.ClientSession, token: str, base_url: str) -> None:
        self._http = http
        self._base = f"{base_url}{token}/"

    async def call(self, method: str, wait: aiohttp.ClientTimeout = HTTP_TIMEOUT, **params: Any) -> Any:
        async with self._http.post(self._base + method, json=params, timeout=wait) as response:
            raw = await response.read()
            status = response.status
        try:
            data = json.loads(raw)
        except ValueError:
            raise BotApiError(status, None, "not JSON") from None
        if not isinstance(data, dict) or data.get("ok") is not True:
            data = data if isinstance(data, dict) else {}
            code = data.get("error_code")
            raise BotApiError(status, code if isinstance(code, int) else None, str(data.get("description", ""))[:200])
        return data.get("result")


class ZaloBotChannel:
    """Receives updates (webhook or polling) and hands them to the dispatcher."""

    def __init__(self, api: ZaloBotApi, dispatcher: Dispatcher, secret: str, clock: Clock = utc_now) -> None:
        self.api = api
        self.secret = secret
        self.bot_id = ""
        self._dispatcher = dispatcher
        self._clock = clock

    async def identify(self) -> None:
        """Learn the bot's own id (its echoes are ignored); a failure only leaves the is_bot check."""
        try:
            me = await self.api.call("getMe")
            self.bot_id = str(me.get("id", "")) if isinstance(me, dict) else ""
        except (BotApiError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("Zalo Bot getMe failed: %s", exc)

    async def webhook(self, request: web.Request) -> web.Response:
        """POST /zalo/bot/webhook: check the secret, commit, then acknowledge."""
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.secret.encode()):
            raise web.HTTPForbidden(text="wrong or missing secret token")
        try:
            data = json.loads(await request.read())
        except (UnicodeDecodeError, ValueError) as exc:
            raise web.HTTPBadRequest(text="body must be JSON") from exc
        try:
            envelope = read_update(unwrap(data), self.bot_id, self._clock())
        except MalformedUpdate as exc:
            raise web.HTTPBadRequest(text=f"not a Zalo Bot update: {exc}") from exc
        if envelope is not None:
            await self._dispatcher.handle(envelope)
        return web.json_response({"message": "Success"})

    async def poll(self) -> None:
        """getUpdates: one update per call, 408 when none came. Events sent while the bot is down are
        lost (the API has no offset): use the webhook in production."""
        backoff = 1.0
        while True:
            try:
                result = await self.api.call("getUpdates", POLL_HTTP_TIMEOUT, timeout=str(POLL_TIMEOUT_SECONDS))
                for update in result if isinstance(result, list) else [result]:
                    try:
                        envelope = read_update(unwrap(update), self.bot_id, self._clock())
                    except MalformedUpdate as exc:
                        log.warning("skipped a Zalo Bot update: %s", exc)
                        continue
                    if envelope is not None:
                        await self._dispatcher.handle(envelope)
                backoff = 1.0
            except BotApiError as exc:
                if exc.code == 408:  # nothing arrived during the long poll
                    continue
                log.warning("Zalo Bot polling failed (%s); retrying in %.0f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.warning("Zalo Bot polling failed (%s); retrying in %.0f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)


class ZaloBotTransport:
    """sendMessage (≤ 2,000 characters a piece) and sendPhoto by URL; options as numbered text."""

    channel = CHANNEL

    def __init__(self, api: ZaloBotApi, catalog: Catalog, limits: RateLimits) -> None:
        self._api = api
        self._catalog = catalog
        self.limits = limits

    async def send(self, recipient: str, reply: Reply) -> None:
        try:
            if reply.image and reply.image.startswith("https://"):
                await self._api.call("sendPhoto", chat_id=recipient, photo=reply.image)
            text = numbered_text(self._catalog, dataclasses.replace(reply, image=None))
            for piece in split_text(text, TEXT_LIMIT):
                await self._api.call("sendMessage", chat_id=recipient, text=piece)
        except BotApiError as exc:
            # 400 bad request and 404 are for good; 401 (token), 403 ("internal server error", sic),
            # 429 (the plan's monthly quota) and 5xx may pass.
            if exc.code in {400, 404}:
                raise Rejected(str(exc)) from exc
            raise RetryLater(str(exc)) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryLater(f"{type(exc).__name__}: {exc}") from exc
