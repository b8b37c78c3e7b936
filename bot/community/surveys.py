"""Surveys in chat: a resident answers (the invitation's button, "khảo sát", ``/khaosat``), one question
at a time with buttons, each answer stored at once (a later one replaces it); an officer sends a
survey's invitation to an area like a broadcast (``/guikhaosat``: survey → area → when → preview → send).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.broadcasts import service
from bot.community.broadcasting import areas_in, ask_when
from bot.community.turn import Option, Picked, Turn, ask, joined, menu_option, show_menu
from flows.surveys import SurveySpec
from storage.models import Role
from storage.roles import scope
from storage.surveys import save_answer


async def open_survey(turn: Turn) -> None:
    await _pick(turn, "sv.pick", "survey_pick", start_survey)


async def on_pick(turn: Turn, answer: Picked) -> None:
    await _picked(turn, answer, start_survey)


async def _pick(turn: Turn, stage: str, key: str, then: Callable[[Turn, str], Awaitable[None]]) -> None:
    """Which survey: none to choose from, one (no question), or a list."""
    surveys = list(turn.catalog.surveys.values())
    if not surveys:
        show_menu(turn, turn.say("survey_none"))
    elif len(surveys) == 1:
        await then(turn, surveys[0].id)
    else:
        ask(turn, stage, turn.say(key), [*[Option(s.id, s.title) for s in surveys], menu_option(turn)])


async def _picked(turn: Turn, answer: Picked, then: Callable[[Turn, str], Awaitable[None]]) -> None:
    if answer.value not in turn.catalog.surveys:
        show_menu(turn)
        return
    await then(turn, answer.value)


async def start_survey(turn: Turn, survey_id: str, preface: str = "") -> None:
    """The first question (after the village, which answers are counted by)."""
    assert turn.person is not None
    survey = turn.catalog.surveys.get(survey_id)
    if survey is None:
        show_menu(turn, joined(preface, turn.say("survey_none")))
        return
    if turn.person.area_code is None:
        from bot.community.villages import open_villages

        await open_villages(turn, then=f"survey:{survey.id}", preface=turn.say("survey_need_village"))
        return
    _ask(turn, survey, 0, preface)


def _ask(turn: Turn, survey: SurveySpec, index: int, preface: str = "") -> None:
    question = survey.questions[index]
    text = turn.say("survey_question", number=index + 1, total=len(survey.questions), text=question.text)
    options = [Option(o.id, o.label) for o in question.options]
    ask(turn, "sv.question", joined(preface, text), [*options, menu_option(turn)], survey=survey.id, index=index)


async def on_question(turn: Turn, answer: Picked) -> None:
    assert turn.person is not None
    stage = turn.state.dialog_data
    survey = turn.catalog.surveys.get(str(stage.get("survey", "")))
    index = stage.get("index")
    if survey is None or not isinstance(index, int) or not 0 <= index < len(survey.questions):
        show_menu(turn)
        return
    question = survey.questions[index]
    option = question.option(answer.value or "")
    if option is None:
        show_menu(turn)
        return
    await save_answer(turn.session, survey, question.id, option, turn.person, turn.now)
    if index + 1 < len(survey.questions):
        _ask(turn, survey, index + 1)
        return
    show_menu(turn, turn.say("survey_thanks"))


# --- sending (officers) ------------------------------------------------------------------------


async def open_send(turn: Turn) -> None:
    assert turn.person is not None
    if not await scope(turn.session, turn.person.id, Role.OFFICER):
        show_menu(turn, turn.say("survey_officer_only"))
        return
    await _pick(turn, "svs.pick", "survey_send_pick", _ask_area)


async def on_send_pick(turn: Turn, answer: Picked) -> None:
    await _picked(turn, answer, _ask_area)


async def _ask_area(turn: Turn, survey_id: str) -> None:
    assert turn.person is not None
    areas = await scope(turn.session, turn.person.id, Role.OFFICER)
    places = await areas_in(turn, areas)
    options = [*[Option(a.code, a.name) for a in places][:30], menu_option(turn)]
    ask(turn, "svs.area", turn.say("survey_send_area"), options, survey=survey_id)


async def on_send_area(turn: Turn, answer: Picked) -> None:
    assert turn.person is not None
    survey = turn.catalog.surveys.get(str(turn.state.dialog_data.get("survey", "")))
    allowed = await scope(turn.session, turn.person.id, Role.OFFICER)
    if survey is None or answer.value is None or answer.value not in allowed:
        show_menu(turn)
        return
    audience = service.audience_for(answer.value, service.WHO_ALL, None, turn.now).to_dict()
    ask_when(turn, audience, survey.intro, survey.id)
