"""The outbox sender: order, retries, unreachable people, recovery after a crash."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt

import pytest
from sqlalchemy import select, update

from bot.dispatcher import Dispatcher, Envelope
from bot.ratelimit import RateLimits
from bot.sender import LEAD_CHECK_SECONDS, MAX_ATTEMPTS, OutboxSender
from bot.transport import Rejected, RetryLater, Unreachable
from content import read_content
from flows.catalog import load_catalog
from flows.community import QuietHours
from flows.types import Inbound, InboundKind, Reply
from storage.clock import LOCAL_TZ, utc_now
from storage.models import ChannelIdentity, OutboxMessage, OutboxStatus, Person, Priority
from storage.repo import Outgoing, enqueue
from tests.helpers import T0, FakeClock


class RecordingTransport:
    """Records what it sends; raises the queued failures first."""

    channel = "test"
    limits = RateLimits()

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.failures: dict[str, list[Exception]] = {}

    async def send(self, recipient: str, reply: Reply) -> None:
        queued = self.failures.get(reply.text)
        if queued:
            raise queued.pop(0)
        self.sent.append((recipient, reply.text))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def transport() -> RecordingTransport:
    return RecordingTransport()


@pytest.fixture
def sender(sessions, transport, clock) -> OutboxSender:
    return OutboxSender(sessions, {"test": transport}, clock=clock)


async def queue(sessions, recipient: str, *texts: str, priority: int = Priority.REPLY) -> None:
    async with sessions.begin() as session:
        await enqueue(
            session, [Outgoing("test", recipient, None, Reply(text=t).to_dict(), priority) for t in texts], T0
        )


async def statuses(sessions) -> dict[str, tuple[str, int, str | None]]:
    async with sessions() as session:
        rows = (await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all()
    return {r.payload["text"]: (r.status, r.attempts, r.last_error) for r in rows}


async def test_sends_in_order_once(sessions, sender, transport) -> None:
    await queue(sessions, "a", "a1", "a2", "a3")
    await queue(sessions, "b", "b1")
    assert await sender.drain() == 4
    assert [t for r, t in transport.sent if r == "a"] == ["a1", "a2", "a3"]
    assert ("b", "b1") in transport.sent
    assert await sender.drain() == 0
    assert len(transport.sent) == 4
    assert {s for s, _, _ in (await statuses(sessions)).values()} == {"sent"}


async def test_replies_go_before_bulk(sessions, sender, transport) -> None:
    await queue(sessions, "x", "bulk", priority=Priority.BULK)
    await queue(sessions, "y", "reply")
    await sender.drain()
    assert [t for _, t in transport.sent] == ["reply", "bulk"]


class ClaimWatching(RecordingTransport):
    """Records, for each message sent, how many claims the sender had made by then."""

    def __init__(self, limits: RateLimits | None = None) -> None:
        super().__init__()
        self.limits = limits or RateLimits()
        self.claims: list[int] = []  # the size of each non-empty claim, filled by watch_claims
        self.claim_of: dict[str, int] = {}

    async def send(self, recipient: str, reply: Reply) -> None:
        await super().send(recipient, reply)
        self.claim_of[reply.text] = len(self.claims)

    def watch_claims(self, sender: OutboxSender) -> OutboxSender:
        claim = sender._claim

        async def counted(channel: str):
            rows = await claim(channel)
            if rows:
                self.claims.append(len(rows))
            return rows

        sender._claim = counted  # type: ignore[method-assign]
        return sender


async def test_a_recipients_due_rows_are_claimed_together_and_sent_in_order(sessions, clock) -> None:
    transport = ClaimWatching()
    sender = transport.watch_claims(OutboxSender(sessions, {"test": transport}, clock=clock))
    await queue(sessions, "a", "a1", "a2", "a3")
    await queue(sessions, "b", "b1")
    await sender.drain()
    assert [t for r, t in transport.sent if r == "a"] == ["a1", "a2", "a3"]
    assert transport.claims == [4]  # one claim for a turn's three replies, not three
    assert {s for s, _, _ in (await statuses(sessions)).values()} == {"sent"}


async def test_no_more_rows_to_one_recipient_in_a_claim_than_its_chat_burst(sessions, clock) -> None:
    transport = ClaimWatching(RateLimits(per_chat=(2, 0.01)))
    sender = transport.watch_claims(OutboxSender(sessions, {"test": transport}, clock=clock))
    await queue(sessions, "a", "a1", "a2", "a3", "a4", "a5")
    await sender.drain()
    assert [t for _, t in transport.sent] == ["a1", "a2", "a3", "a4", "a5"]
    assert transport.claims == [2, 2, 1]
    assert [transport.claim_of[f"a{i}"] for i in range(1, 6)] == [1, 1, 2, 2, 3]


async def test_a_retry_in_a_chain_holds_the_rest_back_without_counting_their_attempts(
    sessions, sender, transport, clock
) -> None:
    transport.failures["a2"] = [TimeoutError("slow")]
    await queue(sessions, "a", "a1", "a2", "a3")
    await sender.drain()
    assert transport.sent == [("a", "a1")]
    result = await statuses(sessions)
    assert result["a2"][:2] == ("pending", 1)
    assert result["a3"][:2] == ("pending", 0)  # not tried: a3 never overtakes a2
    clock.advance(60)
    await sender.drain()
    assert [t for _, t in transport.sent] == ["a1", "a2", "a3"]
    assert (await statuses(sessions))["a3"][:2] == ("sent", 1)


async def test_retry_after_waits_and_keeps_order(sessions, sender, transport, clock) -> None:
    transport.failures["a1"] = [RetryLater("429 Too Many Requests", retry_after=5)]
    await queue(sessions, "a", "a1", "a2")
    await queue(sessions, "b", "b1")
    await sender.drain()
    assert transport.sent == []  # after a 429 the channel waits: b1 too, and a2 waits behind a1 anyway
    clock.advance(4)
    await sender.drain()
    assert transport.sent == []
    clock.advance(1)
    await sender.drain()
    assert sorted(transport.sent) == [("a", "a1"), ("a", "a2"), ("b", "b1")]
    assert [t for r, t in transport.sent if r == "a"] == ["a1", "a2"]
    assert (await statuses(sessions))["a1"] == ("sent", 2, "429 Too Many Requests")


async def test_errors_back_off_then_fail_visibly(sessions, sender, transport, clock) -> None:
    transport.failures["x"] = [TimeoutError("slow")] * MAX_ATTEMPTS
    await queue(sessions, "a", "x")
    for _ in range(MAX_ATTEMPTS):
        await sender.drain()
        clock.advance(3600)
    status, attempts, error = (await statuses(sessions))["x"]
    assert (status, attempts) == ("failed", MAX_ATTEMPTS)
    assert "TimeoutError: slow" in error
    assert transport.sent == []


async def test_rejected_fails_at_once_with_reason(sessions, sender, transport) -> None:
    transport.failures["bad"] = [Rejected("400 message is too long")]
    await queue(sessions, "a", "bad", "next")
    await sender.drain()
    assert (await statuses(sessions))["bad"] == ("failed", 1, "400 message is too long")
    assert transport.sent == [("a", "next")]


async def test_blocked_person_is_marked_unreachable(sessions, sender, transport) -> None:
    async with sessions.begin() as session:
        person = Person(created_at=T0)
        session.add(person)
        await session.flush()
        session.add(ChannelIdentity(person_id=person.id, channel="test", external_id="a", created_at=T0))
    transport.failures["hi"] = [Unreachable("403 Forbidden: bot was blocked by the user")]
    await queue(sessions, "a", "hi")
    await sender.drain()
    assert (await statuses(sessions))["hi"][0] == "unreachable"
    async with sessions() as session:
        identity = await session.scalar(select(ChannelIdentity))
    assert identity.unreachable_since == T0


async def test_recovery_retries_replies_but_not_bulk(sessions, sender, transport) -> None:
    await queue(sessions, "a", "reply in flight")
    await queue(sessions, "b", "bulk in flight", priority=Priority.BULK)
    async with sessions.begin() as session:  # what a crash during the platform call leaves behind
        for row in (await session.scalars(select(OutboxMessage))).all():
            row.status = OutboxStatus.SENDING
            row.attempts = 1
    await sender.recover()
    await sender.drain()
    assert transport.sent == [("a", "reply in flight")]
    result = await statuses(sessions)
    assert result["reply in flight"][0] == "sent"
    assert result["bulk in flight"][0] == "unknown"


async def test_a_claimed_reply_counts_as_interrupted_after_a_crash(sessions, sender, transport) -> None:
    await queue(sessions, "a", "claimed reply")  # claimed replies go to the call directly: it may have been sent
    async with sessions.begin() as session:
        await session.execute(update(OutboxMessage).values(status=OutboxStatus.CLAIMED, attempts=1))
    await sender.recover()
    await sender.drain()
    assert transport.sent == [("a", "claimed reply")]
    assert (await statuses(sessions))["claimed reply"] == ("sent", 2, "interrupted while sending; retried")


async def test_a_reply_never_waits_behind_bulk_to_the_same_person(sessions, sender, transport) -> None:
    await queue(sessions, "x", "bulk 1", "bulk 2", priority=Priority.BULK)
    await queue(sessions, "x", "reply")
    await sender.drain()
    assert [t for _, t in transport.sent] == ["reply", "bulk 1", "bulk 2"]


async def test_quiet_hours_hold_bulk_but_not_replies(sessions, transport, clock) -> None:
    sender = OutboxSender(sessions, {"test": transport}, clock=clock, quiet_hours=QuietHours())
    clock.now = dt.datetime(2026, 11, 2, 20, 59, 30, tzinfo=LOCAL_TZ).astimezone(dt.UTC)
    await queue(sessions, "x", "bulk", priority=Priority.BULK)
    clock.advance(60)  # 21:00:30 in Vietnam
    await queue(sessions, "y", "reply")
    await sender.drain()
    assert transport.sent == [("y", "reply")]
    clock.now = dt.datetime(2026, 11, 3, 6, 59, 59, tzinfo=LOCAL_TZ).astimezone(dt.UTC)
    assert await sender.drain() == 0
    clock.advance(1)  # 07:00
    await sender.drain()
    assert transport.sent == [("y", "reply"), ("x", "bulk")]


async def test_quiet_hours_starting_when_they_end_hold_nothing(sessions, transport, clock, any_hour_content) -> None:
    quiet = load_catalog(read_content(any_hour_content)).community.quiet_hours
    assert quiet.start == quiet.end
    sender = OutboxSender(sessions, {"test": transport}, clock=clock, quiet_hours=quiet)
    clock.now = dt.datetime(2026, 11, 2, 23, 30, tzinfo=LOCAL_TZ).astimezone(dt.UTC)
    await queue(sessions, "x", "bulk at night", priority=Priority.BULK)
    await sender.drain()
    assert transport.sent == [("x", "bulk at night")]


async def test_a_claimed_row_never_sent_is_pending_again_after_a_crash(sessions, sender, transport) -> None:
    await queue(sessions, "b", "claimed bulk", priority=Priority.BULK)
    async with sessions.begin() as session:  # claimed, waiting for its slot, when the process died
        for row in (await session.scalars(select(OutboxMessage))).all():
            row.status = OutboxStatus.CLAIMED
            row.attempts = 1
    await sender.recover()
    await sender.drain()
    assert transport.sent == [("b", "claimed bulk")]
    assert (await statuses(sessions))["claimed bulk"][0] == "sent"


async def test_a_bulk_row_is_marked_sending_before_the_call(sessions, transport, clock) -> None:
    seen: list[str] = []

    class Watching(RecordingTransport):
        async def send(self, recipient: str, reply: Reply) -> None:
            async with sessions() as session:
                seen.append(await session.scalar(select(OutboxMessage.status)))
            await super().send(recipient, reply)

    watching = Watching()
    sender = OutboxSender(sessions, {"test": watching}, clock=clock)
    await queue(sessions, "b", "bulk", priority=Priority.BULK)
    await sender.drain()
    assert seen == ["sending"]


async def test_only_the_leading_process_sends_and_it_recovers_first(sessions, sender, transport) -> None:
    leading = asyncio.Event()
    await queue(sessions, "a", "a1")
    async with sessions.begin() as session:  # left claimed by a leader that died
        await session.execute(update(OutboxMessage).values(status=OutboxStatus.CLAIMED))
    loop = asyncio.create_task(sender.run_while_leading(leading, poll_seconds=0.05))
    try:
        await asyncio.sleep(0.3)
        assert transport.sent == []  # not leading: nothing goes out, nothing is touched
        assert (await statuses(sessions))["a1"][0] == "claimed"
        leading.set()
        for _ in range(100):
            if transport.sent:
                break
            await asyncio.sleep(0.02)
        assert transport.sent == [("a", "a1")]
        leading.clear()  # the lock is lost
        await asyncio.sleep(3 * LEAD_CHECK_SECONDS)
        await queue(sessions, "a", "a2")
        sender.wake()
        await asyncio.sleep(0.3)
        assert transport.sent == [("a", "a1")]
        leading.set()
        for _ in range(100):
            if len(transport.sent) == 2:
                break
            await asyncio.sleep(0.02)
        assert transport.sent == [("a", "a1"), ("a", "a2")]
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


@contextlib.asynccontextmanager
async def running(sender: OutboxSender):
    loop = asyncio.create_task(sender.run(poll_seconds=0.05))
    try:
        await asyncio.sleep(0)
        yield
    finally:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop


async def until(predicate, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if await predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out waiting")


def hello(event_id: str, user: str = "u1") -> Envelope:
    return Envelope("test", event_id, user, Inbound(InboundKind.TEXT, utc_now(), text="/start"))


async def all_sent(sessions) -> bool:
    return {s for s, _, _ in (await statuses(sessions)).values()} == {"sent"}


async def test_a_reply_goes_to_the_running_sender_without_a_claim(sessions, mini) -> None:
    transport = ClaimWatching()
    sender = transport.watch_claims(OutboxSender(sessions, {"test": transport}))
    dispatcher = Dispatcher(mini, sessions, on_commit=sender.wake, handoff=sender)
    async with running(sender):
        await dispatcher.handle(hello("e1"))
        await dispatcher.handle(hello("e2", user="u2"))
        await until(lambda: all_sent(sessions))
    assert sorted(r for r, _ in transport.sent) == ["u1", "u2"]
    assert transport.claims == []  # handed over at commit: never claimed from the table


async def test_a_reply_waits_behind_an_earlier_reply_to_that_person(sessions, mini) -> None:
    transport = RecordingTransport()
    sender = OutboxSender(sessions, {"test": transport})
    dispatcher = Dispatcher(mini, sessions, on_commit=sender.wake, handoff=sender)
    await queue(sessions, "u1", "earlier")
    async with sessions.begin() as session:  # waiting to be retried, as after a timeout
        await session.execute(update(OutboxMessage).values(next_attempt_at=utc_now() + dt.timedelta(hours=1)))
    async with running(sender):
        await dispatcher.handle(hello("e1"))
        await asyncio.sleep(0.3)
        assert transport.sent == []  # not handed over, not claimed: "earlier" goes first
        async with sessions.begin() as session:
            await session.execute(update(OutboxMessage).values(next_attempt_at=utc_now() - dt.timedelta(seconds=1)))
        sender.wake()
        await until(lambda: all_sent(sessions))
    assert transport.sent[0][1] == "earlier"
    assert len(transport.sent) == 2


async def test_a_stopped_sender_takes_nothing_and_the_reply_waits_in_the_outbox(sessions, mini) -> None:
    transport = RecordingTransport()
    sender = OutboxSender(sessions, {"test": transport})
    dispatcher = Dispatcher(mini, sessions, on_commit=sender.wake, handoff=sender)
    await dispatcher.handle(hello("e1"))
    await asyncio.sleep(0.1)
    assert transport.sent == []
    assert {s for s, _, _ in (await statuses(sessions)).values()} == {"pending"}
    assert await sender.drain() == 1
    assert len(transport.sent) == 1


async def test_a_sender_cancelled_as_it_is_woken_stops(sessions, transport) -> None:
    """On Python 3.11, asyncio.wait_for swallowed a cancellation that arrived with the wakeup: the loop went
    on forever, and whoever stopped the sender waited for it (a test's teardown hung for minutes)."""

    async def nothing_due(channel: str | None = None) -> int:
        return 0

    for steps in range(6):  # the cancellation lands at each point of the wakeup's way through the loop
        sender = OutboxSender(sessions, {"test": transport})
        sender.drain = nothing_due  # type: ignore[method-assign]  # the loop alone, no database in between
        loop = asyncio.create_task(sender.run(poll_seconds=30))
        for _ in range(5):
            await asyncio.sleep(0)
        sender.wake()
        for _ in range(steps):
            await asyncio.sleep(0)
        loop.cancel()
        done, _ = await asyncio.wait({loop}, timeout=2)
        assert done, f"still running after a cancellation {steps} steps after the wakeup"
