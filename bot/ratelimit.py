"""Per-channel send limits: a rate across all chats and a rate per chat."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from dataclasses import dataclass

from aiolimiter import AsyncLimiter


@dataclass(frozen=True)
class RateLimits:
    """What a platform tolerates. None means unlimited.

    ``per_chat`` is (messages, seconds): (3, 3.0) allows a burst of three, then one a second.
    """

    per_second: float | None = None
    per_chat: tuple[int, float] | None = None


PACING_MARGIN = 1.01


class Pacer:
    """At most one acquisition every ``interval`` seconds, evenly spaced; urgent waiters go first.

    Replies to residents are urgent: they overtake bulk messages already waiting for their slot. A
    slot missed while the event loop was busy is not made up for later, so no one-second window ever
    holds more than ``1 / interval`` acquisitions. Slots are kept in ``time.monotonic()``, not in the
    loop's time: uvloop's clock is cached per loop iteration in milliseconds, and its timers fire up
    to an iteration early; a timer that fires early is set again.
    """

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next = 0.0  # time.monotonic() of the next free slot
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    async def acquire(self, urgent: bool = False) -> None:
        if not self._waiters and time.monotonic() >= self._next:
            self._next = time.monotonic() + self._interval
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._waiters, (0 if urgent else 1, next(self._order), waiter))
        self._arm(loop)
        await waiter  # cancelled: its slot goes to the next waiter

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is None and self._waiters:
            self._timer = loop.call_later(max(0.0, self._next - time.monotonic()), self._release, loop)

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        if time.monotonic() >= self._next:  # else the timer fired early: wait for the slot
            while self._waiters:
                _, _, waiter = heapq.heappop(self._waiters)
                if not waiter.done():
                    waiter.set_result(None)
                    self._next = time.monotonic() + self._interval
                    break
        self._arm(loop)


class ChannelLimiter:
    """Waits until one more message to ``recipient`` fits within the channel's limits."""

    MAX_CHAT_LIMITERS = 50_000

    def __init__(self, limits: RateLimits) -> None:
        self._limits = limits
        # Evenly paced, no burst, a hair under the limit: no one-second window ever holds more than allowed.
        self._overall = Pacer(PACING_MARGIN / limits.per_second) if limits.per_second else None
        self._per_chat: dict[str, AsyncLimiter] = {}

    async def acquire(self, recipient: str, urgent: bool = False) -> None:
        """``urgent``: a reply to a resident, which overtakes bulk messages waiting for the channel."""
        if self._limits.per_chat:
            await self._chat_limiter(recipient).acquire()
        if self._overall:
            await self._overall.acquire(urgent)

    def _chat_limiter(self, recipient: str) -> AsyncLimiter:
        limiter = self._per_chat.get(recipient)
        if limiter is None:
            if len(self._per_chat) >= self.MAX_CHAT_LIMITERS:
                # Forget the oldest half; a forgotten chat starts with a full burst again, within Telegram's tolerance.
                for key in list(self._per_chat)[: self.MAX_CHAT_LIMITERS // 2]:
                    del self._per_chat[key]
            messages, seconds = self._limits.per_chat  # type: ignore[misc]
            limiter = self._per_chat[recipient] = AsyncLimiter(messages, seconds)
        return limiter
