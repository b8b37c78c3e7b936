"""Per-channel send limits: a rate across all chats and a rate per chat."""

from __future__ import annotations

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


class ChannelLimiter:
    """Waits until one more message to ``recipient`` fits within the channel's limits."""

    MAX_CHAT_LIMITERS = 50_000

    def __init__(self, limits: RateLimits) -> None:
        self._limits = limits
        # Evenly paced, no burst, a hair under the limit: no one-second window ever holds more than allowed.
        self._overall = AsyncLimiter(1, PACING_MARGIN / limits.per_second) if limits.per_second else None
        self._per_chat: dict[str, AsyncLimiter] = {}

    async def acquire(self, recipient: str) -> None:
        if self._limits.per_chat:
            await self._chat_limiter(recipient).acquire()
        if self._overall:
            await self._overall.acquire()

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
