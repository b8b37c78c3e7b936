"""Any sequence of inbound events through the dispatcher (consent gate, host conversations, the engine,
storage), some delivered twice, leaves a valid stored state: each event processed once, every new event
answered, a redelivery answered by nothing, the stored conversation readable and on a real step."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot.community.consent import AGREE, DECLINE
from bot.dispatcher import Dispatcher, Envelope
from flows.catalog import Catalog
from flows.types import ConversationState, Inbound, InboundKind, Mode
from storage.db import create_engine, make_sessionmaker
from storage.migrate import upgrade
from storage.models import ChannelIdentity, Conversation, OutboxMessage, ProcessedInbound
from tests.helpers import T0
from tests.test_engine import inbounds

senders = itertools.count()
first_contact = st.sampled_from(
    [
        Inbound(InboundKind.BUTTON, T0, button_id=AGREE),
        Inbound(InboundKind.BUTTON, T0, button_id=DECLINE),
        Inbound(InboundKind.TEXT, T0, text="1"),
        Inbound(InboundKind.TEXT, T0, text="Thôn Đông"),
        Inbound(InboundKind.TEXT, T0, text="/xoa"),
    ]
)
events = st.lists(st.tuples(st.one_of(first_contact, inbounds), st.booleans()), max_size=15)


async def count(sessions, model, *where) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where)) or 0


async def newest(sessions, *where) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.coalesce(func.max(OutboxMessage.id), 0)).where(*where)) or 0


def test_any_sequence_of_events_leaves_a_valid_stored_state(shipped: Catalog, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'props.db'}"

    async def migrate() -> None:
        engine = create_engine(url)
        await upgrade(engine)
        await engine.dispose()

    asyncio.run(migrate())

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(sequence=events)
    def check(sequence: list[tuple[Inbound, bool]]) -> None:
        asyncio.run(scenario(sequence))

    async def scenario(sequence: list[tuple[Inbound, bool]]) -> None:
        engine = create_engine(url)
        sessions = make_sessionmaker(engine)
        dispatcher = Dispatcher(shipped, sessions)
        sender = f"p{next(senders)}"
        mine = OutboxMessage.recipient == sender
        try:
            for index, (inbound, twice) in enumerate(sequence):
                envelope = Envelope("console", f"{sender}-{index}", sender, inbound)
                # The newest row's id, not a count: /xoa deletes the person's earlier messages (ids are never reused).
                before = await newest(sessions, mine)
                assert await dispatcher.handle(envelope) is True
                after = await newest(sessions, mine)
                assert after > before, inbound  # every new event gets an answer
                if twice:
                    assert await dispatcher.handle(envelope) is False
                    assert await newest(sessions, mine) == after  # a redelivery sends nothing
            assert await count(sessions, ProcessedInbound, ProcessedInbound.event_id.like(f"{sender}-%")) == len(
                sequence
            )
            async with sessions() as session:
                stored = await session.scalar(
                    select(Conversation.state)
                    .join(ChannelIdentity, ChannelIdentity.person_id == Conversation.person_id)
                    .where(ChannelIdentity.channel == "console", ChannelIdentity.external_id == sender)
                )
            if stored is not None:
                state = ConversationState.from_dict(stored)
                assert state.to_dict() == ConversationState.from_dict(state.to_dict()).to_dict()
                if state.mode is not Mode.MENU:
                    assert shipped.step(state.module, state.step) is not None
        finally:
            await engine.dispose()

    check()
