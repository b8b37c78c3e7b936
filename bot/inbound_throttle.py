"""Per-sender inbound throttle: one account flooding the bot is slowed down alone.

A token bucket per (channel, sender): ``burst`` events at once, then ``rate`` a second. An event over
the limit waits for its token, unless a newer event from the same sender arrives first: then the older
one is dropped (acknowledged, not processed), so the sender's latest message is always the one answered.
A waiting event is acknowledged only once it is committed, so if the process dies meanwhile the platform
delivers it again; at most one event per sender waits at a time, holding one webhook connection.

The first time a sender's event is dropped they get one kind notice (``too_fast`` in messages.yaml);
once their bucket is full again, a later flood gets a notice again. Other senders never wait: each
bucket is its own, and nothing here touches the database except the notice. The buckets live in the
process: with several web workers each holds its own (a flood is then slowed per worker).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flows.catalog import Catalog
from flows.types import Reply
from storage.clock import utc_now
from storage.models import Priority
from storage.repo import Outgoing, enqueue

log = logging.getLogger(__name__)

# A person types or taps at most a message or two a second; a bench resident or a burst of taps
# on a slow connection fits in the burst.
RATE_PER_SECOND = 5.0
BURST = 30
MAX_SENDERS = 100_000  # beyond this many buckets, idle (full) ones are forgotten

Notify = Callable[[str, str], Awaitable[None]]  # (channel, sender id)


@dataclass
class _Bucket:
    tokens: float
    at: float  # event-loop time of the last refill
    waiting: asyncio.Future[bool] | None = None
    timer: asyncio.TimerHandle | None = None
    noticed: bool = False


class InboundThrottle:
    """Decides, per inbound event, whether it goes on now, after a short wait, or not at all."""

    def __init__(self, notify: Notify, rate: float = RATE_PER_SECOND, burst: int = BURST) -> None:
        self._notify = notify
        self._rate = rate
        self._burst = float(burst)
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self.dropped = 0  # events superseded by a newer one from the same sender
        self.notices = 0

    async def admit(self, channel: str, sender_id: str) -> bool:
        """True: process the event (now, or after waiting for a token); False: a newer one superseded it."""
        loop = asyncio.get_running_loop()
        key = (channel, sender_id)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_SENDERS:
                self._forget_idle(loop.time())
            bucket = self._buckets[key] = _Bucket(self._burst, loop.time())
        self._refill(bucket, loop.time())
        if bucket.waiting is None and bucket.tokens >= 1:
            bucket.tokens -= 1
            return True
        superseding = bucket.waiting is not None
        if superseding:  # the event waiting so far is dropped: this one is newer
            self._release(bucket, granted=False)
            self.dropped += 1
        mine: asyncio.Future[bool] = loop.create_future()
        bucket.waiting = mine  # set before any await: a concurrent event from this sender finds it
        bucket.timer = loop.call_later(max(0.0, (1 - bucket.tokens) / self._rate), self._release, bucket, True)
        try:
            if superseding and not bucket.noticed:
                bucket.noticed = True
                await self._send_notice(channel, sender_id)
            granted = await mine
        finally:
            if bucket.waiting is mine:  # granted, or this request was cancelled (the client went away)
                self._release(bucket, granted=False)
        if granted:
            self._refill(bucket, loop.time())
            bucket.tokens = max(0.0, bucket.tokens - 1)
        return granted

    def _release(self, bucket: _Bucket, granted: bool) -> None:
        waiting, timer = bucket.waiting, bucket.timer
        bucket.waiting = bucket.timer = None
        if timer is not None:
            timer.cancel()
        if waiting is not None and not waiting.done():
            waiting.set_result(granted)

    def _refill(self, bucket: _Bucket, now: float) -> None:
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.at) * self._rate)
        bucket.at = now
        if bucket.tokens >= self._burst and bucket.waiting is None:
            bucket.noticed = False  # calm again: a next flood is told again

    def _forget_idle(self, now: float) -> None:
        for key, bucket in list(self._buckets.items()):
            self._refill(bucket, now)
            if bucket.waiting is None and bucket.tokens >= self._burst:
                del self._buckets[key]

    async def _send_notice(self, channel: str, sender_id: str) -> None:
        self.notices += 1
        try:
            await self._notify(channel, sender_id)
        except Exception:  # the notice is a courtesy: the events themselves are unaffected
            log.exception("could not queue the too-fast notice for %s/%s", channel, sender_id)


def too_fast_notice(
    catalog: Catalog, sessions: async_sessionmaker[AsyncSession], on_commit: Callable[[], None]
) -> Notify:
    """Queue the ``too_fast`` sentence to a sender through the outbox (a reply: it goes before bulk)."""

    async def notify(channel: str, sender_id: str) -> None:
        payload = Reply(text=catalog.say("too_fast")).to_dict()
        async with sessions.begin() as session:
            await enqueue(session, [Outgoing(channel, sender_id, None, payload, Priority.REPLY)], utc_now())
        on_commit()

    return notify
