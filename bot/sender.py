"""The outbox sender: delivers committed messages, in order per recipient, once.

Rows go pending -> sending -> sent. A row is marked "sending" (and committed)
before the platform call, so a crash during the call is visible on restart:
a reply to a resident is then sent again (a rare duplicate beats a lost
answer), a bulk message is marked "unknown" instead (see DESIGN.md, invariant 2).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Mapping

from sqlalchemy import and_, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from bot.transport import DeliveryError, Rejected, RetryLater, Transport, Unreachable
from flows.types import Reply
from storage.clock import Clock, utc_now
from storage.models import ChannelIdentity, OutboxMessage, OutboxStatus, Priority

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
MAX_BACKOFF_SECONDS = 300.0
BATCH = 50


class OutboxSender:
    """Drains the outbox for the channels it has transports for."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        transports: Mapping[str, Transport],
        clock: Clock = utc_now,
    ) -> None:
        self._sessions = sessions
        self._transports = dict(transports)
        self._clock = clock
        self._wakeup = asyncio.Event()

    def add_transport(self, transport: Transport) -> None:
        self._transports[transport.channel] = transport

    def wake(self) -> None:
        """Tell a running :meth:`run` loop that new rows were committed."""
        self._wakeup.set()

    async def recover(self) -> None:
        """After a restart: retry in-flight replies, mark in-flight bulk messages unknown."""
        channels = list(self._transports)
        async with self._sessions.begin() as session:
            in_flight = and_(OutboxMessage.status == OutboxStatus.SENDING, OutboxMessage.channel.in_(channels))
            await session.execute(
                update(OutboxMessage)
                .where(in_flight, OutboxMessage.priority <= Priority.REPLY)
                .values(status=OutboxStatus.PENDING, last_error="interrupted while sending; retried")
            )
            await session.execute(
                update(OutboxMessage)
                .where(in_flight, OutboxMessage.priority > Priority.REPLY)
                .values(status=OutboxStatus.UNKNOWN, last_error="interrupted while sending; not retried")
            )

    async def drain(self) -> int:
        """Send everything that is due now; return how many rows were handled."""
        handled = 0
        while batch := await self._claim():
            for row_id, channel, recipient, payload in batch:
                await self._deliver(row_id, channel, recipient, payload)
            handled += len(batch)
        return handled

    async def run(self, poll_seconds: float = 1.0) -> None:
        """Drain forever: on :meth:`wake`, and every ``poll_seconds`` for retries."""
        while True:
            try:
                await self.drain()
            except Exception:  # keep the loop alive; rows stay in the outbox
                log.exception("outbox drain failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), poll_seconds)
            self._wakeup.clear()

    async def _claim(self) -> list[tuple[int, str, str, dict]]:
        """Mark the next due rows "sending": the oldest waiting row of each recipient."""
        now = self._clock()
        earlier = aliased(OutboxMessage)
        blocked = exists().where(
            earlier.channel == OutboxMessage.channel,
            earlier.recipient == OutboxMessage.recipient,
            earlier.status.in_([OutboxStatus.PENDING, OutboxStatus.SENDING]),
            earlier.id < OutboxMessage.id,
        )
        async with self._sessions.begin() as session:
            rows = (
                await session.scalars(
                    select(OutboxMessage)
                    .where(
                        OutboxMessage.status == OutboxStatus.PENDING,
                        OutboxMessage.channel.in_(list(self._transports)),
                        OutboxMessage.next_attempt_at <= now,
                        ~blocked,
                    )
                    .order_by(OutboxMessage.priority, OutboxMessage.id)
                    .limit(BATCH)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for row in rows:
                row.status = OutboxStatus.SENDING
                row.attempts += 1
            return [(row.id, row.channel, row.recipient, row.payload) for row in rows]

    async def _deliver(self, row_id: int, channel: str, recipient: str, payload: dict) -> None:
        try:
            await self._transports[channel].send(recipient, Reply.from_dict(payload))
        except Unreachable as exc:
            await self._finish(row_id, OutboxStatus.UNREACHABLE, str(exc), unreachable=(channel, recipient))
        except RetryLater as exc:
            await self._reschedule(row_id, exc)
        except Rejected as exc:
            await self._finish(row_id, OutboxStatus.FAILED, str(exc))
        except Exception as exc:  # timeouts, network errors, 5xx, and bugs: back off, never drop
            if not isinstance(exc, DeliveryError | OSError | TimeoutError):
                log.exception("unexpected error sending outbox row %s", row_id)
            await self._reschedule(row_id, RetryLater(f"{type(exc).__name__}: {exc}"))
        else:
            await self._finish(row_id, OutboxStatus.SENT, None)

    async def _finish(
        self, row_id: int, status: OutboxStatus, error: str | None, unreachable: tuple[str, str] | None = None
    ) -> None:
        now = self._clock()
        async with self._sessions.begin() as session:
            row = await session.get_one(OutboxMessage, row_id)
            row.status = status
            if error is not None:  # a sent row keeps the error of its last failed try, for statistics
                row.last_error = error
            if status is OutboxStatus.SENT:
                row.sent_at = now
            if unreachable:
                await session.execute(
                    update(ChannelIdentity)
                    .where(ChannelIdentity.channel == unreachable[0], ChannelIdentity.external_id == unreachable[1])
                    .values(unreachable_since=now)
                )

    async def _reschedule(self, row_id: int, exc: RetryLater) -> None:
        now = self._clock()
        async with self._sessions.begin() as session:
            row = await session.get_one(OutboxMessage, row_id)
            row.last_error = str(exc)
            if row.attempts >= MAX_ATTEMPTS:
                row.status = OutboxStatus.FAILED
                return
            delay = exc.retry_after if exc.retry_after is not None else min(2.0**row.attempts, MAX_BACKOFF_SECONDS)
            row.status = OutboxStatus.PENDING
            row.next_attempt_at = now + dt.timedelta(seconds=delay)
