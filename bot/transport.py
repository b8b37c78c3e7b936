"""What a channel must do to deliver one message, and how it reports failure."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from bot.ratelimit import RateLimits
from flows.types import Reply


class DeliveryError(Exception):
    """Base class: the message was not delivered."""


class RetryLater(DeliveryError):
    """Rate-limited or temporarily failing; try again after ``retry_after`` seconds (None: back off)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Unreachable(DeliveryError):
    """The person blocked the bot or left: never retry on this channel."""


class Rejected(DeliveryError):
    """The platform refused this message for good (bad request, too long...)."""


class OutOfWindow(DeliveryError):
    """The platform takes messages only for a while after the person's last one, and that time is over."""


def outside_window(last_inbound_at: dt.datetime | None, window: dt.timedelta, now: dt.datetime) -> bool:
    """True when a windowed channel would refuse a bulk message: the person never wrote, or too long ago."""
    return last_inbound_at is None or now - last_inbound_at > window


class Transport(Protocol):
    """A channel's sending side.

    A transport may also set ``window`` (a ``datetime.timedelta``): messages to a person whose
    last inbound message is older than that are not sent but marked "out of window" (Zalo OA).
    """

    channel: str
    limits: RateLimits

    async def send(self, recipient: str, reply: Reply) -> None:
        """Deliver one message or raise a :class:`DeliveryError`."""
        ...
