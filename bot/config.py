"""Settings from environment variables (see the README's configuration table)."""

from __future__ import annotations

import datetime as dt
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
# Zalo OA: 4,000 API requests a minute per app; no per-user limit is published.
ZALO_OA_LIMITS = RateLimits(per_second=4000 / 60)
# Zalo Bot Platform: no rate is published (its plans count messages a month); stay modest.
ZALO_BOT_LIMITS = RateLimits(per_second=10.0, per_chat=(3, 3.0))
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
    zalo_oa_app_id: str = ""
    zalo_oa_app_secret: str = ""  # the app's secret key: OAuth
    zalo_oa_secret_key: str = ""  # the OA secret key of the app's Webhook page: signatures
    zalo_oa_id: str = ""  # optional: some sources sign with the OA id instead of the app id
    zalo_oa_api_url: str = "https://openapi.zalo.me"
    zalo_oauth_url: str = "https://oauth.zaloapp.com"
    zalo_oa_redirect_uri: str = ""
    zalo_oa_buttons: bool = False  # buttons in consultation messages (unverified on API v3)
    zalo_oa_window_hours: float = 7 * 24  # 48 keeps to the free window
    zalo_oa_limits: RateLimits = ZALO_OA_LIMITS
    zalo_bot_token: str = ""
    zalo_bot_api_url: str = "https://bot-api.zaloplatforms.com/bot"
    zalo_bot_webhook_secret: str = ""
    zalo_bot_limits: RateLimits = ZALO_BOT_LIMITS

    @property
    def sending_windows(self) -> dict[str, dt.timedelta]:
        """Channels that take bulk messages only so long after the person's last message (Zalo OA)."""
        return {"zalo_oa": dt.timedelta(hours=self.zalo_oa_window_hours)} if self.zalo_oa_enabled else {}

    @property
    def zalo_oa_enabled(self) -> bool:
        """The OA channel runs once the app id and both secrets are set."""
        return bool(self.zalo_oa_app_id and self.zalo_oa_app_secret and self.zalo_oa_secret_key)

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
        bot_secret = environ.get("ZALO_BOT_WEBHOOK_SECRET", "")
        if bot_secret and not re.fullmatch(r"[A-Za-z0-9_-]{8,256}", bot_secret):
            raise ConfigError("ZALO_BOT_WEBHOOK_SECRET: 8-256 characters from A-Z a-z 0-9 _ -")
        window = _float(environ, "ZALO_OA_WINDOW_HOURS", 7 * 24)
        if not 0 < window <= 7 * 24:
            raise ConfigError("ZALO_OA_WINDOW_HOURS: more than 0 and at most 168 (Zalo refuses after 7 days)")
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
            zalo_oa_app_id=environ.get("ZALO_OA_APP_ID", "").strip(),
            zalo_oa_app_secret=environ.get("ZALO_OA_APP_SECRET", "").strip(),
            zalo_oa_secret_key=environ.get("ZALO_OA_SECRET_KEY", "").strip(),
            zalo_oa_id=environ.get("ZALO_OA_ID", "").strip(),
            zalo_oa_api_url=(environ.get("ZALO_OA_API_URL") or "https://openapi.zalo.me").rstrip("/"),
            zalo_oauth_url=(environ.get("ZALO_OAUTH_URL") or "https://oauth.zaloapp.com").rstrip("/"),
            zalo_oa_redirect_uri=environ.get("ZALO_OA_REDIRECT_URI", "").strip(),
            zalo_oa_buttons=environ.get("ZALO_OA_BUTTONS", "0").strip().lower() not in _FALSE,
            zalo_oa_window_hours=window,
            zalo_oa_limits=RateLimits(per_second=_float(environ, "ZALO_OA_RATE_PER_MINUTE", 4000.0) / 60 or None),
            zalo_bot_token=environ.get("ZALO_BOT_TOKEN", "").strip(),
            zalo_bot_api_url=environ.get("ZALO_BOT_API_URL") or "https://bot-api.zaloplatforms.com/bot",
            zalo_bot_webhook_secret=bot_secret,
            zalo_bot_limits=RateLimits(
                per_second=_float(environ, "ZALO_BOT_RATE_PER_SECOND", 10.0) or None,
                per_chat=_per_chat(environ.get("ZALO_BOT_RATE_PER_CHAT", "3/3"), "ZALO_BOT_RATE_PER_CHAT"),
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


def _per_chat(value: str, name: str = "TELEGRAM_RATE_PER_CHAT") -> tuple[int, float] | None:
    """ "3/3" -> (3, 3.0): three messages per three seconds; "0" or "" -> unlimited."""
    if value.strip() in {"", "0"}:
        return None
    match = _PER_CHAT.match(value)
    if not match:
        raise ConfigError(f"{name} must look like 3/3 (messages/seconds)")
    return int(match.group(1)), float(match.group(2))
