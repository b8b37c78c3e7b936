"""Surveys: an officer sends the invitation like a broadcast; residents answer with buttons or numbers;
answers per village equal an independent count, a repeated answer (by the same person or another member
of the household) replaces the earlier one; the self-reported indicators reach the area metrics."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
from sqlalchemy import select

from bot.broadcasts import service
from bot.dispatcher import Dispatcher
from flows.catalog import Catalog
from storage.areas import seed_areas
from storage.households import create_household
from storage.metrics import area_metrics
from storage.models import AuditEntry, Broadcast, OutboxMessage, Person, Role, SurveyAnswer
from storage.roles import grant
from storage.surveys import answers_by_area
from tests.chat import Chat, labels, texts
from tests.helpers import T0

SURVEY = "chi_so_so"
QUESTIONS = ("smartphone", "epayment", "vneid_level2")
VALUES = {"n0": 0, "n1": 1, "n2": 2, "n3": 3, "n4": 4}


@pytest.fixture
async def town(shipped: Catalog, sessions) -> Dispatcher:
    async with sessions.begin() as session:
        await seed_areas(session, shipped.areas, T0)
    return Dispatcher(shipped, sessions, clock=lambda: T0)


async def resident(town: Dispatcher, user: str, village: str = "Thôn Đông") -> Chat:
    person = Chat(town, town._sessions, user)
    await person.join(village)
    return person


async def share_household(sessions, village: str, *people: Chat) -> int:
    ids = [(await p.person()).id for p in people]
    async with sessions.begin() as session:
        household = await create_household(session, village, "Nhà thử", T0)
        for person_id in ids:
            (await session.get(Person, person_id)).household_id = household.id
        return household.id


async def answer(shipped: Catalog, person: Chat, options: list[str], by_number: bool = False) -> str:
    """Tap the invitation's button, then answer each question (by label, or by typing its number)."""
    question = shipped.surveys[SURVEY].questions
    replies = await person.tap(f"sv:{SURVEY}")
    for index, option in enumerate(options):
        assert f"Câu {index + 1}/3" in texts(replies)
        if by_number:
            ids = [o.id for o in question[index].options]
            replies = await person.send(str(ids.index(option) + 1))
        else:
            replies = await person.choose(question[index].option(option).label)
    return texts(replies)


