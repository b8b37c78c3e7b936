"""The commune's Zalo Official Account (OA API v3): webhook in, consultation messages out.

Facts and their confidence: ../shared/research/zalo-oa.md. What is uncertain there is handled
both ways or configurable: the signature's first term (app id, or the OA id), buttons in
consultation messages (off by default; a refusal falls back to numbered text for good).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.channels.text import event_key, split_text, storable
from bot.channels.zalo_oauth import TokenError, ZaloTokens
from bot.dispatcher import Dispatcher, Envelope
from bot.ratelimit import RateLimits
from bot.render import numbered_text
from bot.transport import OutOfWindow, Rejected, RetryLater, Unreachable
from flows.catalog import Catalog
from flows.types import Inbound, InboundKind, Reply
from storage.clock import Clock, utc_now
from storage.repo import set_reachable, touch_account

log = logging.getLogger(__name__)

CHANNEL = "zalo_oa"
WEBHOOK_PATH = "/zalo/oa/webhook"
SIGNATURE_HEADER = "X-ZEvent-Signature"
TEXT_LIMIT = 2000
MAX_BUTTONS = 5
BUTTON_TITLE_LIMIT = 100
# A tapped button sends this prefix and the button's id as a hidden text ("oa.query.hide").
BUTTON_PAYLOAD_PREFIX = "#b:"
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=15)
RATE_LIMIT_PAUSE_SECONDS = 30.0  # after -32: the quota is counted a minute at a time

# Zalo's error codes (research §5.1), by what the sender should do.
TOKEN_ERRORS = {-216, -220}
RATE_ERRORS = {-32}
UNREACHABLE_ERRORS = {-213, -217, -227}  # not following the OA, blocked it, banned or gone
WINDOW_ERRORS = {-230, -232}  # no interaction in the past 7 days
REJECTED_ERRORS = {-100, -201, -233, -244}  # this message will never be accepted as it is
BUTTON_REFUSALS = {-201, -233}  # with buttons: the template is what was refused
# Any other code (quota, an OA or app not set up) is retried with backoff, then shown as failed.

USER_MEDIA_EVENTS = {
    "user_send_image",
    "user_send_gif",
    "user_send_sticker",
    "user_send_audio",
    "user_send_video",
    "user_send_file",
    "user_send_link",
    "user_send_location",
    "user_send_business_card",
}


class MalformedEvent(ValueError):
    """A signed event whose fields make no sense (no sender, an id that is not text...)."""


@dataclass(frozen=True)
class Follow:
    """Someone followed (or unfollowed) the OA."""

    user_id: str
    following: bool


@dataclass(frozen=True)
class Touch:
    """An interaction without a message (the "Nhắn tin" button): it reopens the sending window."""

    user_id: str


def signature(app_or_oa_id: str, body: str, timestamp: str, secret_key: str) -> str:
    """``mac`` = SHA-256 hex of app id + raw body + timestamp + OA secret key (a plain hash, not HMAC)."""
    # surrogatepass: a forged timestamp such as "\ud800" (JSON allows it) is hashed, not a crash
    return hashlib.sha256(f"{app_or_oa_id}{body}{timestamp}{secret_key}".encode("utf-8", "surrogatepass")).hexdigest()


def _text_field(value: Any, what: str, limit: int = 100) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > limit or not storable(value):
        raise MalformedEvent(f"{what} is missing or not an id")
    return value


def read_event(data: dict[str, Any], now: dt.datetime) -> Envelope | Follow | Touch | None:
    """What a (signed) webhook event means for the bot; None for what it ignores (echoes, receipts...)."""
    name = data.get("event_name")
    if not isinstance(name, str):
        raise MalformedEvent("no event_name")
    if name in {"follow", "unfollow"}:
        follower = data.get("follower")
        if not isinstance(follower, dict):
            raise MalformedEvent("no follower")
        return Follow(_text_field(follower.get("id"), "follower.id"), name == "follow")
    if name == "user_click_chatnow":
        return Touch(_text_field(data.get("user_id"), "user_id"))
    if name != "user_send_text" and name not in USER_MEDIA_EVENTS:
        return None  # the OA's own sends (oa_send_*), delivery and read receipts, and events we do not use
    sender, message = data.get("sender"), data.get("message")
    if not isinstance(sender, dict) or not isinstance(message, dict):
        raise MalformedEvent("no sender or message")
    user = _text_field(sender.get("id"), "sender.id")
    event_id = _text_field(message.get("msg_id"), "message.msg_id")
    if name != "user_send_text":
        return Envelope(CHANNEL, event_id, user, Inbound(InboundKind.OTHER, now))
    text = message.get("text")
    if not isinstance(text, str) or not storable(text):
        raise MalformedEvent("message.text is not text")
    if text.startswith(BUTTON_PAYLOAD_PREFIX):
        return Envelope(
            CHANNEL,
            event_id,
            user,
            Inbound(InboundKind.BUTTON, now, button_id=text[len(BUTTON_PAYLOAD_PREFIX) :].strip()),
        )
    return Envelope(CHANNEL, event_id, user, Inbound(InboundKind.TEXT, now, text=text))


class ZaloOAChannel:
    """POST /zalo/oa/webhook: check the signature, commit, then answer 200 (sending happens after)."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        sessions: async_sessionmaker[AsyncSession],
        app_id: str,
        secret_key: str,
        oa_id: str = "",
        clock: Clock = utc_now,
    ) -> None:
        self._dispatcher = dispatcher
        self._sessions = sessions
        self._signers = [signer for signer in (app_id, oa_id) if signer]
        self._secret_key = secret_key
        self._clock = clock

    def signed(self, body: str, data: dict[str, Any], given: str) -> bool:
        mac = given.strip()
        mac = mac[4:] if mac.startswith("mac=") else mac
        timestamp = data.get("timestamp", "")
        timestamp = str(timestamp) if isinstance(timestamp, str | int) and not isinstance(timestamp, bool) else ""
        matched = False
        for signer in self._signers:  # compare against every candidate: no early exit to time
            expected = signature(signer, body, timestamp, self._secret_key)
            matched |= hmac.compare_digest(expected.encode(), mac.lower().encode())
        return matched

    async def webhook(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = raw.decode("utf-8")
            data = json.loads(body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise web.HTTPBadRequest(text="body must be JSON in UTF-8") from exc
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text="not a Zalo event")
        given = request.headers.get(SIGNATURE_HEADER)
        if given is None and "event_name" not in data:
            # Zalo's console checks the URL when it is saved, with a request that may not be signed.
            return web.json_response({"ok": True})
        if given is None or not self.signed(body, data, given):
            raise web.HTTPUnauthorized(text="wrong or missing X-ZEvent-Signature")
        now = self._clock()
        try:
            meaning = read_event(data, now)
        except MalformedEvent as exc:
            raise web.HTTPBadRequest(text=f"not a Zalo event: {exc}") from exc
        if isinstance(meaning, Follow):
            await set_reachable(self._sessions, CHANNEL, meaning.user_id, meaning.following, now)
            if meaning.following:  # a greeting, once per follow event (its timestamp is its id)
                event_id = event_key("follow", meaning.user_id, str(data.get("timestamp", "")))
                start = Inbound(InboundKind.START, now)
                await self._dispatcher.handle(Envelope(CHANNEL, event_id, meaning.user_id, start))
        elif isinstance(meaning, Touch):
            await touch_account(self._sessions, CHANNEL, meaning.user_id, now)
        elif meaning is not None:
            await self._dispatcher.handle(meaning)
        return web.json_response({"ok": True})


class ZaloOATransport:
    """Consultation messages (``POST /v3.0/oa/message/cs``); Zalo's ``error`` field is read even on HTTP 200."""

    channel = CHANNEL

    def __init__(
        self,
        http: aiohttp.ClientSession,
        tokens: ZaloTokens,
        catalog: Catalog,
        api_url: str,
        limits: RateLimits,
        window: dt.timedelta,
        buttons: bool = False,
    ) -> None:
        self._http = http
        self._tokens = tokens
        self._catalog = catalog
        self._url = api_url.rstrip("/") + "/v3.0/oa/message/cs"
        self.limits = limits
        self.window = window
        self.buttons = buttons

    async def send(self, recipient: str, reply: Reply) -> None:
        if reply.image and reply.image.startswith("https://"):
            await self._post(recipient, _image_message(reply.image))
        if self.buttons and 0 < len(reply.buttons) <= MAX_BUTTONS:
            try:
                await self._send_text(recipient, self._text(reply, numbered=False), _buttons(reply))
                return
            except CodedRejection as exc:
                if exc.code not in BUTTON_REFUSALS:
                    raise
                log.warning("Zalo OA refused buttons (%s): sending numbered text from now on", exc)
                self.buttons = False
        await self._send_text(recipient, self._text(reply, numbered=True), None)

    def _text(self, reply: Reply, numbered: bool) -> str:
        text_only = dataclasses.replace(reply, image=None)
        if numbered:
            return numbered_text(self._catalog, text_only)
        return numbered_text(self._catalog, dataclasses.replace(text_only, buttons=()))

    async def _send_text(self, recipient: str, text: str, attachment: dict[str, Any] | None) -> None:
        pieces = split_text(text, TEXT_LIMIT)
        for index, piece in enumerate(pieces):
            message: dict[str, Any] = {"text": piece}
            if attachment is not None and index == len(pieces) - 1:
                message["attachment"] = attachment
            await self._post(recipient, message)

    async def _post(self, recipient: str, message: dict[str, Any]) -> None:
        body = {"recipient": {"user_id": recipient}, "message": message}
        try:
            token = await self._tokens.access_token()
            for attempt in (1, 2):
                code, reason = await self._call(token, body)
                if code == 0:
                    return
                if code in TOKEN_ERRORS and attempt == 1:  # refresh once, retry once
                    token = await self._tokens.refresh(token)
                    continue
                raise _error(code, reason)
        except TokenError as exc:
            raise RetryLater(str(exc)) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RetryLater(f"{type(exc).__name__}: {exc}") from exc

    async def _call(self, token: str, body: dict[str, Any]) -> tuple[int, str]:
        async with self._http.post(self._url, json=body, headers={"access_token": token}, timeout=HTTP_TIMEOUT) as r:
            if r.status >= 500 or r.status == 429:
                raise RetryLater(f"Zalo answered HTTP {r.status}")
            if r.status != 200:
                raise Rejected(f"Zalo answered HTTP {r.status}")
            try:
                data = await r.json(content_type=None)
            except ValueError as exc:
                raise RetryLater("Zalo answered HTTP 200 without JSON") from exc
        if not isinstance(data, dict):
            raise RetryLater("Zalo answered something other than an object")
        code = data.get("error", 0)
        return (code if isinstance(code, int) else -1), str(data.get("message", ""))[:200]


class CodedRejection(Rejected):
    """Zalo refused this message for good; ``code`` is its error code."""

    def __init__(self, reason: str, code: int) -> None:
        super().__init__(reason)
        self.code = code


def _error(code: int, reason: str) -> Exception:
    """The outbox's error for Zalo's error code."""
    said = f"Zalo error {code}: {reason}"
    if code in RATE_ERRORS:
        return RetryLater(said, RATE_LIMIT_PAUSE_SECONDS)
    if code in UNREACHABLE_ERRORS:
        return Unreachable(said)
    if code in WINDOW_ERRORS:
        return OutOfWindow(said)
    if code in REJECTED_ERRORS:
        return CodedRejection(said, code)
    return RetryLater(said)


def _buttons(reply: Reply) -> dict[str, Any]:
    """Numbered buttons ("1. ..."): a tap sends the button's id as a hidden text; typing the number works too."""
    return {
        "type": "template",
        "payload": {
            "buttons": [
                {
                    "title": f"{n}. {button.label}"[:BUTTON_TITLE_LIMIT],
                    "type": "oa.query.hide",
                    "payload": BUTTON_PAYLOAD_PREFIX + button.id,
                }
                for n, button in enumerate(reply.buttons, start=1)
            ]
        },
    }


def _image_message(url: str) -> dict[str, Any]:
    return {
        "attachment": {
            "type": "template",
            "payload": {"template_type": "media", "elements": [{"media_type": "image", "url": url}]},
        }
    }
