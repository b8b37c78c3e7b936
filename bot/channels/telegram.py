"""Telegram through python-telegram-bot 22, used as a transport only.

Conversation state lives in storage/, not in PTB's ConversationHandler or
persistence. Updates arrive by webhook (with a secret token) or long polling;
both go through :meth:`TelegramChannel.handle_update`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import logging
import os
import warnings
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram import Bot, Update
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.warnings import PTBUserWarning

from bot.channels.telegram_http import AiohttpRequest
from bot.channels.text import split_text, storable
from bot.dispatcher import Dispatcher, Envelope
from bot.ratelimit import RateLimits
from bot.transport import Rejected, RetryLater, Unreachable
from flows.types import Inbound, InboundKind, Reply
from storage.clock import Clock, utc_now
from storage.repo import set_reachable

# Opt in to PTB's timedelta-valued RetryAfter.retry_after (no deprecation warning on every 429).
os.environ.setdefault("PTB_TIMEDELTA", "true")
# Texts go out with Bot.do_api_request, which suggests Bot.send_message each time (see TelegramTransport).
warnings.filterwarnings("ignore", message=r"Please use 'Bot\.sendMessage'", category=PTBUserWarning)

log = logging.getLogger(__name__)

CHANNEL = "telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
TEXT_LIMIT = 4096
ALLOWED_UPDATES = ("message", "callback_query", "my_chat_member")
POLL_TIMEOUT_SECONDS = 25
# Concurrent Bot API requests: the sender's concurrency, and the size of the HTTP pool.
CONNECTIONS = 16


def make_bot(token: str, base_url: str) -> Bot:
    """A Bot on aiohttp (see bot.channels.telegram_http) whose pool fits the sender's concurrency."""
    return Bot(
        token,
        base_url=base_url,
        request=AiohttpRequest(connections=CONNECTIONS),
        get_updates_request=AiohttpRequest(connections=1, read_timeout=POLL_TIMEOUT_SECONDS + 10),
    )


def keyboard(reply: Reply) -> dict[str, Any] | None:
    """An InlineKeyboardMarkup, one button per row: long Vietnamese labels stay readable on small phones."""
    if not reply.buttons:
        return None
    return {"inline_keyboard": [[{"text": b.label, "callback_data": b.id}] for b in reply.buttons]}


def message_text(reply: Reply) -> str:
    return "\n\n".join([reply.text, *(f"🔗 {link.label}: {link.url}" for link in reply.links)])


class TelegramTransport:
    """Sends replies with the Bot API; maps its errors to the outbox's.

    Texts go through ``Bot.do_api_request("sendMessage", ...)`` rather than ``Bot.send_message``: the
    same request, the same errors (RetryAfter, Forbidden...), but the keyboard is not built as PTB objects
    and the Message Telegram sends back is not parsed into them. Nothing reads it, and at full load that
    took a quarter of the process's time.
    """

    channel = CHANNEL

    def __init__(self, bot: Bot, limits: RateLimits, images_dir: Path) -> None:
        self.bot = bot
        self.limits = limits
        self._images_dir = images_dir
        self._slots = asyncio.Semaphore(CONNECTIONS)

    async def send(self, recipient: str, reply: Reply) -> None:
        async with self._slots:
            await self._send(int(recipient), reply)

    async def _send(self, chat_id: int, reply: Reply) -> None:
        try:
            if reply.image:
                await self.bot.send_photo(chat_id, photo=self._photo(reply.image))
            pieces = split_text(message_text(reply), TEXT_LIMIT)
            for index, piece in enumerate(pieces):
                markup = keyboard(reply) if index == len(pieces) - 1 else None
                message = {"chat_id": chat_id, "text": piece, **({"reply_markup": markup} if markup else {})}
                await self.bot.do_api_request("sendMessage", api_kwargs=message)
        except RetryAfter as exc:
            wait = exc.retry_after
            raise RetryLater(str(exc), wait.total_seconds() if isinstance(wait, dt.timedelta) else wait) from exc
        except Forbidden as exc:
            raise Unreachable(str(exc)) from exc
        except BadRequest as exc:
            raise Rejected(str(exc)) from exc
        except (TimedOut, NetworkError) as exc:
            raise RetryLater(f"{type(exc).__name__}: {exc}") from exc

    def _photo(self, image: str) -> str | bytes:
        return image if image.startswith("https://") else (self._images_dir / image).read_bytes()


class MalformedUpdate(ValueError):
    """An update whose fields make no sense for a chat (a missing chat, an id that is not a number...)."""


