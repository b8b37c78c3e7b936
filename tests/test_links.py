"""One person on Zalo and Telegram: /lienket gives a code, /ma CODE on the other channel joins the accounts."""

from __future__ import annotations

import asyncio
import datetime as dt
import re

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.dispatcher import Dispatcher
from flows.catalog import Catalog
from flows.types import EventKind
from storage.areas import seed_areas
from storage.households import create_household
from storage.models import AuditEntry, ChannelIdentity, Household, ParticipationEvent, Person, SurveyAnswer
from storage.roles import Role, active_grants, grant
from storage.surveys import save_answer
from tests.chat import Chat, texts
from tests.helpers import T0, FakeClock, as_numbers

CODE = re.compile(r"/ma ([A-Z0-9]{6})\b")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def town(shipped: Catalog, sessions: async_sessionmaker[AsyncSession], clock: FakeClock) -> Dispatcher:
    async with sessions.begin() as session:
        await seed_areas(session, shipped.areas, T0)
    return Dispatcher(shipped, sessions, clock=clock)


def account(town: Dispatcher, channel: str, user: str) -> Chat:
    return Chat(town, town._sessions, user, channel=channel)


async def link_code(chat: Chat) -> str:
    found = CODE.search(texts(await chat.send("/lienket")))
    assert found, "no link code in the reply"
    return found.group(1)


async def people(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(Person)) or 0


async def test_progress_on_both_channels_becomes_one_persons(town: Dispatcher, shipped: Catalog, sessions) -> None:
    telegram, zalo = account(town, "telegram", "1001"), account(town, "zalo_oa", "z-1001")
    await telegram.join()
    await zalo.join("Thôn Bắc")
    for typed in ["cai vneid ntn", *as_numbers(shipped, "vneid")]:  # VNeID done on Zalo
        await zalo.send(typed)
    await telegram.send("cai vneid ntn")  # started on Telegram too
    keep, gone = await telegram.person(), await zalo.person()
    assert keep is not None
    assert gone is not None
    async with sessions.begin() as session:
        home = await create_household(session, "demo-thon-3", "Nhà bà Lan", T0)
        (await session.get(Person, gone.id)).household_id = home.id
        await grant(session, gone.id, Role.VOLUNTEER, "demo-thon-3", None, T0)
    assert await people(sessions) == 2

    code = await link_code(telegram)
    done = texts(await zalo.send(f"/ma {code}"))
    assert shipped.say("link_done") in done
    assert await people(sessions) == 1
    assert (await zalo.person()).id == keep.id
    async with sessions() as session:
        merged = await session.get(Person, keep.id)
        rows = (await session.execute(select(ParticipationEvent.person_id, ParticipationEvent.subject))).all()
        completed = await session.scalar(
            select(func.count()).where(
                ParticipationEvent.kind == EventKind.COMPLETED, ParticipationEvent.person_id == keep.id
            )
        )
        audit = await session.scalar(select(AuditEntry).where(AuditEntry.action == "accounts_linked"))
        identities = (
            await session.scalars(select(ChannelIdentity.channel).where(ChannelIdentity.person_id == keep.id))
        ).all()
    assert {row.person_id for row in rows} == {keep.id}
    assert {row.subject for row in rows} == {keep.subject}
    assert completed == 1
    assert merged.household_id == home.id  # the kept person had none: the other's household is theirs now
    assert merged.area_code == keep.area_code  # their own village stays
    assert sorted(identities) == ["telegram", "zalo_oa"]
    assert audit is not None
    assert audit.detail["merged_person"] == gone.id
    async with sessions() as session:
        assert [g.role for g in await active_grants(session, keep.id)] == ["volunteer"]
    # The Zalo account now carries on as the kept person: "Tiếp tục" the module begun on Telegram
    assert any(b.id == "continue" for b in (await zalo.replies())[-1].buttons)


