"""`hocvuso run`: one aiohttp server for the Telegram webhook, the web chat, the officers' dashboard and /healthz."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal

from aiohttp import web
from sqlalchemy import text
from telegram import Bot

from bot.app import App, open_app
from bot.broadcasts.scheduler import BroadcastScheduler
from bot.channels.telegram import ALLOWED_UPDATES, TelegramChannel, TelegramTransport, make_bot
from bot.channels.web import WebChat, WebTransport
from bot.channels.zalo import ZaloChannels, open_zalo
from bot.config import Settings
from bot.dashboard.views import Dashboard
from bot.unavailable import database_unavailable
from storage.repo import app_secret

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/telegram/webhook"
MAX_BODY_BYTES = 1024 * 1024
TELEGRAM_SECRET_NAME = "telegram_webhook_secret"


def create_web_app(
    app: App, web_chat: WebChat, telegram: TelegramChannel | None = None, zalo: ZaloChannels | None = None
) -> web.Application:
    """The aiohttp application: routes only; lifetimes are handled by :func:`serve`."""
    server = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[database_unavailable])

    async def healthz(_request: web.Request) -> web.Response:
        try:
            async with app.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("health check failed: %s", exc)
            return web.json_response({"status": "database unavailable"}, status=503)
        return web.json_response({"status": "ok"})

    async def home(_request: web.Request) -> web.Response:
        raise web.HTTPFound("/chat")

    async def dashboard(_request: web.Request) -> web.Response:
        raise web.HTTPFound("/dashboard/")

    server.add_routes([web.get("/", home), web.get("/healthz", healthz), web.get("/dashboard", dashboard)])
    server.add_routes(web_chat.routes())
    server.add_subapp(
        "/dashboard/",
        Dashboard(
            app.catalog, app.sessions, app.settings.public_url, windows=app.settings.sending_windows
        ).application(),
    )
    if telegram is not None:
        server.add_routes([web.post(WEBHOOK_PATH, telegram.webhook)])
    if zalo is not None:
        server.add_routes(zalo.routes())
    return server


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None:
    """Run until SIGINT/SIGTERM: web server, outbox sender, and Telegram if a token is set."""
    async with open_app(settings) as app, contextlib.AsyncExitStack() as stack:
        web_transport = WebTransport()
        app.sender.add_transport(web_transport)
        web_chat = WebChat(app.catalog, app.dispatcher, app.sessions, web_transport)
        telegram: TelegramChannel | None = None
        bot: Bot | None = None
        if settings.telegram_token:
            bot = make_bot(settings.telegram_token, settings.telegram_api_url)
            await bot.initialize()
            secret = settings.telegram_webhook_secret or await app_secret(app.sessions, TELEGRAM_SECRET_NAME)
            telegram = TelegramChannel(bot, app.dispatcher, secret, app.sessions)
            images = settings.content_dir / "images"
            app.sender.add_transport(TelegramTransport(bot, settings.telegram_limits, images))
        zalo = await stack.enter_async_context(open_zalo(app))
        broadcasts = BroadcastScheduler(app.engine, app.sessions, app.catalog, app.sender.wake, settings.database_url)
        await broadcasts.start()

        runner = web.AppRunner(create_web_app(app, web_chat, telegram, zalo), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, settings.host, settings.port).start()
        tasks = [asyncio.create_task(app.sender.run_while_leading(broadcasts.leading))]
        tasks += [asyncio.create_task(poll) for poll in await zalo.start(settings.public_url)]
        if telegram is not None and bot is not None:
            if settings.public_url:
                await bot.set_webhook(
                    url=settings.public_url + WEBHOOK_PATH,
                    secret_token=telegram.secret,
                    allowed_updates=list(ALLOWED_UPDATES),
                )
            else:
                await bot.delete_webhook()
                tasks.append(asyncio.create_task(telegram.poll()))
        # What startup loaded (the catalog, the matcher's phrases, SQLAlchemy's mappers...) stays for the process's
        # life: kept out of the collector's way, a full collection no longer stops the bot for about 100 ms.
        gc.collect()
        gc.freeze()
        print(f"hocvuso is running: http://{settings.host}:{settings.port}/chat", flush=True)
        print(
            f"Dashboard: {settings.base_url}/dashboard/ (a login link: /dangnhap in chat, or hocvuso login)", flush=True
        )
        if telegram is not None:
            mode = "webhook " + settings.public_url + WEBHOOK_PATH if settings.public_url else "long polling"
            print(f"Telegram: {mode}", flush=True)
        for line in zalo.describe(settings.public_url):
            print(line, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if ready is not None:
            ready.set()
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await broadcasts.stop()
            await runner.cleanup()
            if bot is not None:
                await bot.shutdown()