def envelope_from_update(update: Update, now: dt.datetime) -> Envelope | None:
    """Normalise an update into an inbound event, or None for what the bot ignores."""
    event_id = str(update.update_id)
    query = update.callback_query
    if query is not None:
        if query.message is None or query.message.chat.type != "private":
            return None
        inbound = Inbound(InboundKind.BUTTON, now, button_id=query.data or "")
        return Envelope(CHANNEL, event_id, str(int(query.message.chat.id)), inbound)
    message = update.message
    if message is None or message.chat.type != "private":
        return None  # groups, channels, edits: not a resident talking to the bot
    at = message.date.astimezone(dt.UTC) if message.date else now
    if message.text is None:
        inbound = Inbound(InboundKind.OTHER, at)
    elif message.text.strip().lower().split("@")[0].split(" ")[0] == "/start":
        inbound = Inbound(InboundKind.START, at, text=message.text)
    else:
        inbound = Inbound(InboundKind.TEXT, at, text=message.text)
    return Envelope(CHANNEL, event_id, str(int(message.chat.id)), inbound)


class TelegramChannel:
    """Receives updates (webhook or polling) and hands them to the dispatcher."""

    def __init__(
        self,
        bot: Bot,
        dispatcher: Dispatcher,
        secret: str,
        sessions: async_sessionmaker[AsyncSession],
        clock: Clock = utc_now,
    ) -> None:
        self.bot = bot
        self.secret = secret
        self._dispatcher = dispatcher
        self._sessions = sessions
        self._clock = clock
        self._background: set[asyncio.Task[None]] = set()

    def read(self, update: Update) -> Envelope | tuple[str, bool] | None:
        """What an update means: an inbound event, a (chat id, reachable) change, or None (ignored).

        Raises :class:`MalformedUpdate` for a shape PTB parsed but that makes no sense (no chat...).
        """
        try:
            member = update.my_chat_member
            if member is not None:
                if member.chat.type != "private":
                    return None
                # The person blocked (status "kicked") or unblocked the bot: Telegram's own signal, before any 403.
                return str(int(member.chat.id)), member.new_chat_member.status != "kicked"
            envelope = envelope_from_update(update, self._clock())
        except (AttributeError, TypeError, ValueError, OverflowError) as exc:
            raise MalformedUpdate(f"{type(exc).__name__}: {exc}") from exc
        if envelope is not None and not (storable(envelope.sender_id) and storable(envelope.inbound.text)):
            raise MalformedUpdate("a chat id or a text the database cannot store")
        return envelope

    async def handle_update(self, update: Update, meaning: Envelope | tuple[str, bool] | None = None) -> bool:
        """Commit the update's effects; False for a redelivery or an ignored update. ``meaning``: what
        :meth:`read` made of it, when the caller has read it already."""
        meaning = meaning if meaning is not None else self.read(update)
        if meaning is None:
            return False
        if isinstance(meaning, tuple):
            chat_id, reachable = meaning
            await set_reachable(self._sessions, CHANNEL, chat_id, reachable, self._clock())
            return True
        processed = await self._dispatcher.handle(meaning)
        if update.callback_query is not None:
            self._in_background(self._answer(update.callback_query.id))
        return processed

    async def webhook(self, request: web.Request) -> web.Response:
        """POST /telegram/webhook: check the secret, commit, then acknowledge (sending happens after)."""
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.secret.encode()):
            raise web.HTTPForbidden(text="wrong or missing secret token")
        try:
            data = await request.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise web.HTTPBadRequest(text="body must be JSON") from exc
        if not isinstance(data, dict) or type(data.get("update_id")) is not int:
            raise web.HTTPBadRequest(text="not a Telegram update")
        try:
            update = Update.de_json(data, self.bot)
            meaning = self.read(update)
        except Exception as exc:  # any shape PTB or we cannot read is the sender's fault, not ours
            raise web.HTTPBadRequest(text="not a Telegram update") from exc
        await self.handle_update(update, meaning)
        return web.Response(text="ok")

    async def poll(self) -> None:
        """Long polling: fetch, commit each update, then move the offset on."""
        offset: int | None = None
        backoff = 1.0
        while True:
            try:
                updates = await self.bot.get_updates(
                    offset=offset, timeout=POLL_TIMEOUT_SECONDS, allowed_updates=ALLOWED_UPDATES
                )
                for update in updates:
                    try:
                        await self.handle_update(update)
                    except MalformedUpdate as exc:
                        log.warning("skipped update %s: %s", update.update_id, exc)
                    offset = update.update_id + 1
                backoff = 1.0
            except RetryAfter as exc:
                wait = exc.retry_after
                await asyncio.sleep(wait.total_seconds() if isinstance(wait, dt.timedelta) else wait)
            except (TelegramError, OSError) as exc:
                log.warning("polling failed (%s); retrying in %.0f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 60.0)

    async def _answer(self, query_id: str) -> None:
        try:
            await self.bot.answer_callback_query(query_id)
        except TelegramError as exc:  # too old or already answered: harmless
            log.info("answerCallbackQuery failed: %s", exc)

    def _in_background(self, coroutine: object) -> None:
        task = asyncio.ensure_future(coroutine)  # type: ignore[arg-type]
        self._background.add(task)
        task.add_done_callback(self._background.discard)
