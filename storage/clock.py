"""The one place that reads the wall clock; everything else takes ``now`` in."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo

Clock = Callable[[], dt.datetime]
LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")  # times are stored in UTC and shown in Vietnam's time


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def local_text(moment: dt.datetime) -> str:
    """ "8:00 15/12/2026": a moment as the bot's texts show it, in Vietnam's time."""
    local = moment.astimezone(LOCAL_TZ)
    return f"{local.hour}:{local.minute:02d} {local.day}/{local.month}/{local.year}"
