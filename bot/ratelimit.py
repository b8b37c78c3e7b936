"""Per-channel send limits: a rate across all chats and a rate per chat."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiolimiter import AsyncLimiter


@dataclass(frozen=True)
class RateLimits:
    """What a platform tolerates. None means unlimited.

    ``per_chat`` is (messages, seconds): (3, 3.0) allows a burst of three, then one a second.
    """

    per_second: float | None = None
    per_chat: tuple[int, float] | None = None


WINDOW = 1.0  # seconds: the platforms (and their emulators in tests/) count messages per second
JITTER_GUARD = 0.02  # seconds: a message reaches the platform a little later or earlier than its slot


class Pacer:
    """At most ``per_second`` platform calls in any second, evenly spaced; urgent waiters go first.

    :meth:`acquire` gives a slot; its holder then says when the call starts (:meth:`sent`), or that
    it was not made (:meth:`unused`). Replies to residents are urgent: they overtake bulk messages
    already waiting for their slot. Slots lie on a grid, so a slot reached late by a busy event loop
    is made up by the next one (never sooner than half a slot after it). The calls of the last
    second and a guard are counted, those in progress too: a slot is free only while fewer than
    ``per_second`` fall within that span. The count follows when calls start, not when slots were
    given (a bulk message is marked "sending" in between, which takes a variable time), so however
    late the loop, no second at the platform holds more than allowed. Times are ``time.monotonic()``,
    not the loop's time: uvloop's clock is cached per loop iteration in milliseconds, and its timers
    fire up to an iteration early; a timer that fires early is set again.
    """

    def __init__(self, per_second: float, guard: float = JITTER_GUARD) -> None:
        self._count = max(1, math.floor(per_second))  # calls in one span
        self._span = WINDOW + guard
        self._interval = max(1 / per_second, self._span / self._count)
        self._next = 0.0  # the next slot on the grid
        self._started: deque[float] = deque()  # when the calls of the last span started
        self._in_flight = 0  # slots given whose call has not started yet
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    async def acquire(self, urgent: bool = False) -> None:
        if not self._waiters and (now := time.monotonic()) >= self._free_at(now):
            self._take(now)
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._waiters, (0 if urgent else 1, next(self._order), waiter))
        self._arm(loop)
        try:
            await waiter
        except asyncio.CancelledError:  # its slot goes to the next waiter, even if it was just given
            if waiter.done() and not waiter.cancelled():
                self.unused()
            raise

    def sent(self) -> None:
        """The call a slot was acquired for starts now."""
        self._in_flight -= 1
        self._started.append(time.monotonic())
        self._rearm()

    def unused(self) -> None:
        """A slot acquired was not used: no call was made."""
        self._in_flight -= 1
        self._rearm()

    def _free_at(self, now: float) -> float:
        """When the next slot is free (infinity: not before a call in progress starts or is dropped)."""
        while self._started and self._started[0] <= now - self._span:
            self._started.popleft()
        excess = self._in_flight + len(self._started) - self._count + 1  # calls that must leave the span
        if excess <= 0:
            return self._next
        if excess > len(self._started):
            return math.inf
        return max(self._next, self._started[excess - 1] + self._span)

    def _take(self, now: float) -> None:
        self._next = max(self._next, now - self._interval / 2) + self._interval
        self._in_flight += 1

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is None and self._waiters:
            now = time.monotonic()
            free = self._free_at(now)
            if free != math.inf:
                self._timer = loop.call_later(max(0.0, free - now), self._release, loop)

    def _rearm(self) -> None:
        if self._waiters:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._arm(asyncio.get_running_loop())

    def _release(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        if (now := time.monotonic()) >= self._free_at(now):  # else the timer fired early: wait for the slot
            while self._waiters:
                _, _, waiter = heapq.heappop(self._waiters)
                if not waiter.done():
                    waiter.set_result(None)
                    self._take(now)
                    break
        self._arm(loop)


class ChannelLimiter:
    """The channel's limits across chats and per chat."""

    MAX_CHAT_LIMITERS = 50_000

    def __init__(self, limits: RateLimits) -> None:
        self._limits = limits
        self._overall = Pacer(limits.per_second) if limits.per_second else None
        self._per_chat: dict[str, AsyncLimiter] = {}

    @contextlib.asynccontextmanager
    async def slot(self, recipient: str, urgent: bool = False) -> AsyncIterator[Callable[[], None]]:
        """Wait until one more message to ``recipient`` fits; yields what to call when the platform call
        starts (a slot not used by then is given back). ``urgent``: a reply to a resident, which overtakes
        bulk messages waiting for the channel."""
        if self._limits.per_chat:
            await self._chat_limiter(recipient).acquire()
        overall = self._overall
        if overall is None:
            yield lambda: None
            return
        await overall.acquire(urgent)
        started = False

        def sending() -> None:
            nonlocal started
            if not started:
                started = True
                overall.sent()

        try:
            yield sending
        finally:
            if not started:
                overall.unused()

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
