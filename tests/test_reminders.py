"""Nudges to finish a module under a fixed clock: at most two, never in quiet hours, never after
"dừng nhận tin"; and /kettai, the volunteer's list of who is stuck (both databases)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from bot.broadcasts.reminders import send_due
from bot.dispatcher import Dispatcher
from flows.catalog import Catalog
from flows.types import Reply
from storage.areas import seed_areas
from storage.clock import LOCAL_TZ
from storage.models import OutboxMessage, Priority, Role
from storage.roles import grant
from tests.chat import Chat, texts
from tests.helpers import T0, FakeClock, completion_path

DAY = dt.timedelta(days=1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)  # 08:30 in Vietnam


@pytest.fixture
async def town(shipped: Catalog, sessions, clock: FakeClock) -> Dispatcher:
    async with sessions.begin() as session:
        await seed_areas(session, shipped.areas, T0)
    return Dispatcher(shipped, sessions, clock=clock)


def chat(town: Dispatcher, user: str) -> Chat:
    return Chat(town, town._sessions, user)


async def nudges(sessions, user: str) -> list[Reply]:
    async with sessions() as session:
        rows = await session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.recipient == user, OutboxMessage.priority == Priority.BULK)
            .order_by(OutboxMessage.id)
        )
        return [Reply.from_dict(row.payload) for row in rows]


async def started(town: Dispatcher, user: str, module: str = "vneid", village: str = "Thôn Đông") -> Chat:
    resident = chat(town, user)
    await resident.join(village)
    await resident.tap(f"mod:{module}")
    return resident


async def test_two_nudges_at_most_after_one_and_three_days(town: Dispatcher, shipped: Catalog, sessions) -> None:
    await started(town, "a")
    title = shipped.modules["vneid"].title
    for offset, expected in [(23 * 3600, 0), (DAY, 1), (DAY + dt.timedelta(hours=1), 0), (3 * DAY, 1), (6 * DAY, 0)]:
        delta = offset if isinstance(offset, dt.timedelta) else dt.timedelta(seconds=offset)
        assert await send_due(sessions, shipped, T0 + delta) == expected, delta
    sent = await nudges(sessions, "a")
    assert len(sent) == 2
    assert all(title in reply.text for reply in sent)
    assert [b.id for b in sent[0].buttons] == ["continue", "menu"]
    assert "lần nhắc cuối" not in sent[0].text
    assert "lần nhắc cuối" in sent[1].text


async def test_never_in_quiet_hours_then_in_the_morning(town: Dispatcher, shipped: Catalog, sessions) -> None:
    await started(town, "a")
    evening = dt.datetime(2026, 11, 3, 21, 30, tzinfo=LOCAL_TZ).astimezone(dt.UTC)  # 37 hours later
    assert await send_due(sessions, shipped, evening) == 0
    assert await send_due(sessions, shipped, evening + dt.timedelta(hours=9, minutes=29)) == 0  # 06:59
    assert await send_due(sessions, shipped, evening + dt.timedelta(hours=9, minutes=30)) == 1  # 07:00


async def test_no_nudge_after_stop_or_after_finishing(town: Dispatcher, shipped: Catalog, sessions) -> None:
    stopped = await started(town, "stopped")
    await stopped.send("dừng nhận tin")
    await stopped.tap("mod:vneid")  # still learning, but asked for no messages
    finished = await started(town, "finished", module="lua_dao")
    for button in completion_path(shipped, "lua_dao"):
        await finished.tap(button)
    assert await send_due(sessions, shipped, T0 + 3 * DAY) == 0
    assert await nudges(sessions, "stopped") == []
    assert await nudges(sessions, "finished") == []


async def test_a_long_silence_gets_one_nudge_not_two_at_once(town: Dispatcher, shipped: Catalog, sessions) -> None:
    await started(town, "a")
    assert await send_due(sessions, shipped, T0 + 4 * DAY) == 1
    assert await send_due(sessions, shipped, T0 + 5 * DAY) == 0
    assert len(await nudges(sessions, "a")) == 1


async def test_coming_back_does_not_reset_the_count(
    town: Dispatcher, shipped: Catalog, sessions, clock: FakeClock
) -> None:
    resident = await started(town, "a")
    assert await send_due(sessions, shipped, T0 + DAY) == 1
    clock.now = T0 + 2 * DAY
    await resident.tap("continue")  # back for a moment, then silent again
    assert await send_due(sessions, shipped, T0 + 3 * DAY) == 0  # one day after coming back: nudge 1 was sent
    assert await send_due(sessions, shipped, T0 + 5 * DAY) == 1  # three days after: the last one
    assert await send_due(sessions, shipped, T0 + 9 * DAY) == 0
    assert len(await nudges(sessions, "a")) == 2


async def test_kettai_lists_the_stuck_people_of_the_volunteers_village(
    town: Dispatcher, shipped: Catalog, sessions, clock: FakeClock
) -> None:
    await started(town, "east")
    await started(town, "west", village="Thôn Tây")
    volunteer = chat(town, "vol")
    await volunteer.join()
    person = await volunteer.person()
    async with sessions.begin() as session:
        await grant(session, person.id, Role.VOLUNTEER, "demo-thon-1", None, T0)
    assert shipped.say("stuck_none", days="1") in texts(await volunteer.send("/kettai"))
    clock.now = T0 + 2 * DAY
    listed = texts(await volunteer.send("/kettai"))
    steps = len(shipped.modules["vneid"].steps)
    assert f"({'Thôn Đông'}): “{shipped.modules['vneid'].title}”, bước 1/{steps}, 2 ngày" in listed
    assert "Thôn Tây" not in listed
    resident = chat(town, "r")
    await resident.join()
    assert shipped.say("role_required") in texts(await resident.send("/kettai"))
