"""The outbox sender: delivers committed messages, in order per recipient, once.

Rows go pending -> claimed -> sending -> sent. A claimed bulk row waits for its
slot under the channel's limits and was certainly not sent: after a crash it
is simply pending again. A bulk message is marked "sending" (and committed)
right before the platform call, so a crash during the call is visible on
restart and the message is marked "unknown", not resent (see DESIGN.md,
invariant 2). A reply to a resident goes from claimed to the call directly: after
a crash it counts as interrupted and is sent again (a rare duplicate beats a lost
answer). Most replies skip the claim: the dispatcher commits them as "sending"
and hands them to the running sender (:meth:`OutboxSender.take`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, and_, bindparam, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import aliased

from bot.ratelimit import ChannelLimiter
from bot.transport import DeliveryError, OutOfWindow, RetryLater, Transport, Unreachable, outside_window
from flows.community import QuietHours
from flows.types import Reply
from storage.clock import LOCAL_TZ, Clock, utc_now
from storage.models import ChannelIdentity, OutboxMessage, OutboxStatus, Priority
from storage.repo import Outgoing
from storage.retry import while_unavailable

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
MAX_BACKOFF_SECONDS = 300.0
BATCH = 50
BATCHES_IN_FLIGHT = 2
MAX_CHAIN = 8  # rows to one recipient in one batch, on a channel with no per-chat limit
LEAD_CHECK_SECONDS = 0.5
_EPOCH = dt.datetime.min.replace(tzinfo=dt.UTC)
_OUTBOX = OutboxMessage.__table__
_MARK_SENT = (  # built once: it runs after every batch sent (see storage.repo on building statements)
    update(_OUTBOX)
    .where(_OUTBOX.c.id.in_(bindparam("ids", expanding=True)))
    .values(status=OutboxStatus.SENT, sent_at=bindparam("at"))
)


class OutboxSender:
    """Drains the outbox: one loop per channel, at that channel's limits."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        transports: Mapping[str, Transport],
        clock: Clock = utc_now,
        quiet_hours: QuietHours | None = None,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._quiet_hours = quiet_hours
        self._transports: dict[str, Transport] = {}
        self._batch: dict[str, int] = {}
        self._chain: dict[str, int] = {}
        self._limiters: dict[str, ChannelLimiter] = {}
        self._wakeups: dict[str, asyncio.Event] = {}
        self._windows: dict[str, dt.timedelta | None] = {}  # see Transport: sent only so long after the last inbound
        self._paused_until: dict[str, dt.datetime] = {}  # after a 429: nothing goes out on that channel
        self._running = False  # run() is draining: replies may be handed over directly (see take)
        self._taken: set[asyncio.Task[int]] = set()
        for transport in transports.values():
            self.add_transport(transport)

    def add_transport(self, transport: Transport) -> None:
        self._transports[transport.channel] = transport
        self._limiters[transport.channel] = ChannelLimiter(transport.limits)
        # At a rate limit, claim about half a second of messages at a time, so a resident's reply
        # committed meanwhile waits at most that long behind a bulk send.
        rate = transport.limits.per_second
        self._batch[transport.channel] = max(1, min(BATCH, int(rate // 2))) if rate else BATCH
        # A recipient's rows in one batch: no more than the per-chat burst, so no batch waits on a chat's limit.
        per_chat = transport.limits.per_chat
        self._chain[transport.channel] = max(1, per_chat[0]) if per_chat else MAX_CHAIN
        self._wakeups[transport.channel] = asyncio.Event()
        self._windows[transport.channel] = getattr(transport, "window", None)

    def wake(self) -> None:
        """Tell the running loops that new rows were committed."""
        for event in self._wakeups.values():
            event.set()

    def accepts(self, channel: str) -> bool:
        """Whether a reply on ``channel`` committed now may be handed over with :meth:`take`."""
        return self._running and channel in self._transports

    def take(self, rows: Sequence[tuple[int, Outgoing]]) -> None:
        """Send replies the dispatcher committed as "sending" (storage.repo.enqueue_taken).

        A resident's answer then costs no claim: the dispatcher checked in its transaction that
        nothing to that recipient was waiting before them. After a crash they are replies in flight,
        so :meth:`recover` makes them pending again (a rare duplicate beats a lost answer).
        """
        batch = [_Row(row_id, o.channel, o.recipient, o.payload, o.priority) for row_id, o in rows]
        task = asyncio.create_task(self._send_batch(batch))
        self._taken.add(task)
        task.add_done_callback(self._taken.discard)

    async def recover(self) -> None:
        """After a restart: retry in-flight replies, mark in-flight bulk messages unknown."""
        channels = list(self._transports)
        async with self._sessions.begin() as session:
            mine = OutboxMessage.channel.in_(channels)
            reply, bulk = OutboxMessage.priority <= Priority.REPLY, OutboxMessage.priority > Priority.REPLY
            # A claimed reply may have been sent too (a reply goes from claimed to the call).
            replies = and_(mine, reply, OutboxMessage.status.in_([OutboxStatus.CLAIMED, OutboxStatus.SENDING]))
            await session.execute(
                update(OutboxMessage)
                .where(replies)
                .values(status=OutboxStatus.PENDING, last_error="interrupted while sending; retried")
            )
            await session.execute(
                update(OutboxMessage)
                .where(mine, bulk, OutboxMessage.status == OutboxStatus.CLAIMED)
                .values(status=OutboxStatus.PENDING)
            )
            await session.execute(
                update(OutboxMessage)
                .where(mine, bulk, OutboxMessage.status == OutboxStatus.SENDING)
                .values(status=OutboxStatus.UNKNOWN, last_error="interrupted while sending; not retried")
            )

    async def drain(self, channel: str | None = None) -> int:
        """Send everything that is due now (on one channel, or all); return how many rows were handled."""
        handled = 0
        for name in [channel] if channel else list(self._transports):
            # The next batch is claimed while the current one goes out, so the channel's limiter never
            # waits on the database; claimed rows are in progress, so a recipient's next row waits its turn.
            in_flight: set[asyncio.Task[int]] = set()
            try:
                while self._clock() >= self._paused_until.get(name, _EPOCH):
                    batch = await self._claim(name)
                    if batch:
                        in_flight.add(asyncio.create_task(self._send_batch(batch)))
                    if in_flight and (not batch or len(in_flight) >= BATCHES_IN_FLIGHT):
                        # Full, or nothing claimable until a batch in flight is done (its recipients' next rows).
                        done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                        handled += sum(task.result() for task in done)
                    elif not batch:
                        break
                handled += sum(await asyncio.gather(*in_flight))
            except asyncio.CancelledError:  # stopped: no batch goes on sending in the background
                for task in in_flight:
                    task.cancel()
                await asyncio.gather(*in_flight, return_exceptions=True)
                raise
        return handled

    async def _send_batch(self, batch: list[_Row]) -> int:
        # A recipient's rows in a batch go one after the other, in order (see _claim); recipients concurrently.
        chains: dict[tuple[str, str], list[int]] = {}
        for index, row in enumerate(batch):
            chains.setdefault((row.channel, row.recipient), []).append(index)
        results: list[DeliveryError | _NotTried | None] = [None] * len(batch)

        async def send_chain(indexes: list[int]) -> None:
            for position, index in enumerate(indexes):
                results[index] = error = await self._deliver(batch[index])
                if isinstance(error, RetryLater):  # the rest must not overtake it: they wait their turn
                    for later in indexes[position + 1 :]:
                        results[later] = NOT_TRIED
                    return

        await asyncio.gather(*(send_chain(indexes) for indexes in chains.values()))
        # What happened is known now: it must reach the database, or the rows stay claimed until a restart.
        await while_unavailable(lambda: self._record(batch, results), "recording sent messages")
        return len(batch)

    async def run(self, poll_seconds: float = 1.0) -> None:
        """Drain every channel forever: on :meth:`wake`, and every ``poll_seconds`` for retries."""
        self._running = True
        try:
            await asyncio.gather(*(self._run_channel(name, poll_seconds) for name in self._transports))
        finally:
            self._running = False
            await self._stop_taken()

    async def _stop_taken(self, seconds: float = 5.0) -> None:
        """Once the sender stops, nothing it was handed goes on in the background: the replies being sent
        finish within ``seconds`` or are cancelled (then they are replies in flight, see :meth:`recover`)."""
        if not self._taken:
            return
        _, late = await asyncio.wait(set(self._taken), timeout=seconds)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    async def run_while_leading(self, leading: asyncio.Event, poll_seconds: float = 1.0) -> None:
        """:meth:`run`, but only while ``leading`` is set: on PostgreSQL one process holds the
        scheduler's advisory lock, and only it sends, so the platforms' limits hold across workers.
        Each time the lead is taken, rows left in flight by the previous sender are recovered first (this
        process's own were settled when its :meth:`run` stopped)."""
        while True:
            await leading.wait()
            try:
                await self.recover()
            except Exception:
                log.exception("outbox recovery failed; retrying")
                await asyncio.sleep(poll_seconds)
                continue
            running = asyncio.create_task(self.run(poll_seconds))
            try:
                while leading.is_set() and not running.done():
                    await asyncio.wait({running}, timeout=LEAD_CHECK_SECONDS)
            finally:
                running.cancel()
                try:
                    await running
                except asyncio.CancelledError:
                    pass
                except Exception:
                    log.exception("the outbox sender stopped; starting it again")

    async def _run_channel(self, channel: str, poll_seconds: float) -> None:
        wakeup = self._wakeups[channel]
        while True:
            wakeup.clear()
            try:
                await self.drain(channel)
            except Exception:  # keep the loop alive; rows stay in the outbox
                log.exception("outbox drain failed on %s", channel)
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that arrives as
            # the wakeup does, and the sender then never stops (a test's teardown hung for minutes).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll_seconds):
                    await wakeup.wait()

    def bulk_allowed(self, now: dt.datetime) -> bool:
        """False during quiet hours: then only replies to residents go out."""
        return self._quiet_hours is None or not self._quiet_hours.contains(now.astimezone(LOCAL_TZ).time())

    async def _claim(self, channel: str) -> list[_Row]:
        """Mark the next due rows "claimed", replies first (and only replies during quiet hours).

        A row is held back while an earlier row to the same recipient is in flight or waiting to be
        retried (a reply is never held back by a bulk message). A recipient's rows that are due
        together are claimed together and sent one after the other: a turn's three replies take
        one claim, not three.
        """
        now = self._clock()
        wanted = [] if self.bulk_allowed(now) else [OutboxMessage.priority <= Priority.REPLY]
        earlier = aliased(OutboxMessage)
        # In order per recipient, except that a reply never waits behind a bulk message.
        blocked = exists().where(
            earlier.channel == OutboxMessage.channel,
            earlier.recipient == OutboxMessage.recipient,
            or_(
                earlier.status.in_([OutboxStatus.CLAIMED, OutboxStatus.SENDING]),
                # A due one is claimed in this batch too, ahead of this row ((priority, id) order).
                and_(earlier.status == OutboxStatus.PENDING, earlier.next_attempt_at > now),
            ),
            earlier.id < OutboxMessage.id,
            or_(OutboxMessage.priority > Priority.REPLY, earlier.priority <= Priority.REPLY),
        )
        o = OutboxMessage
        identity = ChannelIdentity
        windowed = self._windows.get(channel) is not None
        columns = [o.id, o.channel, o.recipient, o.payload, o.priority]
        query = select(*columns, identity.last_inbound_at) if windowed else select(*columns)
        if windowed:
            query = query.outerjoin(identity, and_(identity.channel == o.channel, identity.external_id == o.recipient))
        async with self._sessions.begin() as session:
            rows = (
                await session.execute(
                    query.where(
                        OutboxMessage.status == OutboxStatus.PENDING,
                        OutboxMessage.channel == channel,
                        OutboxMessage.next_attempt_at <= now,
                        *wanted,
                        ~blocked,
                    )
                    .order_by(OutboxMessage.priority, OutboxMessage.id)
                    .limit(self._batch[channel])
                    .with_for_update(skip_locked=True, of=OutboxMessage)
                )
            ).all()
            rows = _first_per_recipient(rows, self._chain[channel])
            if rows:
                await session.execute(
                    update(o)
                    .where(o.id.in_([row.id for row in rows]))
                    .values(status=OutboxStatus.CLAIMED, attempts=o.attempts + 1)
                    .execution_options(synchronize_session=False)
                )
            return [
                _Row(
                    row.id,
                    row.channel,
                    row.recipient,
                    row.payload,
                    row.priority,
                    row.last_inbound_at if windowed else None,
                )
                for row in rows
            ]

    async def _deliver(self, row: _Row) -> DeliveryError | None:
        """Send one row; return what went wrong, or None. Touches no database."""
        urgent = row.priority <= Priority.REPLY
        window = None if urgent else self._windows.get(row.channel)  # a reply answers now
        if window is not None and outside_window(row.last_inbound_at, window, self._clock()):
            return OutOfWindow(f"their last message is older than {window}: the platform would refuse it")
        try:
            async with self._limiters[row.channel].slot(row.recipient, urgent) as sending:
                paused = self._paused_until.get(row.channel, _EPOCH) - self._clock()
                if paused > dt.timedelta(0):  # a 429 arrived meanwhile: the platform is not called
                    return RetryLater("waiting after a 429", paused.total_seconds())
                if not urgent:
                    await self._mark_sending(row.id)
                sending()
                await self._transports[row.channel].send(row.recipient, Reply.from_dict(row.payload))
        except DeliveryError as exc:
            if isinstance(exc, RetryLater) and exc.retry_after is not None:
                until = self._clock() + dt.timedelta(seconds=exc.retry_after)
                self._paused_until[row.channel] = max(until, self._paused_until.get(row.channel, _EPOCH))
            return exc
        except Exception as exc:  # timeouts, network errors, 5xx, and bugs: back off, never drop
            if not isinstance(exc, OSError | TimeoutError):
                log.exception("unexpected error sending outbox row %s", row.id)
            return RetryLater(f"{type(exc).__name__}: {exc}")
        return None

    async def _mark_sending(self, row_id: int) -> None:
        """Committed before a bulk message's platform call: a crash from here on leaves it "unknown"."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row_id)
                .values(status=OutboxStatus.SENDING)
                .execution_options(synchronize_session=False)
            )

    async def _record(self, batch: list[_Row], results: list[DeliveryError | _NotTried | None]) -> None:
        """Write the outcome of a whole batch in one transaction."""
        now = self._clock()
        async with self._sessions.begin() as session:
            untried = [row.id for row, result in zip(batch, results, strict=True) if result is NOT_TRIED]
            if untried:  # pending again, as if never claimed
                await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id.in_(untried))
                    .values(status=OutboxStatus.PENDING, attempts=OutboxMessage.attempts - 1)
                    .execution_options(synchronize_session=False)
                )
            delivered = [sent.id for sent, error in zip(batch, results, strict=True) if error is None]
            if delivered:  # last_error is kept: the last failed try
                await session.execute(_MARK_SENT, {"ids": delivered, "at": now})
            failed = [
                (sent, error) for sent, error in zip(batch, results, strict=True) if isinstance(error, DeliveryError)
            ]
            if not failed:
                return
            rows = {
                r.id: r
                for r in await session.scalars(
                    select(OutboxMessage).where(OutboxMessage.id.in_([sent.id for sent, _ in failed]))
                )
            }
            for sent, error in failed:
                row = rows[sent.id]
                row.last_error = str(error)
                if isinstance(error, OutOfWindow):
                    row.status = OutboxStatus.OUT_OF_WINDOW
                elif isinstance(error, Unreachable):
                    row.status = OutboxStatus.UNREACHABLE
                    await session.execute(
                        update(ChannelIdentity)
                        .where(ChannelIdentity.channel == sent.channel, ChannelIdentity.external_id == sent.recipient)
                        .values(unreachable_since=now)
                    )
                elif isinstance(error, RetryLater) and row.attempts < MAX_ATTEMPTS:
                    wait = error.retry_after if error.retry_after is not None else 2.0**row.attempts
                    row.status = OutboxStatus.PENDING
                    row.next_attempt_at = now + dt.timedelta(seconds=min(wait, MAX_BACKOFF_SECONDS))
                else:  # Rejected, or out of attempts
                    row.status = OutboxStatus.FAILED


def _first_per_recipient(rows: Sequence[Row[Any]], limit: int) -> list[Row[Any]]:
    """The first ``limit`` rows of each recipient, in the given order."""
    seen = Counter[str]()
    kept = []
    for row in rows:
        seen[row.recipient] += 1
        if seen[row.recipient] <= limit:
            kept.append(row)
    return kept


class _NotTried:
    """A row not sent because an earlier row to the same recipient has to be retried first."""


NOT_TRIED = _NotTried()


@dataclass(frozen=True)
class _Row:
    id: int
    channel: str
    recipient: str
    payload: dict
    priority: int
    last_inbound_at: dt.datetime | None = None  # only for channels with a sending window
