"""The peer: the same VNeID module as a python-telegram-bot 22 developer would write it, as its own process.

Written the way PTB's documentation recommends, not tuned either way:
- a ``ConversationHandler`` with ``persistent=True`` and a ``name``, one state per step of the module
  (texts and buttons read from content/, so the replies match ours in number and size);
- ``PicklePersistence`` with its defaults (one file, ``update_interval`` 60 s, ``on_flush=False``);
- the webhook as in PTB's custom-webhook example: a small aiohttp server that checks the secret token
  and puts ``Update.de_json(...)`` on ``application.update_queue``, then answers 200;
- ``Application`` defaults otherwise (PTB's own httpx requests, updates handled one at a time);
- a broadcast command (``/phattin <text>`` from the volunteer's chat) that sends to every subscriber in
  a background task (``application.create_task``): a plain loop that waits ``retry_after`` on a 429 and
  tries again, with or without PTB's ``AIORateLimiter`` (``--rate-limiter``; its defaults: 30 msg/s).

Configured like ``hocvuso run`` by environment: HOCVUSO_PORT, HOCVUSO_DATA_DIR (the pickle file goes
there), TELEGRAM_BOT_TOKEN, TELEGRAM_API_URL, TELEGRAM_WEBHOOK_SECRET, HOCVUSO_PUBLIC_URL.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import RetryAfter, TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    CommandHandler,
    ContextTypes,
    ConversationHandler,
    MessageHandler,
    PicklePersistence,
    filters,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from content import read_content
from flows.catalog import Catalog, load_catalog
from flows.model import StepSpec

log = logging.getLogger("peer")

CONSENT, VILLAGE, MENU = "consent", "village", "menu"
CONVERSATION = "vneid"
PICKLE = "peer.pickle"
VOLUNTEER_CHAT = 4_000_000  # the chat allowed to broadcast
WEBHOOK_PATH = "/telegram/webhook"  # the same path as hocvuso's
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
Callback = Callable[[Update, ContextTypes.DEFAULT_TYPE], Awaitable[Any]]


def keyboard(labels: list[str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=str(i))] for i, label in enumerate(labels)])


def number(update: Update) -> int | None:
    text = (update.message.text or "").strip() if update.message else ""
    return int(text) if text.isdigit() else None


class VneidBot:
    """The handlers; replies are the module's own texts (from content/)."""

    def __init__(self, catalog: Catalog, module_id: str = "vneid") -> None:
        self.catalog = catalog
        self.module = catalog.modules[module_id]
        self.steps = {step.id: step for step in self.module.steps}
        self.villages = [area for area in catalog.areas if area.parent is not None][:4]
        self.commune = next(area.name for area in catalog.areas if area.parent is None)
        self.extra = [catalog.action_label(key) for key in ("stuck", "back", "menu")]

    def handler(self) -> ConversationHandler:
        text = filters.TEXT & ~filters.COMMAND
        states: dict[object, list[Any]] = {
            CONSENT: [MessageHandler(text, self.consent)],
            VILLAGE: [MessageHandler(text, self.village)],
            MENU: [MessageHandler(text, self.menu)],
        }
        for step in self.module.steps:
            states[f"step:{step.id}"] = [MessageHandler(text, self.on_step(step))]
        return ConversationHandler(
            entry_points=[CommandHandler("start", self.start)],
            states=states,
            fallbacks=[CommandHandler("start", self.start)],
            name=CONVERSATION,
            persistent=True,
        )

    async def start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> str:
        labels = [self.catalog.label(key) for key in ("consent.yes", "consent.no")]
        await update.message.reply_text(self.catalog.say("consent_prompt"), reply_markup=keyboard(labels))
        return CONSENT

    async def consent(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> str | int:
        if number(update) != 1:
            await update.message.reply_text(self.catalog.say("consent_declined"))
            return ConversationHandler.END
        context.user_data["consented_at"] = dt.datetime.now(dt.UTC)
        context.bot_data.setdefault("subscribers", set()).add(update.effective_chat.id)
        ask = self.catalog.say("village_ask", commune=self.commune)
        labels = [area.name for area in self.villages]
        await update.message.reply_text(f"{self.catalog.say('consent_thanks')}\n\n{ask}", reply_markup=keyboard(labels))
        return VILLAGE

    async def village(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> str:
        chosen = number(update)
        if chosen is None or not 1 <= chosen <= len(self.villages):
            await update.message.reply_text(self.catalog.say("choose_listed"))
            return VILLAGE
        area = self.villages[chosen - 1]
        context.user_data["village"] = area.code
        saved = self.catalog.say("village_saved", village=area.name, commune=self.commune)
        await update.message.reply_text(f"{saved}\n\n{self.catalog.say('welcome')}", reply_markup=self.menu_keyboard())
        return MENU

    def menu_keyboard(self) -> InlineKeyboardMarkup:
        return keyboard([module.title for module in self.catalog.modules.values()])

    async def menu(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> str:
        text = (update.message.text or "").lower()
        if number(update) == 1 or any(keyword in text for keyword in self.module.keywords):
            return await self.show(update, self.steps[self.module.start])
        await update.message.reply_text(self.catalog.say("not_understood"), reply_markup=self.menu_keyboard())
        return MENU

    async def show(self, update: Update, step: StepSpec, before: str = "") -> str:
        if before:
            await update.message.reply_text(before)
        labels = [b.label for b in step.buttons] + [o.label for o in (step.check.options if step.check else [])]
        await update.message.reply_text(step.text, reply_markup=keyboard(labels + self.extra))
        if step.complete:
            return MENU
        return f"step:{step.id}"

    def on_step(self, step: StepSpec) -> Callback:
        async def handle(update: Update, context: ContextTypes.DEFAULT_TYPE) -> str:
            chosen = number(update)
            if chosen is not None and 1 <= chosen <= len(step.buttons):
                return await self.show(update, self.steps[step.buttons[chosen - 1].goto])
            options = step.check.options if step.check else []
            index = (chosen or 0) - len(step.buttons) - 1
            if step.check and 0 <= index < len(options):
                if options[index].correct:
                    context.user_data.setdefault("answers", []).append(step.id)
                    return await self.show(update, self.steps[step.check.next], before=step.check.right)
                return await self.show(update, step, before=step.check.wrong)
            offered = len(step.buttons) + len(options)
            await update.message.reply_text(self.catalog.say("number_out_of_range", max=offered))
            return f"step:{step.id}"

        return handle


async def broadcast(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """``/phattin <text>``: send to every subscriber, in the background so the bot keeps answering."""
    if update.effective_chat.id != VOLUNTEER_CHAT:
        return
    text = update.message.text.partition(" ")[2]
    chats = sorted(context.bot_data.get("subscribers", ()))
    context.application.create_task(send_to_all(context, chats, text))
    await update.message.reply_text(f"Đang gửi tới {len(chats)} người.")


async def send_to_all(context: ContextTypes.DEFAULT_TYPE, chats: list[int], text: str) -> None:
    for chat in chats:
        while True:
            try:
                await context.bot.send_message(chat, text)
                break
            except RetryAfter as exc:
                wait = exc.retry_after
                await asyncio.sleep(wait.total_seconds() if isinstance(wait, dt.timedelta) else wait)
            except TelegramError as exc:
                log.warning("broadcast to %s failed: %s", chat, exc)
                break


def build(data_dir: Path, rate_limiter: bool) -> Application:
    builder = (
        Application.builder()
        .token(os.environ["TELEGRAM_BOT_TOKEN"])
        .base_url(os.environ["TELEGRAM_API_URL"])
        .persistence(PicklePersistence(filepath=data_dir / PICKLE))
        .updater(None)
    )
    if rate_limiter:
        builder = builder.rate_limiter(AIORateLimiter())
    application = builder.build()
    application.add_handler(CommandHandler("phattin", broadcast))
    application.add_handler(VneidBot(load_catalog(read_content())).handler())
    return application


async def serve(rate_limiter: bool) -> None:
    data_dir = Path(os.environ["HOCVUSO_DATA_DIR"])
    secret = os.environ["TELEGRAM_WEBHOOK_SECRET"]
    application = build(data_dir, rate_limiter)

    async def telegram(request: web.Request) -> web.Response:
        if request.headers.get(SECRET_HEADER) != secret:
            return web.Response(status=403)
        await application.update_queue.put(Update.de_json(data=await request.json(), bot=application.bot))
        return web.Response()

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    server = web.Application()
    server.add_routes([web.post(WEBHOOK_PATH, telegram), web.get("/healthz", healthz)])
    runner = web.AppRunner(server, access_log=None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with application:
        await application.bot.set_webhook(
            url=os.environ["HOCVUSO_PUBLIC_URL"] + WEBHOOK_PATH, allowed_updates=Update.ALL_TYPES, secret_token=secret
        )
        await application.start()
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", int(os.environ["HOCVUSO_PORT"])).start()
        await stop.wait()
        await runner.cleanup()
        await application.stop()


async def seed(path: Path, chats: range) -> None:
    """A bot that has served these residents before: their data and conversations in the pickle file."""
    persistence = PicklePersistence(filepath=path, on_flush=True)
    for chat in chats:
        await persistence.update_user_data(chat, {"consented_at": dt.datetime.now(dt.UTC), "village": "demo-thon-1"})
        await persistence.update_chat_data(chat, {})
        await persistence.update_conversation(CONVERSATION, (chat, chat), MENU)
    await persistence.update_bot_data({"subscribers": set(chats)})
    await persistence.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate-limiter", action="store_true", help="PTB's AIORateLimiter with its defaults")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve(args.rate_limiter))


if __name__ == "__main__":
    main()