async def test_answers_per_village_equal_an_independent_count_and_a_later_answer_replaces(
    town: Dispatcher, shipped: Catalog, sessions
) -> None:
    a1, a2, b, c = [await resident(town, user) for user in ("a1", "a2", "b", "c")]
    d = await resident(town, "d", "Thôn Tây")
    homes = {"a": await share_household(sessions, "demo-thon-1", a1, a2)}
    homes["b"] = await share_household(sessions, "demo-thon-1", b)
    homes["d"] = await share_household(sessions, "demo-thon-2", d)
    answered = [  # (who, respondent, village, answers), in order; c has no household and answers for themselves
        (a1, f"h{homes['a']}", "demo-thon-1", ["n2", "n1", "n0"]),
        (b, f"h{homes['b']}", "demo-thon-1", ["n1", "n0", "n0"]),
        (c, f"p{(await c.person()).id}", "demo-thon-1", ["n1", "n1", "n1"]),
        (d, f"h{homes['d']}", "demo-thon-2", ["n4", "n3", "n2"]),
        (a2, f"h{homes['a']}", "demo-thon-1", ["n3", "n2", "n1"]),  # the other member: replaces a1's
        (b, f"h{homes['b']}", "demo-thon-1", ["n2", "n1", "n0"]),  # b again: replaces
    ]
    for number, (who, _, _, options) in enumerate(answered):
        said = await answer(shipped, who, options, by_number=number % 2 == 1)
        assert shipped.say("survey_thanks").splitlines()[0] in said

    latest: dict[str, tuple[str, list[str]]] = {}
    for _, respondent, village, options in answered:
        latest[respondent] = (village, options)
    expected_options: defaultdict[str, defaultdict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    expected_sums: defaultdict[str, Counter[str]] = defaultdict(Counter)
    expected_people: Counter[str] = Counter()
    for village, options in latest.values():
        expected_people[village] += 1
        for question, option in zip(QUESTIONS, options, strict=True):
            expected_options[village][question][option] += 1
            expected_sums[village][question] += VALUES[option]

    async with sessions() as session:
        found = await answers_by_area(session, SURVEY, ["demo"])
        rows = await session.scalar(select(SurveyAnswer.id).order_by(SurveyAnswer.id.desc()))
        metrics = {m.code: m for m in await area_metrics(session, shipped.community, ["demo"], year=2026)}
    assert set(found) == set(expected_people)
    for village, counted in found.items():
        assert counted.respondents == expected_people[village]
        assert counted.options == {q: dict(c) for q, c in expected_options[village].items()}
        assert counted.sums == dict(expected_sums[village])
    assert rows is not None

    east, commune = metrics["demo-thon-1"], metrics["demo"]
    phones = next(t for t in east.targets if t.id == "smartphone")
    assert phones.self_reported
    assert phones.value == expected_sums["demo-thon-1"]["smartphone"] == 3 + 2 + 1
    assert phones.whole == 910
    assert phones.percent == pytest.approx(100 * 6 / 910)
    assert phones.target == 85
    total = next(t for t in commune.targets if t.id == "epayment")
    assert total.value == expected_sums["demo-thon-1"]["epayment"] + expected_sums["demo-thon-2"]["epayment"]
    assert not next(t for t in east.targets if t.id == "basic_skills").self_reported


async def test_an_officer_sends_the_invitation_like_a_broadcast(town: Dispatcher, shipped: Catalog, sessions) -> None:
    residents = [await resident(town, user) for user in ("r1", "r2")]
    await resident(town, "west", "Thôn Tây")
    await residents[1].send("dừng nhận tin")
    officer = await resident(town, "officer")
    async with sessions.begin() as session:
        await grant(session, (await officer.person()).id, Role.OFFICER, "demo", None, T0)
    await officer.send("/guikhaosat")  # one survey: no survey question
    await officer.choose("Thôn Đông")
    preview = await officer.choose(shipped.label("broadcast.when_now"))
    assert "Chào bạn, xã muốn biết bà con Thôn Đông" in texts(preview)
    assert "Gửi tới 1 người" in texts(preview)  # r1: r2 said "dừng nhận tin", the officer is no resident
    await officer.choose(shipped.label("broadcast.send"))
    async with sessions() as session:
        broadcast = (await session.scalars(select(Broadcast))).one()
    assert broadcast.survey == SURVEY
    async with sessions() as session:
        confirmed = (await session.scalars(select(AuditEntry).where(AuditEntry.action == "broadcast_confirmed"))).one()
    assert confirmed.detail["survey"] == SURVEY
    assert await service.start_run(sessions, shipped, broadcast.id, broadcast.send_at, T0) is not None
    async with sessions() as session:
        sent = list(await session.scalars(select(OutboxMessage).where(OutboxMessage.run_id.is_not(None))))
    assert [m.recipient for m in sent] == ["r1"]
    assert [b["id"] for b in sent[0].payload["buttons"]] == [f"sv:{SURVEY}", "menu"]

    first = await residents[0].tap(f"sv:{SURVEY}")
    assert labels(first)[:2] == ["Chưa có ai", "1 người"]
    volunteer = await resident(town, "vol")
    async with sessions.begin() as session:
        await grant(session, (await volunteer.person()).id, Role.VOLUNTEER, "demo-thon-1", None, T0)
    assert shipped.say("survey_officer_only") in texts(await volunteer.send("/guikhaosat"))


async def test_typed_keyword_opens_the_survey_and_deleting_my_data_deletes_my_answers(
    town: Dispatcher, shipped: Catalog, sessions
) -> None:
    person = await resident(town, "p")
    assert "Câu 1/3" in texts(await person.send("tra loi khao sat"))
    await person.send("2")
    async with sessions() as session:
        assert len(list(await session.scalars(select(SurveyAnswer.id)))) == 1
    await person.send("/xoa")
    await person.choose(shipped.label("delete.yes"))
    async with sessions() as session:
        assert list(await session.scalars(select(SurveyAnswer.id))) == []


# --- content check -------------------------------------------------------------------------------


def test_content_check_reports_a_bad_survey_and_a_target_on_a_missing_question(tmp_path) -> None:
    from content import CONTENT_DIR, read_content
    from flows.catalog import check_content
    from tests.conftest import make_content

    content = make_content(tmp_path)
    surveys = (CONTENT_DIR / "surveys.yaml").read_text(encoding="utf-8")
    (content / "surveys.yaml").write_text(surveys.replace("{{ thon }}", "{{ thon.__class__ }}"), encoding="utf-8")
    community = (content / "community.yaml").read_text(encoding="utf-8")
    target = "targets:\n  - {id: phones, label: x, measure: MEASURE, survey: chi_so_so, question: QUESTION}\n"
    (content / "community.yaml").write_text(
        community + target.replace("MEASURE", "survey_adults").replace("QUESTION", "tablets"), encoding="utf-8"
    )
    problems = [str(p) for p in check_content(read_content(content))]
    intro = next(i for i, line in enumerate(surveys.splitlines(), 1) if line.strip().startswith("intro:"))
    assert f"content/surveys.yaml:{intro}: intro: not a valid broadcast text (broadcast_template_forbidden)" in problems
    assert any("no question 'tablets' in survey 'chi_so_so'" in p for p in problems), problems
    (content / "community.yaml").write_text(
        community + target.replace("MEASURE", "adults_completed").replace("QUESTION", "smartphone"), encoding="utf-8"
    )
    problems = [str(p) for p in check_content(read_content(content))]
    assert any("other targets take neither" in p for p in problems), problems
