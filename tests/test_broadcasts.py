"""Broadcasts in chat and their runs: preview counts, one confirmation, one message per person, scoping,
sandboxed templates, crash and resume, pause, status (both databases)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select, update

import bot.broadcasts.service as service_module
from bot.broadcasts import service
from bot.dispatcher import Dispatcher
from bot.ratelimit import RateLimits
from bot.sender import OutboxSender
from flows.catalog import Catalog
from flows.types import Reply
from storage.areas import seed_areas
from storage.audience import Audience, Who, recipients
from storage.clock import LOCAL_TZ
from storage.models import (
    AuditEntry,
    Broadcast,
    BroadcastRun,
    BroadcastStatus,
    ChannelIdentity,
    OutboxMessage,
    Role,
    RoleGrant,
)
from storage.roles import grant, revoke
from tests.chat import Chat, labels, texts
from tests.helpers import T0, completion_path


@pytest.fixture
async def town(shipped: Catalog, sessions) -> Dispatcher:
    async with sessions.begin() as session:
        await seed_areas(session, shipped.areas, T0)
    return Dispatcher(shipped, sessions, clock=lambda: T0)


def chat(town: Dispatcher, user: str) -> Chat:
    return Chat(town, town._sessions, user)


async def volunteer_of(town: Dispatcher, user: str, area: str, role: Role = Role.VOLUNTEER) -> Chat:
    person = chat(town, user)
    await person.join()
    found = await person.person()
    assert found is not None
    async with town._sessions.begin() as session:
        await grant(session, found.id, role, area, None, T0)
    return person


async def residents(town: Dispatcher, village: str, *users: str) -> list[Chat]:
    found = []
    for user in users:
        person = chat(town, user)
        await person.join(village)
        found.append(person)
    return found


async def compose(volunteer: Chat, shipped: Catalog, text: str, who: str = "broadcast.who_all") -> list[Reply]:
    """/phattin through to the preview (one area in scope: no area question); returns the last replies."""
    await volunteer.send("/phattin")
    await volunteer.choose(shipped.label(who))
    asked = await volunteer.send(text)
    if shipped.label("broadcast.when_now") not in labels(asked):
        return asked
    return await volunteer.choose(shipped.label("broadcast.when_now"))


async def bulk(sessions) -> list[OutboxMessage]:
    async with sessions() as session:
        return list(await session.scalars(select(OutboxMessage).where(OutboxMessage.run_id.is_not(None))))


async def only_broadcast(sessions) -> Broadcast:
    async with sessions() as session:
        found = list(await session.scalars(select(Broadcast)))
    assert len(found) == 1
    return found[0]


async def test_preview_counts_who_will_receive_it_and_send_confirms_once(
    town: Dispatcher, shipped: Catalog, sessions
) -> None:
    east = await residents(town, "Thôn Đông", "a", "b", "c")
    await residents(town, "Thôn Tây", "w")
    await east[2].send("dừng nhận tin")  # opted out: never included
    volunteer = await volunteer_of(town, "vol", "demo-thon-1")
    preview = await compose(volunteer, shipped, "Chào {{ ten }} ở {{ thon }}!")
    assert "Chào bạn ở Thôn Đông!" in texts(preview)
    assert "Gửi tới 2 người: máy tính 2." in texts(preview)

    sent = await volunteer.choose(shipped.label("broadcast.send"))
    assert shipped.say("broadcast_when_sending") in texts(sent)
    draft = await only_broadcast(sessions)
    assert draft.status == BroadcastStatus.SCHEDULED
    async with sessions.begin() as session:  # a second press, from another device or a redelivery
        assert await service.confirm(session, draft.id, T0) is False

    assert await service.start_run(sessions, shipped, draft.id, draft.send_at, T0) is not None
    assert await service.start_run(sessions, shipped, draft.id, draft.send_at, T0) is None  # the job again: done
    rows = await bulk(sessions)
    assert sorted(r.recipient for r in rows) == ["a", "b"]
    assert {r.payload["text"] for r in rows} == {"Chào bạn ở Thôn Đông!"}
    assert (await only_broadcast(sessions)).status == BroadcastStatus.DONE
    async with sessions() as session:
        actions = list(await session.scalars(select(AuditEntry.action)))
    assert actions.count("broadcast_confirmed") == 1


@pytest.mark.parametrize(
    ("template", "detail"),
    [
        ("{{ ''.__class__.__mro__ }}", "."),
        ("{{ ten.upper() }}", "( )"),
        ("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}", "for"),
        ("{% include 'messages.yaml' %}", "include"),
        ("{% import 'x' as y %}", "import"),
        ("{{ cycler.__init__.__globals__ }}", "."),
        ("{{ lipsum }}", None),
        ("{{ ten|attr('__class__') }}", "|attr"),
    ],
)
async def test_template_escapes_are_refused_with_a_reason_and_nothing_is_sent(
    town: Dispatcher, shipped: Catalog, sessions, template: str, detail: str | None
) -> None:
    await residents(town, "Thôn Đông", "a")
    volunteer = await volunteer_of(town, "vol", "demo-thon-1")
    refused = await compose(volunteer, shipped, template)
    if detail is None:
        assert shipped.say("broadcast_template_unknown", detail="lipsum") in texts(refused)
    else:
        assert shipped.say("broadcast_template_forbidden", detail=detail) in texts(refused)
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Broadcast)) == 0
    assert await bulk(sessions) == []


async def test_a_volunteer_reaches_only_their_own_village(town: Dispatcher, shipped: Catalog, sessions) -> None:
    await residents(town, "Thôn Đông", "a")
    await residents(town, "Thôn Tây", "w")
    volunteer = await volunteer_of(town, "vol", "demo-thon-1")
    person = await volunteer.person()
    async with sessions.begin() as session:
        with pytest.raises(PermissionError):
            await service.create_draft(session, person.id, Audience(areas=("demo-thon-2",)), "Chào", T0)
        with pytest.raises(PermissionError):
            await service.create_draft(session, person.id, Audience(areas=("demo",)), "Chào", T0)  # the commune
    await compose(volunteer, shipped, "Chào {{ thon }}")
    await volunteer.choose(shipped.label("broadcast.send"))
    draft = await only_broadcast(sessions)
    assert Audience.from_dict(draft.audience).areas == ("demo-thon-1",)
    await service.start_run(sessions, shipped, draft.id, draft.send_at, T0)
    assert [r.recipient for r in await bulk(sessions)] == ["a"]


async def test_an_author_who_lost_the_role_sends_nothing(town: Dispatcher, shipped: Catalog, sessions) -> None:
    await residents(town, "Thôn Đông", "a")
    volunteer = await volunteer_of(town, "vol", "demo-thon-1")
    await compose(volunteer, shipped, "Tối nay họp thôn")
    await volunteer.choose(shipped.label("broadcast.send"))
    draft = await only_broadcast(sessions)
    async with sessions.begin() as session:
        grant_id = await session.scalar(select(RoleGrant.id))
        assert await revoke(session, grant_id, None, T0)
    assert await service.start_run(sessions, shipped, draft.id, draft.send_at, T0) is None
    assert await bulk(sessions) == []
    assert (await only_broadcast(sessions)).status == BroadcastStatus.CANCELLED


async def test_a_crash_while_queueing_then_resume_gives_everyone_one_message(
    town: Dispatcher, shipped: Catalog, sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    await residents(town, "Thôn Đông", *(f"r{i}" for i in range(7)))
    volunteer = await volunteer_of(town, "vol", "demo-thon-1")
    await compose(volunteer, shipped, "Chào {{ ten }}")
    await volunteer.choose(shipped.label("broadcast.send"))
    draft = await only_broadcast(sessions)
    monkeypatch.setattr(service_module, "CHUNK", 3)
    real = service_module._queue_chunk
    calls = 0

    async def crash_after_one_chunk(*args, **kwargs) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("power cut")
        await real(*args, **kwargs)

    monkeypatch.setattr(service_module, "_queue_chunk", crash_after_one_chunk)
    with pytest.raises(RuntimeError):
        await service.start_run(sessions, shipped, draft.id, draft.send_at, T0)
    assert len(await bulk(sessions)) == 3
    async with sessions() as session:
        assert await service.pending_runs(session) == [(draft.id, draft.send_at)]
    monkeypatch.setattr(service_module, "_queue_chunk", real)
    await service.start_run(sessions, shipped, draft.id, draft.send_at, T0)  # what the leader's tick does
    rows = await bulk(sessions)
    assert sorted(r.recipient for r in rows) == sorted(f"r{i}" for i in range(7))
    async with sessions() as session:
        assert await service.pending_runs(session) == []
        run = await session.scalar(select(BroadcastRun))
    assert run.recipients == 7


class Printer:
    """A console transport that records what it would print."""

    channel = "console"

    def __init__(self) -> None:
        self.limits = RateLimits()
        self.sent: list[tuple[str, str]] = []

    async def send(self, recipient: str, reply: Reply) -> None:
        self.sent.append((recipient, reply.text))


async def test_pause_holds_resume_releases_and_status_counts(town: Dispatcher, shipped: Catalog, sessions) -> None:
    await residents(town, "Thôn Đông", "a", "b")
    volunteer = await volunteer_of(town, "vol", "demo-thon-1")
    await compose(volunteer, shipped, "Họp thôn 19:00")
    await volunteer.choose(shipped.label("broadcast.send"))
    draft = await only_broadcast(sessions)
    await service.start_run(sessions, shipped, draft.id, draft.send_at, T0)
    status = await volunteer.send("/phattin trangthai")
    assert f"{shipped.label('outbox.pending')} 2" in texts(status)
    paused = await volunteer.choose(shipped.label("broadcast.pause"))
    assert f"{shipped.label('outbox.held')} 2" in texts(paused)
    printer = Printer()
    sender = OutboxSender(sessions, {"console": printer}, clock=lambda: T0)
    await sender.drain()
    assert [text for _, text in printer.sent if text == "Họp thôn 19:00"] == []
    await volunteer.choose(shipped.label("broadcast.resume"))
    await sender.drain()
    assert sorted(r for r, text in printer.sent if text == "Họp thôn 19:00") == ["a", "b"]
    status = await volunteer.send("/phattin trangthai")
    assert f"{shipped.label('outbox.sent')} 2" in texts(status)


async def test_a_time_in_quiet_hours_moves_to_the_morning(town: Dispatcher, shipped: Catalog, sessions) -> None:
    await residents(town, "Thôn Đông", "a")
    volunteer = await volunteer_of(town, "vol", "demo-thon-1")
    await volunteer.send("/phattin")
    await volunteer.choose(shipped.label("broadcast.who_all"))
    await volunteer.send("Nhắc lịch họp")
    await volunteer.choose(shipped.label("broadcast.when_at"))
    assert shipped.say("broadcast_at_bad") in texts(await volunteer.send("tối mai"))
    preview = await volunteer.send("3/11 22:30")
    assert shipped.say("broadcast_quiet_moved", start="21:00", end="7:00", at="7:00 4/11/2026") in texts(preview)
    await volunteer.choose(shipped.label("broadcast.send"))
    draft = await only_broadcast(sessions)
    assert draft.send_at == dt.datetime(2026, 11, 4, 7, 0, tzinfo=LOCAL_TZ)


async def test_a_yearly_campaign_gets_one_run_a_year(town: Dispatcher, shipped: Catalog, sessions) -> None:
    await residents(town, "Thôn Đông", "a")
    volunteer = await volunteer_of(town, "vol", "demo-thon-1")
    await volunteer.send("/phattin")
    await volunteer.choose(shipped.label("broadcast.who_all"))
    await volunteer.send("Hôm nay là Ngày Chuyển đổi số quốc gia!")
    await volunteer.choose(shipped.label("broadcast.when_yearly"))
    assert shipped.say("broadcast_quiet_yearly", start="21:00", end="7:00") in texts(
        await volunteer.send("10/10 22:00")
    )
    preview = await volunteer.send("10/10 8:00")
    assert shipped.say("broadcast_when_yearly", day="10/10", time="8:00") in texts(preview)
    await volunteer.choose(shipped.label("broadcast.send"))
    draft = await only_broadcast(sessions)
    assert draft.every_year == "10-10 08:00"
    for year in (2027, 2027, 2028):
        now = dt.datetime(year, 10, 10, 8, 0, 5, tzinfo=LOCAL_TZ).astimezone(dt.UTC)
        await service.start_run(sessions, shipped, draft.id, service.yearly_due(draft.every_year, now), now)
    async with sessions() as session:
        runs = list(await session.scalars(select(BroadcastRun.due_at).order_by(BroadcastRun.due_at)))
    assert [r.astimezone(LOCAL_TZ).year for r in runs] == [2027, 2028]
    assert len(await bulk(sessions)) == 2
    assert (await only_broadcast(sessions)).status == BroadcastStatus.SCHEDULED  # it goes on


async def test_audiences_filter_by_module_role_channel_and_date(town: Dispatcher, shipped: Catalog, sessions) -> None:
    a, _ = await residents(town, "Thôn Đông", "a", "b")
    await volunteer_of(town, "vol", "demo-thon-1")

    await a.tap("mod:lua_dao")
    for button in completion_path(shipped, "lua_dao"):
        await a.tap(button)

    async def who(**filters) -> list[str]:
        async with sessions() as session:
            found = await recipients(session, shipped.community, Audience(areas=("demo-thon-1",), **filters))
        return sorted(r.external_id for r in found)

    assert await who() == ["a", "b", "vol"]
    assert await who(roles=(Who.RESIDENT,)) == ["a", "b"]
    assert await who(roles=(Who.VOLUNTEER,)) == ["vol"]
    assert await who(completed="lua_dao") == ["a"]
    assert await who(not_completed="lua_dao", roles=(Who.RESIDENT,)) == ["b"]
    assert await who(channels=("telegram",)) == []
    assert await who(joined_since=T0 + dt.timedelta(seconds=1)) == []
    assert await who(joined_since=T0) == ["a", "b", "vol"]


async def test_an_officer_chooses_the_commune_or_one_village(town: Dispatcher, shipped: Catalog, sessions) -> None:
    await residents(town, "Thôn Đông", "a")
    await residents(town, "Thôn Tây", "w")
    officer = await volunteer_of(town, "officer", "demo", Role.OFFICER)
    asked = await officer.send("/phattin")
    assert shipped.say("broadcast_ask_area") in texts(asked)
    assert labels(asked)[:2] == ["Xã Mẫu (dữ liệu ví dụ)", "Thôn Bắc"]
    await officer.choose("Xã Mẫu (dữ liệu ví dụ)")
    await officer.choose(shipped.label("broadcast.who_all"))
    await officer.send("Chào bà con {{ xa }}")
    preview = await officer.choose(shipped.label("broadcast.when_now"))
    assert "Chào bà con Xã Mẫu (dữ liệu ví dụ)" in texts(preview)
    assert "Gửi tới 2 người" in texts(preview)


async def test_the_preview_says_how_many_zalo_oa_residents_are_out_of_its_window(shipped: Catalog, sessions) -> None:
    async with sessions.begin() as session:
        await seed_areas(session, shipped.areas, T0)
    week = dt.timedelta(days=7)
    windowed = Dispatcher(shipped, sessions, clock=lambda: T0, windows={"zalo_oa": week})
    for user in ("z-fresh", "z-stale", "z-never"):
        await Chat(windowed, sessions, user, channel="zalo_oa").join("Thôn Đông")
    await Chat(windowed, sessions, "tg", channel="telegram").join("Thôn Đông")
    async with sessions.begin() as session:
        await session.execute(
            update(ChannelIdentity)
            .where(ChannelIdentity.external_id == "z-stale")
            .values(last_inbound_at=T0 - dt.timedelta(days=8))
        )
        await session.execute(
            update(ChannelIdentity).where(ChannelIdentity.external_id == "z-never").values(last_inbound_at=None)
        )
    volunteer = await volunteer_of(windowed, "vol", "demo-thon-1")
    said = texts(await compose(volunteer, shipped, "Họp thôn tối nay"))
    zalo = shipped.label("channel.zalo_oa")
    assert shipped.say("broadcast_out_of_window", count=2, channel=zalo) in said
    assert "Zalo OA 3" in said  # still counted per channel: the note says who will not get it
    unwindowed = Dispatcher(shipped, sessions, clock=lambda: T0)  # no Zalo OA configured: nothing to say
    said = texts(await compose(Chat(unwindowed, sessions, "vol", channel=volunteer.channel), shipped, "Họp thôn"))
    assert zalo + " chưa nhắn" not in said
