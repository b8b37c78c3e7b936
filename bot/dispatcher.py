"""Inbound event -> engine -> one transaction (dedupe key, state, log, outbox)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from bot.community import consent, host
from bot.community.turn import DEFAULT_BASE_URL, Turn
from bot.inbound_throttle import InboundThrottle
from flows.catalog import Catalog
from flows.engine import advance
from flows.types import ConversationState, Inbound
from storage.clock import Clock, utc_now
from storage.models import Person, Priority
from storage.repo import (
    PENDING_ADDED,
    Outgoing,
    StoredState,
    claim_inbound,
    enqueue,
    enqueue_taken,
    find_people,
    lock_states,
    log_events,
    record_inbound,
    replies_waiting,
    save_states,
)

log = logging.getLogger(__name__)

MAX_TRIES = 5
MAX_GROUP = 64  # events committed in one transaction at most


@dataclass(frozen=True)
class Envelope:
    """An inbound event with where it came from.

    ``event_id`` is the platform's own id (Telegram update_id, Zalo msg_id):
    the same event delivered twice carries the same id.
    """

    channel: str
    event_id: str
    sender_id: str
    inbound: Inbound


class Handoff(Protocol):
    """The running outbox sender of this process (bot.sender.OutboxSender)."""

    def accepts(self, channel: str) -> bool: ...

    def take(self, rows: Sequence[tuple[int, Outgoing]]) -> None: ...


class Dispatcher:
    """Runs the engine for each inbound event and stores everything it produced at once."""

    def __init__(
        self,
        catalog: Catalog,
        sessions: async_sessionmaker[AsyncSession],
        on_commit: Callable[[], None] = lambda: None,
        clock: Clock = utc_now,
        base_url: str = DEFAULT_BASE_URL,
        throttle: InboundThrottle | None = None,
        windows: Mapping[str, dt.timedelta] | None = None,
        handoff: Handoff | None = None,
    ) -> None:
        self.catalog = catalog
        self._throttle = throttle  # per-sender flood control, before anything is queued
        self._sessions = sessions
        self._on_commit = on_commit
        self._clock = clock
        self._base_url = base_url  # where the bot's web pages are reached (login links point there)
        self._windows = dict(windows or {})  # Settings.sending_windows, for broadcast previews
        self._handoff = handoff  # replies go straight to it at commit, when it accepts them
        self._waiting: list[tuple[Envelope, asyncio.Future[bool]]] = []
        self._committer: asyncio.Task[None] | None = None
        self._effects: set[asyncio.Task[None]] = set()

    async def handle(self, envelope: Envelope) -> bool:
        """Process one event; False if it was a redelivery, or dropped by the throttle, and nothing changed.

        Returns once the event's effects are committed. Events that arrive while a
        commit is running are committed together in the next transaction (group
        commit); if that transaction fails, each of its events is retried alone, so
        one bad event never takes others down with it.
        """
        if self._throttle is not None and not await self._throttle.admit(envelope.channel, envelope.sender_id):
            return False  # superseded by a newer event from the same sender (see bot.inbound_throttle)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((envelope, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_waiting())
        return await future

    async def _commit_waiting(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_GROUP], self._waiting[MAX_GROUP:]
            try:
                results = await self._apply_all([envelope for envelope, _ in batch])
            except Exception:
                log.debug("group commit of %d events failed; committing each alone", len(batch), exc_info=True)
                if len(batch) == 1:
                    await self._settle_alone(*batch[0])
                else:
                    for envelope, future in batch:
                        await self._settle_alone(envelope, future)
                continue
            for (_, future), processed in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(processed)

    async def _settle_alone(self, envelope: Envelope, future: asyncio.Future[bool]) -> None:
        """Commit one event in its own transaction, retrying when another worker got there first."""
        for attempt in range(1, MAX_TRIES + 1):
            try:
                processed = (await self._apply_all([envelope]))[0]
            except (StaleDataError, IntegrityError) as exc:
                # Another worker created this person (or changed their state) first: redo on fresh data.
                if attempt < MAX_TRIES:
                    log.info("concurrent update for %s/%s, retrying", envelope.channel, envelope.sender_id)
                    continue
                future.set_exception(exc)
            except Exception as exc:
                future.set_exception(exc)
            else:
                future.set_result(processed)
            return

    async def _apply_all(self, envelopes: list[Envelope]) -> list[bool]:
        """Apply events in one transaction with a handful of statements, however many events."""
        now = self._clock()
        effects: list[Callable[[], Awaitable[None]]] = []
        taken: list[tuple[int, Outgoing]] = []
        async with self._sessions.begin() as session:
            with session.no_autoflush:
                fresh = await claim_inbound(session, [(e.channel, e.event_id) for e in envelopes], now)
                results = []
                for envelope in envelopes:  # the first copy of a new event id counts; the rest are redeliveries
                    key = (envelope.channel, envelope.event_id)
                    results.append(key in fresh)
                    fresh.discard(key)
                todo = [envelope for envelope, new in zip(envelopes, results, strict=True) if new]
                if todo:
                    people = await find_people(session, [(e.channel, e.sender_id) for e in todo])
                    # Locked on PostgreSQL: one person's events apply one at a time, across workers.
                    conversations = await lock_states(session, {p.id for p in people.values()})
                    events: list[dict[str, Any]] = []
                    outgoing: list[Outgoing] = []
                    for envelope in todo:
                        await self._apply(session, envelope, people, conversations, now, events, outgoing, effects)
                    await save_states(session, conversations, now)
                    for channel in {e.channel for e in todo}:
                        await record_inbound(session, channel, [e.sender_id for e in todo if e.channel == channel], now)
                    await log_events(session, events)
                    direct, queued = await self._split_for_handoff(session, outgoing)
                    await enqueue(session, queued, now)
                    taken = list(zip(await enqueue_taken(session, direct, now), direct, strict=True))
            pending = bool(session.info.get(PENDING_ADDED))
        if taken:
            self._handoff.take(taken)  # type: ignore[union-attr]
        if pending:
            self._on_commit()
        for effect in effects:  # committed: now the effects may run (a crash here loses them; see Turn.after_commit)
            task = asyncio.create_task(self._run_effect(effect))
            self._effects.add(task)
            task.add_done_callback(self._effects.discard)
        return results

    async def _split_for_handoff(
        self, session: AsyncSession, outgoing: list[Outgoing]
    ) -> tuple[list[Outgoing], list[Outgoing]]:
        """(replies the running sender takes at once, replies queued for it to claim).

        A reply is taken only when nothing to the same recipient is waiting before it, so the
        order per recipient holds (a reply never waits for bulk messages, as in the sender's claim).
        """
        handoff = self._handoff
        channels = {o.channel for o in outgoing if handoff is not None and handoff.accepts(o.channel)}
        if not channels:
            return [], outgoing
        waiting = set()
        for channel in channels:
            recipients = [o.recipient for o in outgoing if o.channel == channel]
            waiting |= {(channel, r) for r in await replies_waiting(session, channel, recipients)}
        direct = [o for o in outgoing if o.channel in channels and (o.channel, o.recipient) not in waiting]
        return direct, [o for o in outgoing if o.channel not in channels or (o.channel, o.recipient) in waiting]

    @staticmethod
    async def _run_effect(effect: Callable[[], Awaitable[None]]) -> None:
        try:
            await effect()
        except Exception:
            log.exception("an after-commit effect failed")

    async def _apply(
        self,
        session: AsyncSession,
        envelope: Envelope,
        people: dict[tuple[str, str], Person],
        conversations: dict[int, StoredState],
        now: dt.datetime,
        events: list[dict[str, Any]],
        outgoing: list[Outgoing],
        effects: list[Callable[[], Awaitable[None]]],
    ) -> None:
        """Handle one event: new state in the session, log rows and replies to the lists.

        An account the bot does not know goes through the consent gate; a known
        person's inbound goes to the host's own conversation if one is open,
        else to the engine (which may hand an action back to the host).
        """
        account = (envelope.channel, envelope.sender_id)
        person = people.get(account)
        stored = conversations.get(person.id) if person else None
        state = ConversationState.from_dict(stored.state if stored else None)
        turn = Turn(
            session,
            self.catalog,
            envelope.channel,
            envelope.sender_id,
            person,
            state,
            envelope.inbound,
            now,
            base_url=self._base_url,
            windows=self._windows,
            states=conversations,
        )
        if person is None:
            await consent.gate(turn)
        elif not await host.take(turn):
            outcome = advance(self.catalog, state, envelope.inbound)
            turn.state = outcome.state
            turn.replies.extend(outcome.replies)
            turn.events.extend(
                {
                    "module": event.module,
                    "module_version": event.module_version,
                    "kind": event.kind.value,
                    "step": event.step,
                }
                for event in outcome.events
            )
            if outcome.handoff:
                await host.start(turn, outcome.handoff)
        if turn.deleted:
            people.pop(account, None)
            if person is not None:
                conversations.pop(person.id, None)
        elif turn.person is not None:
            person = people[account] = turn.person
            if (person.opted_out_at is None) == (not turn.state.subscribed):  # "dừng nhận tin" changed
                person.opted_out_at = None if turn.state.subscribed else now
            conversations.setdefault(person.id, StoredState(None)).state = turn.state.to_dict()
            events.extend(
                {
                    **event,
                    "person_id": person.id,
                    "subject": person.subject,
                    "area_code": person.area_code,
                    "channel": envelope.channel,
                    "at": envelope.inbound.at,
                    "assisted_by": None,
                    "corrects_id": None,
                }
                for event in turn.events
            )
        effects.extend(turn.after_commit)
        person_id = turn.person.id if turn.person is not None else None
        outgoing.extend(
            Outgoing(envelope.channel, envelope.sender_id, person_id, reply.to_dict(), Priority.REPLY)
            for reply in turn.replies
        )
