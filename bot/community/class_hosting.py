"""``/molop``: a volunteer or an officer opens a community class, sees who signed up, takes attendance,
or calls a class off; all within the areas they cover (checked again at every step).

Open: area → topic → for whom → module → place → date and time → capacity → confirm.
Attendance: tick the people present from the sign-up list, or add someone present (with or without
the bot, as in ``/thamnha``: a name optional, with their agreement), then save. Each person present
becomes one ``attended`` event with ``assisted_by`` and channel "in_person", counted like any other;
saving again adds only the people not recorded yet.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from bot.broadcasts.class_notices import class_values, notify
from bot.community.broadcasting import areas_in, future_moment
from bot.community.classes import button_text, group_label
from bot.community.turn import Option, Picked, Turn, ask, free_text_problem, menu_option, repeat, show_menu
from bot.community.volunteers import volunteer_scope
from flows.community import IN_PERSON, AreaKind
from flows.text import parse_number
from flows.types import EventKind
from storage.classes import attended_people, counts, mark_attended, signed_up
from storage.clock import local_text
from storage.models import Area, CommunityClass, Person, SignupStatus
from storage.repo import create_person, log_events
from storage.roles import audit, scope

NEW, ADD, SAVE, CREATE, CANCEL, YES, SKIP, NO_MODULE = "new", "add", "save", "create", "cancel", "yes", "skip", "none"
CLASS_MODULE = "lop_hoc"  # the log's module for a class that follows no module
TOPIC_MAX, PLACE_MAX, NAME_MAX = 120, 160, 40
RECENT = dt.timedelta(days=7)  # classes that started this long ago still take attendance
SHOWN = 5
CHECKED = "✅ "


async def open_host(turn: Turn) -> None:
    areas = await volunteer_scope(turn)
    if areas is None:
        return
    found = list(
        await turn.session.scalars(
            select(CommunityClass)
            .where(
                CommunityClass.area_code.in_(areas),
                CommunityClass.cancelled_at.is_(None),
                CommunityClass.starts_at > turn.now - RECENT,
            )
            .order_by(CommunityClass.starts_at)
            .limit(SHOWN)
        )
    )
    seats = await counts(turn.session, [c.id for c in found])
    names = {a.code: a.name for a in await turn.session.scalars(select(Area).where(Area.code.in_(areas)))}
    shown = [
        {
            **class_values(c),
            "area": names.get(c.area_code, ""),
            "capacity": c.capacity,
            "seated": seats[c.id].seated,
            "waiting": seats[c.id].waiting,
            "attended": seats[c.id].attended,
        }
        for c in found
    ]
    options = [Option(NEW, turn.label("class.new"))]
    options += [Option(f"attend:{c.id}", f"{turn.label('class.attend')}: {button_text(c)}") for c in found]
    options += [
        Option(f"off:{c.id}", f"{turn.label('class.call_off')}: {button_text(c)}")
        for c in found
        if c.starts_at > turn.now
    ]
    ask(turn, "cls.home", turn.say("class_host_list", classes=shown), [*options, menu_option(turn)])


async def on_home(turn: Turn, answer: Picked) -> None:
    action, _, number = (answer.value or "").partition(":")
    if action == NEW:
        await _ask_area(turn)
        return
    klass = await _class_in_scope(turn, number)
    if klass is None or action not in ("attend", "off"):
        show_menu(turn, turn.say("class_host_gone") if action in ("attend", "off") else "")
        return
    if action == "attend":
        await _ask_attendance(turn, klass, [], [])
        return
    seats = await counts(turn.session, [klass.id])
    text = turn.say(
        "class_call_off_confirm", count=seats[klass.id].seated + seats[klass.id].waiting, **class_values(klass)
    )
    options = [Option(YES, turn.label("class.call_off_yes")), Option(CANCEL, turn.label("class.call_off_no"))]
    ask(turn, "cls.off", text, options, klass=klass.id)


# --- opening a class ---------------------------------------------------------------------------


async def _ask_area(turn: Turn) -> None:
    areas = await volunteer_scope(turn)
    if areas is None:
        return
    places = await areas_in(turn, areas)
    if len(places) == 1:
        _ask_text(turn, "cls.topic", "class_ask_topic", area=places[0].code)
        return
    options = [*[Option(a.code, a.name) for a in places][:30], menu_option(turn)]
    ask(turn, "cls.area", turn.say("class_ask_area"), options)


def _ask_text(turn: Turn, stage: str, key: str, **kept: Any) -> None:
    ask(turn, stage, turn.say(key), [menu_option(turn)], free_text=True, **kept)


async def on_area(turn: Turn, answer: Picked) -> None:
    if answer.value is None or answer.value == "menu" or answer.value not in await _scope(turn):
        show_menu(turn)
        return
    _ask_text(turn, "cls.topic", "class_ask_topic", area=answer.value)


async def on_topic(turn: Turn, answer: Picked) -> None:
    kept = dict(turn.state.dialog_data)
    if answer.text is None:
        show_menu(turn)
        return
    if _refused(turn, answer.text, TOPIC_MAX):
        return
    groups = turn.catalog.community.classes.groups
    options = [Option(g.id, g.label) for g in groups]
    ask(
        turn,
        "cls.group",
        turn.say("class_ask_group"),
        [*options, menu_option(turn)],
        area=kept["area"],
        topic=answer.text,
    )


async def on_group(turn: Turn, answer: Picked) -> None:
    if answer.value not in {g.id for g in turn.catalog.community.classes.groups}:
        show_menu(turn)
        return
    options = [Option(m.id, m.title) for m in turn.catalog.modules.values()]
    options += [Option(NO_MODULE, turn.label("class.no_module")), menu_option(turn)]
    ask(turn, "cls.module", turn.say("class_ask_module"), options, **_kept(turn), group=answer.value)


async def on_module(turn: Turn, answer: Picked) -> None:
    if answer.value != NO_MODULE and answer.value not in turn.catalog.modules:
        show_menu(turn)
        return
    _ask_text(
        turn, "cls.place", "class_ask_place", **_kept(turn), module=None if answer.value == NO_MODULE else answer.value
    )


async def on_place(turn: Turn, answer: Picked) -> None:
    if answer.text is None:
        show_menu(turn)
        return
    if _refused(turn, answer.text, PLACE_MAX):
        return
    _ask_text(turn, "cls.at", "class_ask_at", **_kept(turn), place=answer.text)


async def on_at(turn: Turn, answer: Picked) -> None:
    moment = future_moment(turn, answer.text)
    if moment is None:
        return
    _ask_text(turn, "cls.capacity", "class_ask_capacity", **_kept(turn), at=moment.astimezone(dt.UTC).isoformat())


async def on_capacity(turn: Turn, answer: Picked) -> None:
    most = turn.catalog.community.classes.max_capacity
    number = parse_number(answer.text or "")
    if number is None or not 1 <= number <= most:
        repeat(turn, "class_capacity_bad", max=most)
        return
    kept = {**_kept(turn), "capacity": number}
    area = await turn.session.get(Area, kept["area"])
    module = turn.catalog.modules.get(kept.get("module") or "")
    text = turn.say(
        "class_confirm",
        topic=kept["topic"],
        group=group_label(turn, kept["group"]),
        when=local_text(dt.datetime.fromisoformat(kept["at"])),
        place=kept["place"],
        area=area.name if area else "",
        capacity=number,
        module=module.title if module else "",
    )
    options = [Option(CREATE, turn.label("class.create")), Option(CANCEL, turn.label("class.cancel"))]
    ask(turn, "cls.confirm", text, options, **kept)


async def on_confirm(turn: Turn, answer: Picked) -> None:
    assert turn.person is not None
    kept = _kept(turn)
    if answer.value != CREATE or kept.get("area") not in await _scope(turn):
        show_menu(turn, turn.say("class_dropped"))
        return
    klass = CommunityClass(
        area_code=kept["area"],
        topic=kept["topic"],
        for_group=kept["group"],
        module=kept.get("module"),
        place=kept["place"],
        starts_at=dt.datetime.fromisoformat(kept["at"]),
        capacity=int(kept["capacity"]),
        created_by=turn.person.id,
        created_at=turn.now,
    )
    turn.session.add(klass)
    await turn.session.flush()
    await audit(turn.session, turn.person.id, "class_created", klass.area_code, now=turn.now, klass=klass.id)
    show_menu(turn, turn.say("class_created"))


# --- attendance --------------------------------------------------------------------------------


async def _ask_attendance(turn: Turn, klass: CommunityClass, chosen: list[int], added: list[str | None]) -> None:
    present = await attended_people(turn.session, klass.id)
    options = []
    for number, (signup, person) in enumerate(await signed_up(turn.session, klass.id), start=1):
        ticked = person.id in present or person.id in chosen
        name = person.display_name or turn.say("person_unnamed", number=number)
        state = turn.label(f"class.{SignupStatus(signup.status).value}")
        options.append(Option(f"p:{person.id}", f"{CHECKED if ticked else ''}{name} ({state})"))
    for number, name in enumerate(added, start=len(options) + 1):
        options.append(Option(f"n:{number}", f"{CHECKED}{name or turn.say('person_unnamed', number=number)}"))
    options += [Option(ADD, turn.label("class.add_person")), Option(SAVE, turn.label("class.save")), menu_option(turn)]
    text = turn.say("class_attend", **class_values(klass))
    ask(turn, "cls.attend", text, options, klass=klass.id, chosen=chosen, added=added)


async def on_attend(turn: Turn, answer: Picked) -> None:
    kept = turn.state.dialog_data
    klass = await _class_in_scope(turn, str(kept.get("klass", "")))
    chosen: list[int] = list(kept.get("chosen", []))
    added: list[str | None] = list(kept.get("added", []))
    if klass is None or answer.value in (None, "menu"):
        show_menu(turn)
        return
    if answer.value == ADD:
        options = [Option(SKIP, turn.label("dialog.skip")), menu_option(turn)]
        ask(turn, "cls.name", turn.say("class_attend_name"), options, True, klass=klass.id, chosen=chosen, added=added)
        return
    if answer.value == SAVE:
        await _save_attendance(turn, klass, chosen, added)
        return
    if answer.value.startswith("p:") and answer.value[2:].isdigit():
        person_id = int(answer.value[2:])
        chosen = [p for p in chosen if p != person_id] if person_id in chosen else [*chosen, person_id]
    await _ask_attendance(turn, klass, chosen, added)


async def on_name(turn: Turn, answer: Picked) -> None:
    kept = turn.state.dialog_data
    klass = await _class_in_scope(turn, str(kept.get("klass", "")))
    if klass is None or answer.value == "menu":
        show_menu(turn)
        return
    name = None
    if answer.text is not None:
        if _refused(turn, answer.text, NAME_MAX):
            return
        name = answer.text
    await _ask_attendance(turn, klass, list(kept.get("chosen", [])), [*kept.get("added", []), name])


async def _save_attendance(turn: Turn, klass: CommunityClass, chosen: list[int], added: list[str | None]) -> None:
    assert turn.person is not None
    listed = {person.id: person for _, person in await signed_up(turn.session, klass.id)}
    people = [listed[p] for p in chosen if p in listed]
    village = await turn.session.get(Area, klass.area_code)
    for name in added:  # present without the bot: created now, with the agreement the volunteer confirmed
        person = await create_person(turn.session, turn.now, name=name)
        if village is not None and village.kind == AreaKind.VILLAGE:
            person.area_code = village.code
        people.append(person)
    await turn.session.flush()
    if not people:
        repeat(turn, "class_attend_nobody")
        return
    fresh = set(await mark_attended(turn.session, klass.id, [p.id for p in people], turn.now))
    module = turn.catalog.modules.get(klass.module or "")
    rows = [_attended(turn, klass, person, module.version if module else 0) for person in people if person.id in fresh]
    await log_events(turn.session, rows)
    await audit(
        turn.session,
        turn.person.id,
        "class_attendance",
        klass.area_code,
        now=turn.now,
        klass=klass.id,
        people=sorted(fresh),
    )
    show_menu(turn, turn.say("class_attend_saved", count=len(fresh), topic=klass.topic))


def _attended(turn: Turn, klass: CommunityClass, person: Person, version: int) -> dict[str, Any]:
    assert turn.person is not None
    return {
        "person_id": person.id,
        "subject": person.subject,
        "area_code": person.area_code or klass.area_code,
        "module": klass.module or CLASS_MODULE,
        "module_version": version,
        "kind": EventKind.ATTENDED.value,
        "step": f"class-{klass.id}",
        "channel": IN_PERSON,
        "at": turn.inbound.at,
        "assisted_by": turn.person.id,
        "corrects_id": None,
    }


# --- calling a class off -----------------------------------------------------------------------


async def on_call_off(turn: Turn, answer: Picked) -> None:
    assert turn.person is not None
    klass = await _class_in_scope(turn, str(turn.state.dialog_data.get("klass", "")))
    if klass is None or answer.value != YES or klass.starts_at <= turn.now:
        show_menu(turn)
        return
    klass.cancelled_at = turn.now
    people = [p.id for s, p in await signed_up(turn.session, klass.id) if s.status != SignupStatus.WALK_IN]
    await notify(turn.session, turn.catalog, people, "class_called_off", klass, turn.now)
    await audit(turn.session, turn.person.id, "class_called_off", klass.area_code, now=turn.now, klass=klass.id)
    show_menu(turn, turn.say("class_called_off_done"))


# --- helpers -----------------------------------------------------------------------------------


async def _scope(turn: Turn) -> set[str]:
    assert turn.person is not None
    return await scope(turn.session, turn.person.id)


async def _class_in_scope(turn: Turn, number: str) -> CommunityClass | None:
    klass = await turn.session.get(CommunityClass, int(number)) if number.isdigit() else None
    if klass is None or klass.cancelled_at is not None or klass.area_code not in await _scope(turn):
        return None
    return klass


def _kept(turn: Turn) -> dict[str, Any]:
    """What the class form collected so far (the stage's own option lists left out)."""
    return {k: v for k, v in turn.state.dialog_data.items() if k not in ("options", "labels", "free")}


def _refused(turn: Turn, text: str, most: int) -> bool:
    """Say why typed text cannot be kept (a secret, too long) and ask again; False when it is fine."""
    problem = free_text_problem(turn, text, most)
    if problem is None:
        return False
    repeat(turn, "class_text_bad" if problem == "too_long" else problem, max=most)
    return True
