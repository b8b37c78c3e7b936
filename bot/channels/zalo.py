"""Both Zalo channels, as configured: the OA (main) and the Bot Platform (second), wired into the app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from bot.app import App
from bot.channels import zalo_bot, zalo_oa
from bot.channels.zalo_oauth import ZaloTokens
from storage.repo import app_secret

log = logging.getLogger(__name__)

BOT_SECRET_NAME = "zalo_bot_webhook_secret"


@dataclass
class ZaloChannels:
    oa: zalo_oa.ZaloOAChannel | None = None
    tokens: ZaloTokens | None = None
    bot: zalo_bot.ZaloBotChannel | None = None

    def routes(self) -> list[web.RouteDef]:
        routes = []
        if self.oa is not None:
            routes.append(web.post(zalo_oa.WEBHOOK_PATH, self.oa.webhook))
        if self.bot is not None:
            routes.append(web.post(zalo_bot.WEBHOOK_PATH, self.bot.webhook))
        return routes

    async def start(self, public_url: str) -> list[Coroutine[Any, Any, None]]:
        """Point the Bot Platform at our webhook (with a public URL), else return its polling loop."""
        if self.bot is None:
            return []
        await self.bot.identify()
        try:
            if public_url:
                await self.bot.api.call(
                    "setWebhook", url=public_url + zalo_bot.WEBHOOK_PATH, secret_token=self.bot.secret
                )
                return []
            with contextlib.suppress(zalo_bot.BotApiError):  # 400 when no webhook was set
                await self.bot.api.call("deleteWebhook")
        except (zalo_bot.BotApiError, aiohttp.ClientError, TimeoutError) as exc:
            log.error("Zalo Bot webhook setup failed: %s", exc)
            if public_url:
                return []
        return [self.bot.poll()]

    def describe(self, public_url: str) -> list[str]:
        lines = []
        if self.oa is not None:
            lines.append(f"Zalo OA: webhook {public_url or '<HOCVUSO_PUBLIC_URL>'}{zalo_oa.WEBHOOK_PATH}")
        if self.bot is not None:
            mode = "webhook " + public_url + zalo_bot.WEBHOOK_PATH if public_url else "long polling"
            lines.append(f"Zalo Bot: {mode}")
        return lines


@asynccontextmanager
async def open_zalo(app: App) -> AsyncIterator[ZaloChannels]:
    """The configured Zalo channels with their transports added to the sender; one HTTP pool for both."""
    settings = app.settings
    channels = ZaloChannels()
    if not (settings.zalo_oa_enabled or settings.zalo_bot_token):
        yield channels
        return
    async with aiohttp.ClientSession() as http:
        if settings.zalo_oa_enabled:
            channels.tokens = ZaloTokens(
                app.sessions, http, settings.zalo_oa_app_id, settings.zalo_oa_app_secret, settings.zalo_oauth_url
            )
            channels.oa = zalo_oa.ZaloOAChannel(
                app.dispatcher, app.sessions, settings.zalo_oa_app_id, settings.zalo_oa_secret_key, settings.zalo_oa_id
            )
            app.sender.add_transport(
                zalo_oa.ZaloOATransport(
                    http,
                    channels.tokens,
                    app.catalog,
                    settings.zalo_oa_api_url,
                    settings.zalo_oa_limits,
                    settings.sending_windows["zalo_oa"],
                    buttons=settings.zalo_oa_buttons,
                )
            )
        if settings.zalo_bot_token:
            api = zalo_bot.ZaloBotApi(http, settings.zalo_bot_token, settings.zalo_bot_api_url)
            secret = settings.zalo_bot_webhook_secret or await app_secret(app.sessions, BOT_SECRET_NAME)
            channels.bot = zalo_bot.ZaloBotChannel(api, app.dispatcher, secret)
            app.sender.add_transport(zalo_bot.ZaloBotTransport(api, app.catalog, settings.zalo_bot_limits))
        yield channels
        await asyncio.sleep(0)  # let cancelled polls release their connections before the pool closes
