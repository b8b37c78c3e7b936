"""A resident and community classes: "Lớp học sắp tới" in the menu (or ``/lophoc``, "lop hoc o dau").

The list shows the upcoming classes of the resident's village and commune with their time, place,
whom they are for and the resident's own place; each class has one button, to sign up or to cancel:
two taps from the menu. A seat given back goes to the first person waiting, who is told at once.
"""

from __future__ import annotations

from bot.broadcasts.class_notices import class_values, notify
from bot.community.turn import Option, Picked, Turn, ask, joined, menu_option, show_menu
from flows.community import ClassGroup
from storage.classes import Place, cancel, counts, place_of, sign_up, upcoming, visible_from
from storage.clock import LOCAL_TZ
from storage.models import Area, CommunityClass, SignupStatus

JOIN, LEAVE = "join", "leave"
TOPIC_SHOWN = 28  # in a button label


async def open_classes(turn: Turn, preface: str = "") -> None:
    assert turn.person is not None
    if turn.person.area_code is None:
        from bot.community.villages import open_villages

        await open_villages(turn, then="classes", preface=turn.say("classes_need_village"))
        return
    village = await turn.session.get(Area, turn.person.area_code)
    name = village.name if village else ""
    found = await upcoming(turn.session, await visible_from(turn.session, turn.person.area_code), turn.now)
    if not found:
        show_menu(turn, joined(preface, turn.say("classes_none", village=name)))
        return
    seats = await counts(turn.session, [c.id for c in found])
    shown, options = [], []
    for klass in found:
        place = await place_of(turn.session, klass.id, turn.person.id)
        shown.append(
            {
                **class_values(klass),
                "group": group_label(turn, klass.for_group),
                "mine": place.status.value if place else "",
                "position": place.position if place else 0,
                "left": max(0, klass.capacity - seats[klass.id].seated),
            }
        )
        action, key = (LEAVE, "class.leave") if place else (JOIN, "class.join")
        options.append(Option(f"{action}:{klass.id}", f"{turn.label(key)}: {button_text(klass)}"))
    text = joined(preface, turn.say("classes_list", village=name, classes=shown))
    ask(turn, "classes.list", text, [*options, menu_option(turn)])


async def on_list(turn: Turn, answer: Picked) -> None:
    assert turn.person is not None
    action, _, number = (answer.value or "").partition(":")
    klass = await _open_class(turn, number)
    if action not in (JOIN, LEAVE):
        show_menu(turn)
        return
    if klass is None:
        await open_classes(turn, turn.say("class_gone"))
        return
    values = class_values(klass)
    if action == JOIN:
        place = await sign_up(turn.session, klass, turn.person.id, turn.now)
        show_menu(turn, _placed(turn, place, values))
        return
    had, seated = await cancel(turn.session, klass, turn.person.id, turn.now)
    if seated:
        await notify(turn.session, turn.catalog, seated, "class_promoted", klass, turn.now)
    show_menu(turn, turn.say("class_cancelled_by_you", **values) if had else "")


def _placed(turn: Turn, place: Place, values: dict[str, object]) -> str:
    if place.status is SignupStatus.SEATED:
        return turn.say("class_joined", **values)
    return turn.say("class_waiting", position=place.position, **values)


async def _open_class(turn: Turn, number: str) -> CommunityClass | None:
    """The class, if it still takes sign-ups and the resident's village sees it."""
    assert turn.person is not None
    klass = await turn.session.get(CommunityClass, int(number)) if number.isdigit() else None
    if klass is None or klass.cancelled_at is not None or klass.starts_at <= turn.now:
        return None
    visible = await visible_from(turn.session, turn.person.area_code or "")
    return klass if klass.area_code in visible else None


def group_label(turn: Turn, group_id: str) -> str:
    groups: list[ClassGroup] = turn.catalog.community.classes.groups
    return next((g.label for g in groups if g.id == group_id), group_id)


def button_text(klass: CommunityClass) -> str:
    """ "Cài VNeID, 19:30 15/11": a class in a button."""
    local = klass.starts_at.astimezone(LOCAL_TZ)
    topic = klass.topic if len(klass.topic) <= TOPIC_SHOWN else f"{klass.topic[: TOPIC_SHOWN - 1]}…"
    return f"{topic}, {local.hour}:{local.minute:02d} {local.day}/{local.month}"
