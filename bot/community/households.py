"""A resident's household: create one and share its code, join with a code, move, leave."""

from __future__ import annotations

from bot.community.turn import Option, Picked, Turn, ask, free_text_problem, menu_option, repeat, show_menu
from storage.households import LABEL_MAX, create_household, household_by_code, members, move_person
from storage.metrics import household_statuses
from storage.models import Area, Household

CREATE, JOIN, LEAVE, YES, NO = "create", "join", "leave", "yes", "no"


async def open_household(turn: Turn) -> None:
    """The household screen: what it is and its code, or how to create or join one."""
    assert turn.person is not None
    household = await turn.session.get(Household, turn.person.household_id) if turn.person.household_id else None
    if household is None:
        options = [
            Option(CREATE, turn.label("household.create")),
            Option(JOIN, turn.label("household.join")),
            menu_option(turn),
        ]
        ask(turn, "household.home", turn.say("household_none"), options)
        return
    ask(
        turn,
        "household.home",
        await describe(turn, household),
        [Option(LEAVE, turn.label("household.leave")), menu_option(turn)],
    )


async def describe(turn: Turn, household: Household) -> str:
    village = await turn.session.get(Area, household.area_code)
    commune = village.parent_code if village else None
    rule = turn.catalog.community.rule_for(commune)
    statuses = await household_statuses(turn.session, turn.catalog.community, [household.area_code])
    titles = [turn.catalog.modules[m].title if m in turn.catalog.modules else m for m in rule.required_modules]
    return turn.say(
        "household_info",
        label=household.label,
        village=village.name if village else "",
        code=household.code,
        members=len(await members(turn.session, household.id)),
        done=statuses.get(household.id, False),
        required=titles,
        others=rule.others_min_modules,
    )


async def on_home(turn: Turn, answer: Picked) -> None:
    assert turn.person is not None
    if answer.value == CREATE:
        if turn.person.area_code is None:
            from bot.community.villages import open_villages

            await open_villages(turn, then="household_create")
            return
        await ask_label(turn)
    elif answer.value == JOIN:
        ask(turn, "household.code", turn.say("household_ask_code"), [menu_option(turn)], free_text=True)
    elif answer.value == LEAVE:
        household = await turn.session.get(Household, turn.person.household_id)
        label = household.label if household else ""
        options = [Option(YES, turn.label("household.leave")), Option(NO, turn.label("dialog.no"))]
        ask(turn, "household.leave", turn.say("household_leave_confirm", label=label), options)
    else:
        show_menu(turn)


async def ask_label(turn: Turn, preface: str = "") -> None:
    assert turn.person is not None
    if turn.person.area_code is None:  # skipped the village question
        show_menu(turn, preface)
        return
    text = turn.say("household_ask_label")
    ask(turn, "household.label", f"{preface}\n\n{text}" if preface else text, [menu_option(turn)], free_text=True)


async def on_label(turn: Turn, answer: Picked) -> None:
    assert turn.person is not None
    assert turn.person.area_code is not None
    if answer.text is None:
        show_menu(turn)
        return
    if refused_label(turn, answer.text):
        return
    household = await create_household(turn.session, turn.person.area_code, answer.text, turn.now)
    await move_person(turn.session, turn.person, household.id)
    show_menu(turn, turn.say("household_created", label=household.label, code=household.code))


def refused_label(turn: Turn, text: str) -> bool:
    """A household label must be 2 to LABEL_MAX characters and hold no secret; if not, say so, ask again."""
    problem = free_text_problem(turn, text, LABEL_MAX)
    if problem or len(text) < 2:
        repeat(turn, problem or "household_label_bad", max=LABEL_MAX)
        return True
    return False


async def on_code(turn: Turn, answer: Picked) -> None:
    if answer.text is None:
        show_menu(turn)
        return
    household = await household_by_code(turn.session, answer.text)
    if household is None:
        repeat(turn, "code_unknown")
        return
    await join(turn, household)


async def join(turn: Turn, household: Household) -> None:
    """Join a household found by its code; moving from another household asks first."""
    assert turn.person is not None
    if turn.person.household_id == household.id:
        show_menu(turn, turn.say("household_already"))
        return
    current = await turn.session.get(Household, turn.person.household_id) if turn.person.household_id else None
    if current is not None:
        options = [Option(YES, turn.label("household.move")), Option(NO, turn.label("household.stay"))]
        text = turn.say("household_move_confirm", current=current.label, label=household.label)
        ask(turn, "household.move", text, options, target=household.id)
        return
    await _enter(turn, household)


async def on_move(turn: Turn, answer: Picked) -> None:
    target = turn.state.dialog_data.get("target")
    household = await turn.session.get(Household, target) if answer.value == YES and target else None
    if household is None:
        show_menu(turn)
        return
    await _enter(turn, household)


async def on_leave(turn: Turn, answer: Picked) -> None:
    assert turn.person is not None
    if answer.value != YES:
        show_menu(turn)
        return
    await move_person(turn.session, turn.person, None)
    show_menu(turn, turn.say("household_left"))


async def _enter(turn: Turn, household: Household) -> None:
    assert turn.person is not None
    await move_person(turn.session, turn.person, household.id)
    turn.person.area_code = household.area_code  # members live where their household is
    show_menu(turn, turn.say("household_joined", label=household.label))
