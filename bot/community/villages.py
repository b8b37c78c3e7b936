"""Choosing one's village (thôn, tổ dân phố): commune first when there are several."""

from __future__ import annotations

from sqlalchemy import select

from bot.community.turn import Option, Picked, Turn, ask, joined, show_menu
from storage.areas import Place, places, villages
from storage.models import Area

SKIP = "skip"


async def open_villages(turn: Turn, then: str, preface: str = "") -> None:
    """Ask where the person lives; ``then`` says what follows (welcome, menu, household_create);
    ``preface`` goes on top of the question."""
    found = (await places(turn.session)).communes
    if len(found) > 1:
        options = [Option(c.code, c.name) for c in found] + [Option(SKIP, turn.label("dialog.skip"))]
        ask(turn, "village.commune", joined(preface, turn.say("village_ask_commune")), options, then=then)
        return
    if not found:  # no areas at all: nothing to ask; said only where a village is needed
        await _after(turn, then, joined(preface, "" if then == "welcome" else turn.say("village_none")))
        return
    await _ask_village(turn, found[0], then, preface)


async def on_commune(turn: Turn, answer: Picked) -> None:
    then = turn.state.dialog_data.get("then", "menu")
    commune = await turn.session.get(Area, answer.value) if answer.value and answer.value != SKIP else None
    if commune is None:
        await _after(turn, then, "")
        return
    await _ask_village(turn, Place(commune.code, commune.name), then)


async def on_village(turn: Turn, answer: Picked) -> None:
    then = turn.state.dialog_data.get("then", "menu")
    village = await turn.session.get(Area, answer.value) if answer.value and answer.value != SKIP else None
    if village is None or turn.person is None:
        await _after(turn, then, "")
        return
    turn.person.area_code = village.code
    commune = await turn.session.scalar(select(Area.name).where(Area.code == village.parent_code))
    await _after(turn, then, turn.say("village_saved", village=village.name, commune=commune or ""))


async def _ask_village(turn: Turn, commune: Place, then: str, preface: str = "") -> None:
    found = (await places(turn.session)).villages.get(commune.code)
    if found is None:  # a commune created since the places were read: ask the database
        found = tuple(Place(v.code, v.name) for v in await villages(turn.session, within=[commune.code]))
    if not found:
        await _after(turn, then, joined(preface, turn.say("village_none")))
        return
    options = [Option(v.code, v.name) for v in found] + [Option(SKIP, turn.label("dialog.skip"))]
    ask(turn, "village.pick", joined(preface, turn.say("village_ask", commune=commune.name)), options, then=then)


async def _after(turn: Turn, then: str, said: str) -> None:
    if then == "household_create":
        from bot.community.households import ask_label

        await ask_label(turn, said)
        return
    if (then == "classes" or then.startswith("survey:")) and (turn.person is None or turn.person.area_code is None):
        # Skipped, or no village to choose from: say why, do not ask again (it would ask forever).
        skipped = "classes_village_skipped" if then == "classes" else "survey_village_skipped"
        show_menu(turn, joined(said, turn.say(skipped)))
        return
    if then == "classes":
        from bot.community.classes import open_classes

        await open_classes(turn, said)
        return
    if then.startswith("survey:"):
        from bot.community.surveys import start_survey

        await start_survey(turn, then.removeprefix("survey:"), said)
        return
    if then == "welcome":
        show_menu(turn, joined(said, turn.say("welcome")))
        return
    show_menu(turn, said)
