"""A small Telegram Bot API emulator: /bot<token>/<method> with Telegram's shapes and errors.

python-telegram-bot is pointed at it with ``base_url``. It records what the bot
sent, serves getUpdates (long polling), and can answer 429 (retry_after),
400 (text too long, bad callback_data), 403 (blocked user), 502, or late.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

TOKEN = "123456:TEST-token"
_update_ids = itertools.count(1001)  # unique across emulators in one process, like one bot's update_ids
BOT_USER = {"id": 123456, "is_bot": True, "first_name": "Hocvuso", "username": "hocvuso_test_bot"}


@dataclass
class Sent:
    chat_id: int
    text: str
    buttons: list[list[dict[str, Any]]]
    at: float


@dataclass
class TelegramEmulator:
    token: str = TOKEN
    sent: list[Sent] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)
    blocked: set[int] = field(default_factory=set)
    fail_next_with_429: int = 0
    retry_after: int = 1
    max_per_second: float | None = None  # answer 429 when the bot sends faster than this
    fail_next_with_5xx: int = 0  # answer this many requests with 502 Bad Gateway
    delay: float = 0.0  # seconds before each answer (timeouts)
    too_many_requests: int = 0
    webhook: dict[str, Any] = field(default_factory=dict)
    _updates: list[dict[str, Any]] = field(default_factory=list)
    _new_updates: asyncio.Event = field(default_factory=asyncio.Event)
    _recent: deque[float] = field(default_factory=deque)
    _message_ids: int = 0
    _per_chat: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    _waiters: dict[int, list[tuple[int, asyncio.Future[None]]]] = field(default_factory=lambda: defaultdict(list))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        return app

    # --- what tests use -------------------------------------------------------------------

    def make_text_update(self, chat_id: int, text: str) -> dict[str, Any]:
        self._message_ids += 1
        return {
            "update_id": next(_update_ids),
            "message": {
                "message_id": self._message_ids,
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private", "first_name": "Dân"},
                "from": {"id": chat_id, "is_bot": False, "first_name": "Dân"},
                "text": text,
                **_command_entity(text),
            },
        }

    def make_button_update(self, chat_id: int, data: str) -> dict[str, Any]:
        self._message_ids += 1
        update_id = next(_update_ids)
        return {
            "update_id": update_id,
            "callback_query": {
                "id": f"cb{update_id}",
                "chat_instance": "ci",
                "from": {"id": chat_id, "is_bot": False, "first_name": "Dân"},
                "data": data,
                "message": {
                    "message_id": self._message_ids,
                    "date": int(time.time()),
                    "chat": {"id": chat_id, "type": "private", "first_name": "Dân"},
                    "from": BOT_USER,
                    "text": "…",
                },
            },
        }

    def make_member_update(self, chat_id: int, status: str) -> dict[str, Any]:
        """my_chat_member: the person blocked ("kicked") or unblocked ("member") the bot."""
        person = {"id": chat_id, "is_bot": False, "first_name": "Dân"}
        old, new = ("member", "kicked") if status == "kicked" else ("kicked", "member")

        def member(state: str) -> dict[str, Any]:
            return {"user": BOT_USER, "status": state, **({"until_date": 0} if state == "kicked" else {})}

        return {
            "update_id": next(_update_ids),
            "my_chat_member": {
                "chat": {"id": chat_id, "type": "private", "first_name": "Dân"},
                "from": person,
                "date": int(time.time()),
                "old_chat_member": member(old),
                "new_chat_member": member(new),
            },
        }

    def queue_update(self, update: dict[str, Any]) -> None:
        """Make an update available to getUpdates (long polling)."""
        self._updates.append(update)
        self._new_updates.set()

    def texts_to(self, chat_id: int) -> list[str]:
        return self._per_chat.get(chat_id, [])

    def by_chat(self) -> dict[int, list[str]]:
        return dict(self._per_chat)

    async def wait_for_texts(self, chat_id: int, count: int, seconds: float) -> bool:
        """Wait until ``count`` messages were sent to the chat (without polling); False on timeout."""
        if len(self._per_chat.get(chat_id, ())) >= count:
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[chat_id].append((count, waiter))
        try:
            await asyncio.wait_for(waiter, seconds)
        except TimeoutError:
            return False
        return True

    # --- the API ----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        params = await _params(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_next_with_5xx > 0:
            self.fail_next_with_5xx -= 1
            return _error(502, "Bad Gateway")
        method = request.match_info["method"].lower()
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return _error(404, "Not Found: method not found")
        return await handler(params)

    async def _api_getme(self, _params: dict[str, Any]) -> web.Response:
        return _ok(BOT_USER)

    async def _api_setwebhook(self, params: dict[str, Any]) -> web.Response:
        self.webhook = params
        return _ok(True)

    async def _api_deletewebhook(self, _params: dict[str, Any]) -> web.Response:
        self.webhook = {}
        return _ok(True)

    async def _api_answercallbackquery(self, params: dict[str, Any]) -> web.Response:
        if not params.get("callback_query_id"):
            return _error(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        self.answered.append(str(params["callback_query_id"]))
        return _ok(True)

    async def _api_getupdates(self, params: dict[str, Any]) -> web.Response:
        offset = int(params.get("offset") or 0)
        self._updates = [u for u in self._updates if u["update_id"] >= offset]
        if not self._updates:
            self._new_updates.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_updates.wait(), float(params.get("timeout") or 0))
        return _ok([u for u in self._updates if u["update_id"] >= offset][:100])

    async def _api_sendmessage(self, params: dict[str, Any]) -> web.Response:
        return self._deliver(params, params.get("text", ""))

    async def _api_sendphoto(self, params: dict[str, Any]) -> web.Response:
        return self._deliver(params, f"[photo {params.get('photo', '')}]")

    def _deliver(self, params: dict[str, Any], text: str) -> web.Response:
        chat_id = int(params["chat_id"])
        if self.fail_next_with_429 > 0:
            self.fail_next_with_429 -= 1
            return self._too_many()
        if self.max_per_second is not None:
            now = time.monotonic()
            while self._recent and now - self._recent[0] > 1.0:
                self._recent.popleft()
            if len(self._recent) >= self.max_per_second:
                return self._too_many()
            self._recent.append(now)
        if chat_id in self.blocked:
            return _error(403, "Forbidden: bot was blocked by the user")
        if len(text) > 4096:
            return _error(400, "Bad Request: message is too long")
        markup = params.get("reply_markup")  # a JSON string in a form, an object in a JSON body
        rows = (json.loads(markup) if isinstance(markup, str) else markup or {}).get("inline_keyboard", [])
        for row in rows:
            for button in row:
                if "callback_data" in button and not 1 <= len(button["callback_data"].encode()) <= 64:
                    return _error(400, "Bad Request: BUTTON_DATA_INVALID")
        self.sent.append(Sent(chat_id, text, rows, time.monotonic()))
        self._per_chat[chat_id].append(text)
        self._wake(chat_id)
        self._message_ids += 1
        return _ok(
            {
                "message_id": self._message_ids,
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private"},
                "from": BOT_USER,
                "text": text,
            }
        )

    def _wake(self, chat_id: int) -> None:
        waiting = self._waiters.get(chat_id)
        if not waiting:
            return
        have = len(self._per_chat[chat_id])
        for count, waiter in waiting:
            if count <= have and not waiter.done():
                waiter.set_result(None)
        waiting[:] = [(count, waiter) for count, waiter in waiting if not waiter.done()]

    def _too_many(self) -> web.Response:
        self.too_many_requests += 1
        return web.json_response(
            {
                "ok": False,
                "error_code": 429,
                "description": f"Too Many Requests: retry after {self.retry_after}",
                "parameters": {"retry_after": self.retry_after},
            },
            status=429,
            headers={"Retry-After": str(self.retry_after)},
        )


async def _params(request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/json":
        return dict(await request.json())
    if request.content_type in {"application/x-www-form-urlencoded", "multipart/form-data"}:
        form = await request.post()
        return {k: v if isinstance(v, str) else f"<file {len(v.file.read())} bytes>" for k, v in form.items()}
    return dict(request.query)


def _command_entity(text: str) -> dict[str, Any]:
    """Telegram marks a leading /command as an entity (python-telegram-bot's CommandHandler relies on it)."""
    if not text.startswith("/"):
        return {}
    command = text.split(maxsplit=1)[0]
    return {"entities": [{"type": "bot_command", "offset": 0, "length": len(command.encode("utf-16-le")) // 2}]}


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _error(code: int, description: str) -> web.Response:
    return web.json_response({"ok": False, "error_code": code, "description": description}, status=code)
