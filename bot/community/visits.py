"""``/thamnha``: a volunteer records help given in person to someone who does not use the bot.

Village (within the volunteer's areas) → household (found by code or label, or new) → member
(or a new one, a name optional) → what was done → confirm. The events count like any other, with
``assisted_by`` and channel "in_person"; a mistake is undone only by a correcting ("retracted") event.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select

from bot.community.households import refused_label
from bot.community.turn import Option, Picked, Turn, ask, free_text_problem, menu_option, repeat, show_menu
from bot.community.volunteers import volunteer_scope
from flows.community import IN_PERSON, AreaKind
from flows.types import EventKind
from storage.households import create_household, members, search
from storage.models import Area, Household, ParticipationEvent, Person
from storage.repo import create_person, log_events
from storage.roles import audit

NEW, DONE, CONFIRM, CANCEL, UNDO, AGAIN, SKIP = "new", "done", "confirm", "cancel", "undo", "again", "skip"
CHECKED = "✅ "
NAME_MAX = 40
NEW_MEMBER = 0  # a member created only once the visit is confirmed


async def open_visit(turn: Turn) -> None:
    areas = await volunteer_scope(turn)
    if areas is None:
        return
    found = list(
        await turn.session.scalars(
            select(Area).where(Area.code.in_(areas), Area.kind == AreaKind.VILLAGE).order_by(Area.name)
        )
    )
    if len(found) == 1:
        await _ask_household(turn, found[0])
        return
    options = [*[Option(a.code, a.name) for a in found][:30], menu_option(turn)]
    ask(turn, "visit.village", turn.say("visit_ask_village"), options)


async def on_village(turn: Turn, answer: Picked) -> None:
    village = await _village_in_scope(turn, answer.value)
    if village is None:
        show_menu(turn)
        return
    await _ask_household(turn, village)


async def on_household(turn: Turn, answer: Picked) -> None:
    village = await _village_in_scope(turn, turn.state.dialog_data.get("village"))
    if village is None or answer.value == "menu":
        show_menu(turn)
        return
    if answer.value == NEW:
        options = [menu_option(turn)]
        ask(turn, "visit.label", turn.say("visit_ask_label"), options, free_text=True, village=village.code)
        return
    if answer.value is not None:  # a household picked from the search results
        household = await turn.session.get(Household, int(answer.value))
        if household is not None and household.area_code == village.code:
            await _ask_member(turn, household)
            return
    if answer.text is None or free_text_problem(turn, answer.text):
        repeat(turn, "visit_not_found", village=village.name)
        return
    found = await search(turn.session, village.code, answer.text)
    if not found:
        repeat(turn, "visit_not_found", village=village.name)
        return
    options = [Option(str(h.id), f"{h.label} ({h.code})") for h in found]
    options += [Option(NEW, turn.label("visit.new_household")), menu_option(turn)]
    ask(turn, "visit.household", turn.say("visit_found", village=village.name), options, True, village=village.code)


async def on_label(turn: Turn, answer: Picked) -> None:
    village = await _village_in_scope(turn, turn.state.dialog_data.get("village"))
    if village is None or answer.text is None:
        show_menu(turn)
        return
    if refused_label(turn, answer.text):
        return
    household = await create_household(turn.session, village.code, answer.text, turn.now)
    await _audit(turn, "household_created", village.code, household=household.id)
    await _ask_member(turn, household)


async def on_member(turn: Turn, answer: Picked) -> None:
    household = await _household_in_scope(turn)
    if household is None or answer.value in (None, "menu"):
        show_menu(turn)
        return
    if answer.value == NEW:
        options = [Option(SKIP, turn.label("dialog.skip")), menu_option(turn)]
        ask(turn, "visit.name", turn.say("visit_ask_name"), options, free_text=True, household=household.id)
        return
    member = await turn.session.get(Person, int(answer.value))
    if member is None or member.household_id != household.id:
        show_menu(turn)
        return
    _ask_items(turn, household.id, member.id, [])


async def on_name(turn: Turn, answer: Picked) -> None:
    household = await _household_in_scope(turn)
    if household is None or answer.value == "menu":
        show_menu(turn)
        return
    name = None
    if answer.text is not None:
        problem = free_text_problem(turn, answer.text, NAME_MAX)
        if problem:
            repeat(turn, problem, max=NAME_MAX)
            return
        name = answer.text
    _ask_items(turn, household.id, NEW_MEMBER, [], name=name)


async def on_items(turn: Turn, answer: Picked) -> None:
    stage = turn.state.dialog_data
    chosen: list[str] = list(stage.get("chosen", []))
    items = {item.id for item in turn.catalog.community.field_visit}
    if answer.value == CANCEL or (answer.value is None and answer.text is None):
        show_menu(turn, turn.say("visit_cancelled") if answer.value == CANCEL else "")
        return
    if answer.value == DONE:
        if not chosen:
            repeat(turn, "visit_nothing")
            return
        await _ask_confirm(turn, stage["household"], stage["member"], chosen, stage.get("name"))
        return
    if answer.value in items:
        chosen = [c for c in chosen if c != answer.value] if answer.value in chosen else [*chosen, answer.value]
    _ask_items(turn, stage["household"], stage["member"], chosen, stage.get("name"))


async def on_confirm(turn: Turn, answer: Picked) -> None:
    stage = turn.state.dialog_data
    household = await _household_in_scope(turn)
    if answer.value != CONFIRM or household is None:
        show_menu(turn, turn.say("visit_cancelled"))
        return
    member = await _member(turn, household, stage.get("member"), stage.get("name"))
    if member is None:
        show_menu(turn, turn.say("visit_cancelled"))
        return
    assert turn.person is not None
    by_id = {item.id: item for item in turn.catalog.community.field_visit}
    rows: list[dict[str, Any]] = []
    for item_id in stage["chosen"]:
        item = by_id.get(item_id)
        if item is None:
            continue
        module = turn.catalog.modules.get(item.module or "")
        rows.append(
            _event(turn, member, EventKind.COMPLETED, item.module or item.id, module.version if module else 0, item.id)
        )
    ids = list(await turn.session.scalars(insert(ParticipationEvent).returning(ParticipationEvent.id), rows))
    if member.mentor_id is None and member.id != turn.person.id:
        member.mentor_id = turn.person.id
    await _audit(
        turn, "field_visit", household.area_code, household=household.id, member=member.id, items=stage["chosen"]
    )
    options = [Option(UNDO, turn.label("visit.undo")), Option(AGAIN, turn.label("visit.again")), menu_option(turn)]
    ask(turn, "visit.after", turn.say("visit_saved"), options, household=household.id, events=ids)


async def on_after(turn: Turn, answer: Picked) -> None:
    stage = turn.state.dialog_data
    household = await _household_in_scope(turn)
    if answer.value == AGAIN and household is not None:
        village = await turn.session.get(Area, household.area_code)
        assert village is not None
        await _ask_household(turn, village)
        return
    if answer.value != UNDO or household is None:
        show_menu(turn)
        return
    originals = list(
        await turn.session.scalars(select(ParticipationEvent).where(ParticipationEvent.id.in_(stage.get("events", []))))
    )
    rows = []
    for original in originals:
        row = _event(turn, None, EventKind.RETRACTED, original.module, original.module_version, original.step)
        row |= {"person_id": original.person_id, "subject": original.subject, "area_code": original.area_code}
        rows.append(row | {"corrects_id": original.id})
    await log_events(turn.session, rows)
    await _audit(turn, "field_visit_undone", household.area_code, events=[o.id for o in originals])
    show_menu(turn, turn.say("visit_undone"))


# --- screens ---------------------------------------------------------------------------------


async def _ask_household(turn: Turn, village: Area) -> None:
    options = [Option(NEW, turn.label("visit.new_household")), menu_option(turn)]
    text = turn.say("visit_ask_household", village=village.name)
    ask(turn, "visit.household", text, options, free_text=True, village=village.code)


async def _ask_member(turn: Turn, household: Household) -> None:
    people = await members(turn.session, household.id)
    options = [
        Option(str(p.id), p.display_name or turn.say("person_unnamed", number=i)) for i, p in enumerate(people, 1)
    ]
    options += [Option(NEW, turn.label("visit.new_member")), menu_option(turn)]
    ask(turn, "visit.member", turn.say("visit_ask_member", label=household.label), options, household=household.id)


def _ask_items(turn: Turn, household_id: int, member_id: int, chosen: list[str], name: str | None = None) -> None:
    options = [
        Option(item.id, f"{CHECKED if item.id in chosen else ''}{item.label}")
        for item in turn.catalog.community.field_visit
    ]
    options += [Option(DONE, turn.label("visit.done")), Option(CANCEL, turn.label("visit.cancel"))]
    text = turn.say("visit_ask_items")
    ask(turn, "visit.items", text, options, household=household_id, member=member_id, chosen=chosen, name=name)


async def _ask_confirm(turn: Turn, household_id: int, member_id: int, chosen: list[str], name: str | None) -> None:
    household = await turn.session.get(Household, household_id)
    if household is None:
        show_menu(turn)
        return
    village = await turn.session.get(Area, household.area_code)
    people = await members(turn.session, household.id)
    number = next((i for i, p in enumerate(people, 1) if p.id == member_id), len(people) + 1)
    shown = next((p.display_name for p in people if p.id == member_id), name)
    labels = {item.id: item.label for item in turn.catalog.community.field_visit}
    text = turn.say(
        "visit_confirm",
        member=shown or turn.say("person_unnamed", number=number),
        label=household.label,
        village=village.name if village else "",
        items=[labels[c] for c in chosen if c in labels],
    )
    options = [Option(CONFIRM, turn.label("visit.confirm")), Option(CANCEL, turn.label("visit.cancel"))]
    ask(turn, "visit.confirm", text, options, household=household_id, member=member_id, chosen=chosen, name=name)


# --- checks and rows -------------------------------------------------------------------------


async def _village_in_scope(turn: Turn, code: object) -> Area | None:
    """The village, if the volunteer may act there (checked again at every step)."""
    assert turn.person is not None
    if not isinstance(code, str):
        return None
    from storage.roles import scope

    if code not in await scope(turn.session, turn.person.id):
        return None
    village = await turn.session.get(Area, code)
    return village if village is not None and village.kind == AreaKind.VILLAGE else None


async def _member(turn: Turn, household: Household, member_id: object, name: object) -> Person | None:
    """The member the visit is for; a new one is created now, with the consent the volunteer confirmed."""
    if member_id == NEW_MEMBER:
        member = await create_person(turn.session, turn.now, name=name if isinstance(name, str) else None)
        member.area_code = household.area_code
        member.household_id = household.id
        await turn.session.flush()
        return member
    member = await turn.session.get(Person, member_id) if isinstance(member_id, int) else None
    return member if member is not None and member.household_id == household.id else None


async def _household_in_scope(turn: Turn) -> Household | None:
    household_id = turn.state.dialog_data.get("household")
    household = await turn.session.get(Household, household_id) if isinstance(household_id, int) else None
    if household is None or await _village_in_scope(turn, household.area_code) is None:
        return None
    return household


def _event(turn: Turn, member: Person | None, kind: EventKind, module: str, version: int, step: str) -> dict[str, Any]:
    assert turn.person is not None
    return {
        "person_id": member.id if member else None,
        "subject": member.subject if member else None,
        "area_code": member.area_code if member else None,
        "module": module,
        "module_version": version,
        "kind": kind.value,
        "step": step,
        "channel": IN_PERSON,
        "at": turn.inbound.at,
        "assisted_by": turn.person.id,
        "corrects_id": None,
    }


async def _audit(turn: Turn, action: str, area_code: str, **detail: Any) -> None:
    assert turn.person is not None
    await audit(turn.session, turn.person.id, action, area_code, now=turn.now, **detail)
