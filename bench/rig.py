"""What the benches share: the bot as its own process (`hocvuso run`) in front of the Bot API emulator."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.channels.telegram import SECRET_HEADER
from bot.ratelimit import RateLimits
from bot.server import WEBHOOK_PATH
from tests.telegram_emulator import TOKEN, TelegramEmulator

SECRET = "bench-secret"
RESULTS = Path(__file__).resolve().parent / "results"


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Rig:
    """The emulator and the load driver here; the bot as its own process, as in production.

    ``start_bot`` / ``kill_bot`` restart the bot on the same database and emulator (crash scenarios).
    """

    def __init__(self, data_dir: Path, database_url: str, emulator: TelegramEmulator, limits: RateLimits) -> None:
        self.data_dir, self.database_url, self.emulator, self.limits = data_dir, database_url, emulator, limits
        self.server: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Rig:
        self.api = TestServer(self.emulator.app())
        await self.api.start_server()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}{WEBHOOK_PATH}"
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
        await self.start_bot()
        return self

    async def start_bot(self) -> None:
        per_chat = f"{self.limits.per_chat[0]}/{self.limits.per_chat[1]}" if self.limits.per_chat else "0"
        env = {
            **os.environ,
            "HOCVUSO_DATA_DIR": str(self.data_dir),
            "HOCVUSO_DATABASE_URL": self.database_url,
            "HOCVUSO_PORT": str(self.port),
            "HOCVUSO_PUBLIC_URL": f"http://127.0.0.1:{self.port}",
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_URL": f"http://127.0.0.1:{self.api.port}/bot",
            "TELEGRAM_WEBHOOK_SECRET": SECRET,
            "TELEGRAM_RATE_PER_SECOND": str(self.limits.per_second or 0),
            "TELEGRAM_RATE_PER_CHAT": per_chat,
        }
        hocvuso = str(Path(sys.executable).parent / "hocvuso")
        self.server = await asyncio.create_subprocess_exec(hocvuso, "run", env=env, stdout=asyncio.subprocess.DEVNULL)
        for _ in range(600):
            assert self.server.returncode is None, "hocvuso run exited"
            try:
                async with self.http.get(f"http://127.0.0.1:{self.port}/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError("hocvuso run did not start")

    async def kill_bot(self) -> None:
        """SIGKILL: no chance to finish anything."""
        assert self.server is not None
        self.server.send_signal(signal.SIGKILL)
        await self.server.wait()

    async def __aexit__(self, *exc: object) -> None:
        if self.server is not None and self.server.returncode is None:
            self.server.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.server.wait(), 30)
        await self.http.close()
        await self.api.close()

    async def post(self, update: dict[str, Any]) -> None:
        """Deliver like Telegram: again until acknowledged with 200."""
        while True:
            try:
                async with self.http.post(self.url, json=update, headers={SECRET_HEADER: SECRET}) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
