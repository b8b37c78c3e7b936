"""Settings from environment variables (see the README's configuration table)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.ratelimit import RateLimits
from content import CONTENT_DIR
from storage.db import default_url

_FALSE = {"0", "false", "no", "off", ""}
# Bot API guidance: about 30 messages/s across chats, about 1/s per chat (short bursts tolerated).
TELEGRAM_LIMITS = RateLimits(per_second=30.0, per_chat=(3, 3.0))
_PER_CHAT = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*$")


class ConfigError(ValueError):
    """A setting has a value the bot cannot use."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    auto_upgrade: bool
    content_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    telegram_token: str = ""
    telegram_api_url: str = "https://api.telegram.org/bot"
    telegram_webhook_secret: str = ""
    telegram_limits: RateLimits = TELEGRAM_LIMITS

    @property
    def base_url(self) -> str:
        """Where people reach the bot's web pages: ``HOCVUSO_PUBLIC_URL``, else this server's address."""
        return self.public_url or f"http://{self.host}:{self.port}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        data_dir = Path(environ.get("HOCVUSO_DATA_DIR", "data"))
        secret = environ.get("TELEGRAM_WEBHOOK_SECRET", "")
        if secret and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise ConfigError("TELEGRAM_WEBHOOK_SECRET: 1-256 characters from A-Z a-z 0-9 _ -")
        return cls(
            data_dir=data_dir,
            database_url=environ.get("HOCVUSO_DATABASE_URL") or default_url(data_dir),
            auto_upgrade=environ.get("HOCVUSO_AUTO_UPGRADE", "1").strip().lower() not in _FALSE,
            content_dir=Path(environ.get("HOCVUSO_CONTENT_DIR") or CONTENT_DIR),
            host=environ.get("HOCVUSO_HOST", "127.0.0.1"),
            port=_int(environ, "HOCVUSO_PORT", 8080),
            public_url=environ.get("HOCVUSO_PUBLIC_URL", "").rstrip("/"),
            telegram_token=environ.get("TELEGRAM_BOT_TOKEN", ""),
            telegram_api_url=environ.get("TELEGRAM_API_URL") or "https://api.telegram.org/bot",
            telegram_webhook_secret=secret,
            telegram_limits=RateLimits(
                per_second=_float(environ, "TELEGRAM_RATE_PER_SECOND", 30.0) or None,
                per_chat=_per_chat(environ.get("TELEGRAM_RATE_PER_CHAT", "3/3")),
            ),
        )


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(environ.get(name, default))
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number") from exc


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    try:
        return float(environ.get(name, default))
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number") from exc


def _per_chat(value: str) -> tuple[int, float] | None:
    """ "3/3" -> (3, 3.0): three messages per three seconds; "0" or "" -> unlimited."""
    if value.strip() in {"", "0"}:
        return None
    match = _PER_CHAT.match(value)
    if not match:
        raise ConfigError("TELEGRAM_RATE_PER_CHAT must look like 3/3 (messages/seconds)")
    return int(match.group(1)), float(match.group(2))
