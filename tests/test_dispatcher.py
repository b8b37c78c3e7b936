"""Dispatcher + storage: one transaction per inbound event, processed once (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

import bot.dispatcher
from bot.community.consent import AGREE
from bot.dispatcher import Dispatcher, Envelope
from flows.catalog import Catalog
from flows.types import Inbound, InboundKind
from storage.models import (
    Base,
    ChannelIdentity,
    Conversation,
    OutboxMessage,
    ParticipationEvent,
    Person,
    ProcessedInbound,
)
from storage.repo import lock_states, save_states
from tests.helpers import T0, completion_path


def envelope(event_id: str, text: str = "", kind: InboundKind = InboundKind.TEXT, user: str = "u1") -> Envelope:
    return Envelope("console", event_id, user, Inbound(kind, T0, text=text))


def agreed(event_id: str, user: str = "u1") -> Envelope:
    """A first contact that agrees at once (the consent button): the person exists from then on."""
    return Envelope("console", event_id, user, Inbound(InboundKind.BUTTON, T0, button_id=AGREE))


async def counts(sessions: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessions() as session:
        return {
            model.__tablename__: await session.scalar(select(func.count()).select_from(model))
            for model in (Person, ChannelIdentity, Conversation, ProcessedInbound, ParticipationEvent, OutboxMessage)
        }


async def state_of(sessions: async_sessionmaker[AsyncSession], user: str = "u1") -> tuple[dict, int]:
    async with sessions() as session:
        row = (
            await session.execute(
                select(Conversation.state, Conversation.version)
                .join(ChannelIdentity, ChannelIdentity.person_id == Conversation.person_id)
                .where(ChannelIdentity.external_id == user)
            )
        ).one()
    return row.state, row.version


async def test_migration_matches_the_models(engine: AsyncEngine) -> None:
    def diff(connection) -> list:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)

    async with engine.connect() as connection:
        found = await connection.run_sync(diff)
        if engine.dialect.name == "sqlite":
            # SQLAlchemy does not read ON DELETE from a REFERENCES clause added by ALTER TABLE ADD COLUMN;
            # SQLite's own catalogue is checked for those instead.
            found = [d for d in found if d[0] not in ("add_fk", "remove_fk") or _fk_key(d[1]) not in _fk_keys(found)]
            for item in found:
                assert item[0] not in ("add_fk", "remove_fk"), item
            for table in Base.metadata.sorted_tables:
                rows = (await connection.exec_driver_sql(f"PRAGMA foreign_key_list({table.name})")).all()
                actual = {(row[3], row[2], row[6]) for row in rows}
                for fk in table.foreign_keys:
                    expected = (fk.parent.name, fk.column.table.name, fk.ondelete or "NO ACTION")
                    assert expected in actual, (table.name, expected, actual)
        assert found == []


def _fk_key(fk) -> tuple:
    return (fk.table.name, tuple(c.name for c in fk.columns), fk.elements[0].target_fullname)


def _fk_keys(found: list) -> set[tuple]:
    """Foreign keys both removed and added: the same key, differing only in options."""
    added = {_fk_key(d[1]) for d in found if d[0] == "add_fk"}
    removed = {_fk_key(d[1]) for d in found if d[0] == "remove_fk"}
    return added & removed


async def test_an_event_writes_state_log_and_outbox_together(mini: Catalog, sessions) -> None:
    dispatcher = Dispatcher(mini, sessions)
    assert await dispatcher.handle(agreed("1"))
    assert await dispatcher.handle(envelope("2", "bai thu"))
    state, _ = await state_of(sessions)
    assert state["module"] == "mini"
    assert state["step"] == "a"
    async with sessions() as session:
        kinds = (await session.scalars(select(ParticipationEvent.kind).order_by(ParticipationEvent.id))).all()
        outbox = (await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))).all()
    assert kinds == ["started", "step"]
    assert [m.payload["text"] for m in outbox][-1] == "Bước A"
    assert {(m.recipient, m.status, m.channel) for m in outbox} == {("u1", "pending", "console")}


async def test_a_redelivered_event_changes_nothing(mini: Catalog, sessions) -> None:
    dispatcher = Dispatcher(mini, sessions)
    await dispatcher.handle(agreed("1"))
    first = envelope("2", "bai thu")
    assert await dispatcher.handle(first) is True
    before_counts, before_state = await counts(sessions), await state_of(sessions)
    assert await dispatcher.handle(first) is False
    assert await dispatcher.handle(dataclasses.replace(first, inbound=Inbound(InboundKind.TEXT, T0, text="1"))) is False
    assert await counts(sessions) == before_counts
    assert await state_of(sessions) == before_state


async def test_each_transaction_moves_the_state_on_by_one_version(mini: Catalog, sessions) -> None:
    dispatcher = Dispatcher(mini, sessions)
    await dispatcher.handle(agreed("1"))
    _, first = await state_of(sessions)
    await asyncio.gather(*(dispatcher.handle(envelope(f"e{i}", "menu")) for i in range(3)))  # one group commit
    await dispatcher.handle(envelope("e9", "bai thu"))
    state, last = await state_of(sessions)
    assert (first, last, state["module"]) == (1, 3, "mini")


async def test_a_state_changed_since_it_was_read_is_not_overwritten(mini: Catalog, sessions) -> None:
    dispatcher = Dispatcher(mini, sessions)
    await dispatcher.handle(agreed("1"))
    before, _ = await state_of(sessions)
    async with sessions() as session:
        if not session.get_bind().dialect.supports_sane_multi_rowcount:
            pytest.skip("this driver does not count an executemany's rows (the rows read are locked instead)")
        person_id = await session.scalar(select(Conversation.person_id))
        states = await lock_states(session, [person_id])
        await session.execute(update(Conversation.__table__).values(version=Conversation.version + 1))
        states[person_id].state = {"mode": "menu", "module": "changed"}
        with pytest.raises(StaleDataError):
            await save_states(session, states, T0)
        await session.rollback()
    assert (await state_of(sessions))[0] == before


async def test_the_same_event_id_on_another_channel_is_a_different_event(mini: Catalog, sessions) -> None:
    dispatcher = Dispatcher(mini, sessions)
    assert await dispatcher.handle(agreed("7"))
    assert await dispatcher.handle(dataclasses.replace(agreed("7"), channel="telegram"))
    assert (await counts(sessions))["persons"] == 2


async def test_a_failure_inside_the_transaction_leaves_no_trace(
    mini: Catalog, sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    dispatcher = Dispatcher(mini, sessions)
    await dispatcher.handle(agreed("1"))
    before_counts, before_state = await counts(sessions), await state_of(sessions)

    def explode(*_args, **_kwargs) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(bot.dispatcher, "enqueue", explode)
    with pytest.raises(RuntimeError):
        await dispatcher.handle(envelope("2", "bai thu"))
    assert await counts(sessions) == before_counts
    assert await state_of(sessions) == before_state
    monkeypatch.undo()
    assert await dispatcher.handle(envelope("2", "bai thu")) is True  # the redelivery is processed in full
    assert (await state_of(sessions))[0]["step"] == "a"


async def test_concurrent_events_of_one_person_are_all_applied(mini: Catalog, sessions) -> None:
    dispatcher = Dispatcher(mini, sessions)
    await dispatcher.handle(agreed("0"))
    # Each "menu" / "bai thu" pair toggles; ten concurrent events must all land, none lost.
    texts = ["bai thu", "menu"] * 5
    results = await asyncio.gather(*(dispatcher.handle(envelope(f"e{i}", t)) for i, t in enumerate(texts)))
    assert all(results)
    totals = await counts(sessions)
    assert totals["processed_inbound"] == 1 + len(texts)
    assert totals["outbox"] == 1 + len(texts)  # one reply each, none lost
    assert totals["participation_events"] == 2 * texts.count("bai thu")  # started + step each time


async def test_first_contacts_of_many_people_at_once(mini: Catalog, sessions) -> None:
    dispatcher = Dispatcher(mini, sessions)
    people = [f"user{i}" for i in range(12)]
    await asyncio.gather(*(dispatcher.handle(agreed(f"s-{p}", user=p)) for p in people))
    assert (await counts(sessions))["persons"] == len(people)
    assert (await counts(sessions))["channel_identities"] == len(people)


@pytest.mark.parametrize("module_id", ["vneid", "dich_vu_cong", "binh_dan_hoc_vu_so", "lua_dao", "gia_dinh_so"])
async def test_each_module_completion_is_recorded_only_after_the_check(
    shipped: Catalog, sessions, module_id: str
) -> None:
    dispatcher = Dispatcher(shipped, sessions)
    checks = {s.id: s.check for s in shipped.modules[module_id].steps if s.check}
    sent = 0

    async def tap(button: str) -> None:
        nonlocal sent
        sent += 1
        inbound = Inbound(InboundKind.BUTTON, T0, button_id=button)
        assert await dispatcher.handle(Envelope("console", f"e{sent}", "u1", inbound))

    async def recorded() -> list[str]:
        async with sessions() as session:
            query = select(ParticipationEvent.kind).where(ParticipationEvent.module == module_id)
            return list(await session.scalars(query.order_by(ParticipationEvent.id)))

    await tap(AGREE)
    await tap(f"mod:{module_id}")
    for button in completion_path(shipped, module_id):
        state, _ = await state_of(sessions)
        if state["step"] in checks:
            await tap(next(o.id for o in checks[state["step"]].options if not o.correct))
            assert "completed" not in await recorded()
        await tap(button)
    kinds = await recorded()
    assert kinds.count("completed") == 1
    assert kinds[-1] == "completed"
    assert kinds.count("check_failed") == len(checks)
    assert kinds.count("check_passed") == len(checks)
