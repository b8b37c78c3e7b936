"""Community classes: opening one in chat, signing up and cancelling in two taps, capacity and the waiting
list (also when two residents take the last seat at once, on two workers), attendance as log events,
calling a class off (both databases)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import select

from bot.broadcasts.class_notices import fill_waiting_lists, send_reminders
from bot.dispatcher import Dispatcher
from flows.catalog import Catalog
from flows.community import IN_PERSON
from flows.types import EventKind, Reply
from storage.areas import seed_areas
from storage.classes import cancel, counts, sign_up
from storage.clock import LOCAL_TZ
from storage.metrics import area_metrics
from storage.models import (
    AuditEntry,
    ClassSignup,
    CommunityClass,
    OutboxMessage,
    ParticipationEvent,
    Priority,
    Role,
    SignupStatus,
)
from storage.repo import create_person
from storage.roles import grant
from tests.chat import Chat, labels, texts
from tests.helpers import T0, FakeClock

EVENING = dt.datetime(2026, 11, 5, 19, 30, tzinfo=LOCAL_TZ)  # T0 is Monday 2/11 08:30 in Vietnam


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def town(shipped: Catalog, sessions, clock: FakeClock) -> Dispatcher:
    async with sessions.begin() as session:
        await seed_areas(session, shipped.areas, T0)
    return Dispatcher(shipped, sessions, clock=clock)


def chat(town: Dispatcher, user: str) -> Chat:
    return Chat(town, town._sessions, user)


async def volunteer_of(town: Dispatcher, user: str, area: str = "demo-thon-1") -> Chat:
    person = chat(town, user)
    await person.join()
    found = await person.person()
    assert found is not None
    async with town._sessions.begin() as session:
        await grant(session, found.id, Role.VOLUNTEER, area, None, T0)
    return person


async def resident(town: Dispatcher, user: str, village: str = "Thôn Đông") -> Chat:
    person = chat(town, user)
    await person.join(village)
    return person


async def new_class(sessions, capacity: int, starts: dt.datetime = EVENING, area: str = "demo-thon-1") -> int:
    async with sessions.begin() as session:
        klass = CommunityClass(
            area_code=area,
            topic="Cài và dùng VNeID",
            for_group="elderly",
            place="Nhà văn hóa thôn Đông",
            starts_at=starts.astimezone(dt.UTC),
            capacity=capacity,
            created_at=T0,
        )
        session.add(klass)
        await session.flush()
        return klass.id


async def statuses(sessions, class_id: int) -> dict[int, str]:
    async with sessions() as session:
        rows = await session.execute(
            select(ClassSignup.person_id, ClassSignup.status).where(ClassSignup.class_id == class_id)
        )
        return {person_id: status for person_id, status in rows}


def button_with(replies: list[Reply], start: str) -> str:
    found = [b.id for b in replies[-1].buttons if b.label.startswith(start)]
    assert found, f"no button starting {start!r} in {[b.label for b in replies[-1].buttons]}"
    return found[0]


async def bulk_to(sessions, user: str) -> list[Reply]:
    async with sessions() as session:
        rows = await session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.recipient == user, OutboxMessage.priority == Priority.BULK)
            .order_by(OutboxMessage.id)
        )
        return [Reply.from_dict(row.payload) for row in rows]


async def test_a_volunteer_opens_a_class_in_chat_and_residents_of_the_village_see_it(
    town: Dispatcher, shipped: Catalog, sessions
) -> None:
    volunteer = await volunteer_of(town, "vol")
    await volunteer.send("/molop")
    await volunteer.choose(shipped.label("class.new"))  # one village in scope: no area question
    await volunteer.send("Cài VNeID cho người cao tuổi")
    await volunteer.choose("Người cao tuổi")
    await volunteer.choose(shipped.modules["vneid"].title)
    await volunteer.send("Nhà văn hóa thôn Đông")
    assert shipped.say("broadcast_at_past") in texts(await volunteer.send("1/11/2026 19:30"))
    await volunteer.send("5/11 19:30")
    assert shipped.say("class_capacity_bad", max=300) in texts(await volunteer.send("ba muoi"))
    confirm = await volunteer.send("30")
    assert "19:30 5/11/2026, tại Nhà văn hóa thôn Đông, Thôn Đông" in texts(confirm)
    assert shipped.say("class_created") in texts(await volunteer.choose(shipped.label("class.create")))
    async with sessions() as session:
        klass = (await session.scalars(select(CommunityClass))).one()
        actions = list(await session.scalars(select(AuditEntry.action)))
    assert (klass.area_code, klass.capacity, klass.module, klass.for_group) == ("demo-thon-1", 30, "vneid", "elderly")
    assert klass.starts_at == EVENING.astimezone(dt.UTC)
    assert "class_created" in actions

    east = await resident(town, "east")
    listed = await east.send("lop hoc o dau")  # typed without diacritics
    assert "Cài VNeID cho người cao tuổi (Người cao tuổi)" in texts(listed)
    assert "Còn 30 chỗ." in texts(listed)
    west = await resident(town, "west", "Thôn Tây")
    assert shipped.say("classes_none", village="Thôn Tây") in texts(await west.tap("classes"))
    outsider = await resident(town, "outsider")
    assert shipped.say("role_required") in texts(await outsider.send("/molop"))


async def test_sign_up_and_cancel_in_two_taps_capacity_and_the_waiting_list_moves_up(
    town: Dispatcher, shipped: Catalog, sessions, clock: FakeClock
) -> None:
    class_id = await new_class(sessions, capacity=2)
    people = [await resident(town, user) for user in ("a", "b", "c", "d")]
    for person in people:
        clock.advance(60)
        listed = await person.tap("classes")  # tap 1: the menu's "Lớp học sắp tới"
        joined = await person.tap(button_with(listed, shipped.label("class.join")))  # tap 2
    assert "thứ 2" in texts(joined)  # d: second in line
    ids = [(await p.person()).id for p in people]
    assert await statuses(sessions, class_id) == dict(zip(ids, ["seated", "seated", "waiting", "waiting"], strict=True))

    a = people[0]
    listed = await a.tap("classes")
    assert "✅ Bạn đã có chỗ." in texts(listed)
    left = await a.tap(button_with(listed, shipped.label("class.leave")))
    assert "Đã hủy đăng ký lớp “Cài và dùng VNeID”" in texts(left)
    assert await statuses(sessions, class_id) == dict(
        zip(ids, ["cancelled", "seated", "seated", "waiting"], strict=True)
    )
    told = await bulk_to(sessions, "c")
    assert len(told) == 1
    assert "vừa có chỗ cho bạn" in told[0].text
    assert [b.id for b in told[0].buttons] == ["classes", "menu"]
    assert "thứ 1 trong danh sách chờ" in texts(await people[3].tap("classes"))

    clock.advance(60)
    again = await a.tap(button_with(await a.tap("classes"), shipped.label("class.join")))  # back: end of the line
    assert "thứ 2" in texts(again)


async def test_text_only_with_numbers(town: Dispatcher, shipped: Catalog, sessions) -> None:
    await new_class(sessions, capacity=5)
    person = await resident(town, "t")
    listed = await person.send("lop hoc")
    assert labels(listed)[0].startswith(shipped.label("class.join"))
    assert "Đã giữ chỗ cho bạn" in texts(await person.send("1"))
    assert labels(await person.send("lich hoc"))[0].startswith(shipped.label("class.leave"))
    assert "Đã hủy đăng ký" in texts(await person.send("1"))


async def test_a_resident_without_a_village_is_asked_for_it_first(town: Dispatcher, shipped: Catalog, sessions) -> None:
    await new_class(sessions, capacity=5)
    person = chat(town, "new")
    await person.agree()
    await person.send("xin chào")  # skip past the village question left open
    asked = await person.tap("classes")
    assert shipped.say("classes_need_village") in texts(asked)
    listed = await person.send("Thôn Đông")
    assert "Cài và dùng VNeID" in texts(listed)


async def test_two_residents_taking_the_last_seat_at_once_on_two_workers_one_gets_it(
    shipped: Catalog, sessions
) -> None:
    async with sessions.begin() as session:
        await seed_areas(session, shipped.areas, T0)
    workers = [Dispatcher(shipped, sessions, clock=lambda: T0) for _ in range(2)]
    class_id = await new_class(sessions, capacity=3)
    first = Chat(workers[0], sessions, "first")
    await first.join()
    await first.tap(button_with(await first.tap("classes"), shipped.label("class.join")))
    rivals = [Chat(workers[i % 2], sessions, f"rival-{i}") for i in range(4)]
    taps = []
    for rival in rivals:
        await rival.join()
        taps.append(button_with(await rival.tap("classes"), shipped.label("class.join")))
    await asyncio.gather(*(rival.tap(tap) for rival, tap in zip(rivals, taps, strict=True)))
    found = await statuses(sessions, class_id)
    assert sorted(found.values()) == ["seated"] * 3 + ["waiting"] * 2
    async with sessions() as session:
        seats = sorted(await session.scalars(select(ClassSignup.seat).where(ClassSignup.seat.is_not(None))))
    assert seats == [1, 2, 3]


async def test_concurrent_sign_ups_never_exceed_capacity(shipped: Catalog, sessions) -> None:
    async with sessions.begin() as session:
        await seed_areas(session, shipped.areas, T0)
        people = [(await create_person(session, T0)).id for _ in range(12)]
    class_id = await new_class(sessions, capacity=4)

    async def take(person_id: int) -> str:
        async with sessions.begin() as session:
            klass = await session.get(CommunityClass, class_id)
            return (await sign_up(session, klass, person_id, T0)).status.value

    got = await asyncio.gather(*(take(p) for p in people))
    assert got.count("seated") == 4
    assert got.count("waiting") == 8
    async with sessions.begin() as session:
        klass = await session.get(CommunityClass, class_id)
        assert (await counts(session, [class_id]))[class_id].seated == 4
        seated = [p for p, status in zip(people, got, strict=True) if status == "seated"]
        _, moved = await cancel(session, klass, seated[0], T0)
    assert len(moved) == 1
    assert moved[0] in people


async def test_a_free_seat_left_beside_a_waiting_list_is_filled_by_the_scheduler(
    town: Dispatcher, shipped: Catalog, sessions
) -> None:
    class_id = await new_class(sessions, capacity=1)
    a, b = await resident(town, "a"), await resident(town, "b")
    for person in (a, b):
        await person.tap(button_with(await person.tap("classes"), shipped.label("class.join")))
    async with sessions.begin() as session:  # as if a cancellation raced b's sign-up: the seat is free
        seat = await session.scalar(select(ClassSignup).where(ClassSignup.status == SignupStatus.SEATED))
        seat.status, seat.seat = SignupStatus.CANCELLED, None
    assert await fill_waiting_lists(sessions, shipped, T0) == 1
    assert (await statuses(sessions, class_id))[(await b.person()).id] == "seated"
    assert await fill_waiting_lists(sessions, shipped, T0) == 0


async def test_attendance_becomes_participation_events_with_assisted_by(
    town: Dispatcher, shipped: Catalog, sessions
) -> None:
    class_id = await new_class(sessions, capacity=5)
    async with sessions.begin() as session:
        (await session.get(CommunityClass, class_id)).module = "vneid"
    a, b = await resident(town, "a"), await resident(town, "b")
    for person in (a, b):
        await person.tap(button_with(await person.tap("classes"), shipped.label("class.join")))
    volunteer = await volunteer_of(town, "vol")
    home = await volunteer.send("/molop")
    assert "Cài và dùng VNeID" in texts(home)
    assert "2/5 chỗ" in texts(home)
    sheet = await volunteer.tap(button_with(home, shipped.label("class.attend")))
    await volunteer.tap(button_with(sheet, shipped.say("person_unnamed", number=1)))  # a came, b did not
    await volunteer.choose(shipped.label("class.add_person"))
    sheet = await volunteer.send("Bà Tư")  # present without the bot
    assert any(label == "✅ Bà Tư" for label in labels(sheet))
    saved = await volunteer.choose(shipped.label("class.save"))
    assert shipped.say("class_attend_saved", count=2, topic="Cài và dùng VNeID") in texts(saved)

    async with sessions() as session:
        events = list(await session.scalars(select(ParticipationEvent).where(ParticipationEvent.kind == "attended")))
    volunteer_id = (await volunteer.person()).id
    assert len(events) == 2
    assert {e.assisted_by for e in events} == {volunteer_id}
    assert {(e.module, e.channel, e.area_code, e.step) for e in events} == {
        ("vneid", IN_PERSON, "demo-thon-1", f"class-{class_id}")
    }
    assert (await a.person()).id in {e.person_id for e in events}
    assert EventKind.ATTENDED.value == events[0].kind

    home = await volunteer.send("/molop")  # saving again adds nobody twice
    sheet = await volunteer.tap(button_with(home, shipped.label("class.attend")))
    await volunteer.tap(button_with(sheet, "✅"))  # already recorded: stays recorded
    again = await volunteer.choose(shipped.label("class.save"))
    assert shipped.say("class_attend_saved", count=0, topic="Cài và dùng VNeID") in texts(again)
    async with sessions() as session:
        assert (
            len(list(await session.scalars(select(ParticipationEvent.id).where(ParticipationEvent.kind == "attended"))))
            == 2
        )
        east = next(
            m
            for m in await area_metrics(session, shipped.community, ["demo-thon-1"], year=2026)
            if m.code == "demo-thon-1"
        )
        actions = list(await session.scalars(select(AuditEntry.action)))
    assert east.people_reached == 2  # the two present: counted like any other event
    assert actions.count("class_attendance") == 2


async def test_calling_a_class_off_tells_everyone_signed_up(town: Dispatcher, shipped: Catalog, sessions) -> None:
    class_id = await new_class(sessions, capacity=1)
    a, b = await resident(town, "a"), await resident(town, "b")
    for person in (a, b):
        await person.tap(button_with(await person.tap("classes"), shipped.label("class.join")))
    volunteer = await volunteer_of(town, "vol")
    home = await volunteer.send("/molop")
    asked = await volunteer.tap(button_with(home, shipped.label("class.call_off")))
    assert "Tôi sẽ báo cho 2 người" in texts(asked)
    assert shipped.say("class_called_off_done") in texts(await volunteer.choose(shipped.label("class.call_off_yes")))
    for user in ("a", "b"):
        told = await bulk_to(sessions, user)
        assert len(told) == 1
        assert "đã được hủy" in told[0].text
    assert shipped.say("classes_none", village="Thôn Đông") in texts(await a.tap("classes"))
    async with sessions() as session:
        assert (await session.get(CommunityClass, class_id)).cancelled_at == T0


async def test_a_volunteer_of_another_village_cannot_touch_the_class(
    town: Dispatcher, shipped: Catalog, sessions
) -> None:
    await new_class(sessions, capacity=1)
    other = await volunteer_of(town, "other", "demo-thon-2")
    home = await other.send("/molop")
    assert not [b for b in home[-1].buttons if b.label.startswith(shipped.label("class.attend"))]


# --- reminders under a fixed clock ---------------------------------------------------------------


def local(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=LOCAL_TZ).astimezone(dt.UTC)


async def signed_up_residents(town: Dispatcher, shipped: Catalog, *users: str) -> list[Chat]:
    found = []
    for user in users:
        person = await resident(town, user)
        await person.tap(button_with(await person.tap("classes"), shipped.label("class.join")))
        found.append(person)
    return found


async def test_reminders_a_day_and_two_hours_before_at_most_once_each(
    town: Dispatcher, shipped: Catalog, sessions
) -> None:
    await new_class(sessions, capacity=5)  # Thursday 5/11 19:30
    await signed_up_residents(town, shipped, "a", "b")
    expected = [
        (local(4, 19, 29), 0),
        (local(4, 19, 30), 2),  # the day before, at the class's hour
        (local(4, 19, 31), 0),
        (local(5, 17, 29), 0),
        (local(5, 17, 30), 2),  # two hours before
        (local(5, 18, 0), 0),
        (local(5, 19, 31), 0),  # started: nothing more
    ]
    for moment, count in expected:
        assert await send_reminders(sessions, shipped, moment) == count, moment.astimezone(LOCAL_TZ)
    sent = await bulk_to(sessions, "a")
    assert len(sent) == 2
    assert "19:30 5/11/2026 (ngày mai), tại Nhà văn hóa thôn Đông" in sent[0].text
    assert "(hôm nay)" in sent[1].text
    assert [b.id for b in sent[0].buttons] == ["classes", "menu"]


async def test_none_in_quiet_hours_the_early_one_goes_when_they_end(
    town: Dispatcher, shipped: Catalog, sessions
) -> None:
    await new_class(sessions, capacity=5, starts=dt.datetime(2026, 11, 6, 7, 30, tzinfo=LOCAL_TZ))
    (a,) = await signed_up_residents(town, shipped, "a")
    assert await send_reminders(sessions, shipped, local(5, 7, 30)) == 1  # the day before
    assert await send_reminders(sessions, shipped, local(6, 5, 30)) == 0  # two hours before: quiet hours
    assert await send_reminders(sessions, shipped, local(6, 6, 59)) == 0
    assert await send_reminders(sessions, shipped, local(6, 7, 0)) == 1  # quiet hours over, class not started
    early = await new_class(sessions, capacity=5, starts=dt.datetime(2026, 11, 7, 6, 30, tzinfo=LOCAL_TZ))
    a_id = (await a.person()).id
    async with sessions.begin() as session:
        await sign_up(session, await session.get(CommunityClass, early), a_id, T0)
    assert await send_reminders(sessions, shipped, local(6, 6, 30)) == 0  # quiet
    assert await send_reminders(sessions, shipped, local(6, 21, 0)) == 0  # quiet
    assert await send_reminders(sessions, shipped, local(7, 7, 0)) == 0  # started at 6:30: too late
    assert len(await bulk_to(sessions, "a")) == 2


async def test_no_reminder_after_cancelling_or_stop_and_late_sign_ups_get_only_the_next(
    town: Dispatcher, shipped: Catalog, sessions, clock: FakeClock
) -> None:
    await new_class(sessions, capacity=5)
    a, b, _c = await signed_up_residents(town, shipped, "a", "b", "c")
    await a.tap(button_with(await a.tap("classes"), shipped.label("class.leave")))
    await b.send("dừng nhận tin")
    assert await send_reminders(sessions, shipped, local(4, 19, 30)) == 1  # c only
    clock.now = local(5, 16, 30)  # three hours before
    await signed_up_residents(town, shipped, "late")
    assert await send_reminders(sessions, shipped, local(5, 16, 31)) == 0  # the day-before one is not for "late"
    assert await send_reminders(sessions, shipped, local(5, 17, 30)) == 2  # c and late
    assert await bulk_to(sessions, "a") == []
    assert await bulk_to(sessions, "b") == []
    assert len(await bulk_to(sessions, "c")) == 2
    assert len(await bulk_to(sessions, "late")) == 1


async def test_deleting_my_data_gives_my_seat_back(town: Dispatcher, shipped: Catalog, sessions) -> None:
    class_id = await new_class(sessions, capacity=1)
    a, _ = await signed_up_residents(town, shipped, "a", "b")
    await a.send("/xoa")
    await a.choose(shipped.label("delete.yes"))
    assert list((await statuses(sessions, class_id)).values()) == ["waiting"]  # a's row went with a
    assert await fill_waiting_lists(sessions, shipped, T0) == 1  # the scheduler seats b
    assert list((await statuses(sessions, class_id)).values()) == ["seated"]
    assert len(await bulk_to(sessions, "b")) == 1


async def test_skipping_the_village_at_classes_says_why_instead_of_asking_again(town: Dispatcher, shipped) -> None:
    resident = chat(town, "no-village")
    await resident.agree()
    await resident.choose(shipped.label("dialog.skip"))  # no village at the first question
    asked = texts(await resident.send("/lophoc"))
    assert shipped.say("classes_need_village") in asked
    answer = texts(await resident.choose(shipped.label("dialog.skip")))
    assert shipped.say("classes_village_skipped") in answer
    assert shipped.say("classes_need_village") not in answer


async def test_classes_and_surveys_without_any_area_answer_once(shipped: Catalog, sessions) -> None:
    bare = Dispatcher(shipped, sessions)  # a database with no areas at all: nothing to choose from
    resident = Chat(bare, sessions, "bare")
    await resident.agree()
    assert shipped.say("classes_village_skipped") in texts(await resident.send("/lophoc"))
    assert shipped.say("survey_village_skipped") in texts(await resident.send("/khaosat"))