async def test_the_households_of_both_stay_apart_when_both_have_one(town: Dispatcher, sessions) -> None:
    telegram, zalo = account(town, "telegram", "2001"), account(town, "zalo_oa", "z-2001")
    await telegram.join()
    await zalo.join()
    keep, gone = await telegram.person(), await zalo.person()
    async with sessions.begin() as session:
        mine = await create_household(session, "demo-thon-1", "Nhà tôi", T0)
        other = await create_household(session, "demo-thon-1", "Nhà khác", T0)
        (await session.get(Person, keep.id)).household_id = mine.id
        (await session.get(Person, gone.id)).household_id = other.id
    await zalo.send(f"/ma {await link_code(telegram)}")
    async with sessions() as session:
        labels = set((await session.scalars(select(Household.label))).all())
    assert (await zalo.person()).household_id == mine.id
    assert labels == {"Nhà tôi"}  # the other household had no one left


async def test_own_expired_used_and_concurrent_codes(town: Dispatcher, shipped: Catalog, sessions, clock) -> None:
    owner = account(town, "telegram", "3001")
    await owner.join()
    code = await link_code(owner)
    assert shipped.say("link_own_code") in texts(await owner.send(f"/ma {code}"))
    late = account(town, "zalo_oa", "z-late")
    await late.join()
    clock.advance(11 * 60)
    assert shipped.say("code_unknown") in texts(await late.send(f"/ma {code}"))

    code = await link_code(owner)
    first, second = account(town, "zalo_oa", "z-a"), account(town, "zalo_bot", "z-b")
    await first.join()
    await second.join()
    before = await people(sessions)
    answers = await asyncio.gather(first.send(f"/ma {code}"), second.send(f"/ma {code.lower()}"))
    said = [texts(a) for a in answers]
    assert sum(shipped.say("link_done") in s for s in said) == 1
    assert sum(shipped.say("code_unknown") in s for s in said) == 1
    assert await people(sessions) == before - 1
    # a new code replaces an unused earlier one
    old = await link_code(owner)
    new = await link_code(owner)
    assert shipped.say("code_unknown") in texts(await late.send(f"/ma {old}"))
    assert shipped.say("link_done") in texts(await late.send(f"/ma {new}"))
    assert clock() - T0 < dt.timedelta(minutes=12)


async def test_survey_answers_of_the_merged_person_become_the_kept_persons(
    town: Dispatcher, shipped: Catalog, sessions
) -> None:
    telegram, zalo = account(town, "telegram", "4001"), account(town, "zalo_oa", "z-4001")
    await telegram.join()
    await zalo.join()
    survey = shipped.surveys["chi_so_so"]
    first, second = survey.questions[0], survey.questions[1]
    keep, gone = await telegram.person(), await zalo.person()
    async with sessions.begin() as session:  # no household: each answers for themselves
        await save_answer(session, survey, first.id, first.options[0], await session.get(Person, keep.id), T0)
        await save_answer(session, survey, first.id, first.options[1], await session.get(Person, gone.id), T0)
        await save_answer(session, survey, second.id, second.options[1], await session.get(Person, gone.id), T0)
    await zalo.send(f"/ma {await link_code(telegram)}")
    async with sessions() as session:
        rows = (
            await session.execute(select(SurveyAnswer.question, SurveyAnswer.respondent, SurveyAnswer.option))
        ).all()
    assert sorted(rows) == sorted(
        [(first.id, f"p{keep.id}", first.options[0].id), (second.id, f"p{keep.id}", second.options[1].id)]
    )


async def test_the_kept_persons_own_message_in_the_same_transaction_as_the_link_is_kept(
    town: Dispatcher, shipped: Catalog, sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    telegram, zalo = account(town, "telegram", "5001"), account(town, "zalo_oa", "z-5001")
    await telegram.join()
    await zalo.join()
    code = await link_code(telegram)
    await telegram.send("cai vneid ntn")
    before = await telegram.state()
    batches: list[int] = []
    apply_all = town._apply_all

    async def spy(envelopes: list) -> list[bool]:
        batches.append(len(envelopes))
        return await apply_all(envelopes)

    monkeypatch.setattr(town, "_apply_all", spy)
    # The step done on Telegram and the code typed on Zalo are committed in one transaction (group commit).
    await asyncio.gather(telegram.send(as_numbers(shipped, "vneid")[0]), zalo.send(f"/ma {code}"))
    assert batches == [2]
    kept = await telegram.state()
    assert (before["mode"], kept["module"]) == ("step", "vneid")
    assert kept["step"] != before["step"]  # the Telegram turn's progress was not overwritten by the link
    assert kept["mode"] == "menu"  # and the link's menu was not overwritten by the Telegram turn
