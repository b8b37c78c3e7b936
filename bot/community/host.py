"""The host's side of a conversation: its own stages and actions, next to the engine's modules.

The dispatcher asks :func:`take` first; when it returns False the engine
handles the inbound, and if the engine hands an action over
(``Outcome.handoff``) the dispatcher calls :func:`start`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from bot.community import (
    broadcasting,
    class_hosting,
    classes,
    codes,
    households,
    links,
    privacy,
    surveys,
    villages,
    visits,
    volunteers,
)
from bot.community.turn import OPTION_PREFIX, Picked, Turn, end, read_answer, repeat
from flows.catalog import HOST_ACTION_KEYS, MODULE_BUTTON_PREFIX
from flows.router import RouteKind
from flows.surveys import SURVEY_BUTTON_PREFIX
from flows.text import clean, fold
from flows.types import InboundKind

Stage = Callable[[Turn, Picked], Awaitable[None]]

STAGES: dict[str, Stage] = {
    "village.commune": villages.on_commune,
    "village.pick": villages.on_village,
    "household.home": households.on_home,
    "household.label": households.on_label,
    "household.code": households.on_code,
    "household.move": households.on_move,
    "household.leave": households.on_leave,
    "code.enter": codes.on_code,
    "delete.confirm": privacy.on_confirm,
    "invite.role": volunteers.on_invite_role,
    "invite.area": volunteers.on_invite_area,
    "visit.village": visits.on_village,
    "visit.household": visits.on_household,
    "visit.label": visits.on_label,
    "visit.member": visits.on_member,
    "visit.name": visits.on_name,
    "visit.items": visits.on_items,
    "visit.confirm": visits.on_confirm,
    "visit.after": visits.on_after,
    "bc.area": broadcasting.on_area,
    "bc.who": broadcasting.on_who,
    "bc.module": broadcasting.on_module,
    "bc.text": broadcasting.on_text,
    "bc.when": broadcasting.on_when,
    "bc.at": broadcasting.on_at,
    "bc.yearly": broadcasting.on_yearly,
    "bc.confirm": broadcasting.on_confirm,
    "bc.status": broadcasting.on_status,
    "classes.list": classes.on_list,
    "cls.home": class_hosting.on_home,
    "cls.area": class_hosting.on_area,
    "cls.topic": class_hosting.on_topic,
    "cls.group": class_hosting.on_group,
    "cls.module": class_hosting.on_module,
    "cls.place": class_hosting.on_place,
    "cls.at": class_hosting.on_at,
    "cls.capacity": class_hosting.on_capacity,
    "cls.confirm": class_hosting.on_confirm,
    "cls.attend": class_hosting.on_attend,
    "cls.name": class_hosting.on_name,
    "cls.off": class_hosting.on_call_off,
    "sv.pick": surveys.on_pick,
    "sv.question": surveys.on_question,
    "svs.pick": surveys.on_send_pick,
    "svs.area": surveys.on_send_area,
}

# Commands that take an argument on the same line: "/ma ABCD1234", "/phattin trangthai".
_CODE_COMMAND = re.compile(r"^/ma(?:@\w+)?\s+(\S.*)$", re.IGNORECASE)
_STATUS_COMMAND = re.compile(r"^/phattin(?:@\w+)?\s+trang\s?thai$", re.IGNORECASE)


async def take(turn: Turn) -> bool:
    """Handle the inbound if it belongs to the host; False leaves it to the engine."""
    inbound = turn.inbound
    if inbound.kind is InboundKind.TEXT:
        code = _CODE_COMMAND.match(clean(inbound.text))
        if code:
            end(turn)
            await codes.open_codes(turn, code.group(1))
            return True
        if inbound.text.lstrip()[:8].lower() == "/phattin" and _STATUS_COMMAND.match(fold(inbound.text)):
            end(turn)
            await broadcasting.open_status(turn)
            return True
    if inbound.kind is InboundKind.BUTTON and inbound.button_id.startswith(SURVEY_BUTTON_PREFIX):
        end(turn)  # a survey's invitation, tapped whenever
        await surveys.start_survey(turn, inbound.button_id.removeprefix(SURVEY_BUTTON_PREFIX))
        return True
    if not turn.state.dialog:
        return False
    handler = STAGES.get(turn.state.dialog)
    if handler is None:  # a stage from an older version: start afresh
        end(turn)
        return False
    if _leaves(turn):
        end(turn)
        return False
    answer = read_answer(turn)
    if answer.value is None and answer.text is None:
        if _asks_elsewhere(turn):  # "cai vneid ntn" at the village question: answer the question
            end(turn)
            return False
        repeat(turn)
        return True
    await handler(turn, answer)
    return True


async def _change_village(turn: Turn) -> None:
    await villages.open_villages(turn, then="menu")


# What each action the engine hands over opens (a menu button, or a command such as /xoa).
ACTIONS: dict[str, Callable[[Turn], Awaitable[None]]] = {
    "household": households.open_household,
    "village": _change_village,
    "enter_code": codes.open_codes,
    "delete_data": privacy.open_delete,
    "visit": visits.open_visit,
    "mine": volunteers.open_mine,
    "invite": volunteers.open_invite,
    "login": volunteers.open_login,
    "broadcast": broadcasting.open_broadcast,
    "broadcast_status": broadcasting.open_status,
    "stuck_list": broadcasting.open_stuck,
    "classes": classes.open_classes,
    "class_host": class_hosting.open_host,
    "survey": surveys.open_survey,
    "survey_send": surveys.open_send,
    "link_accounts": links.open_link,
}


async def start(turn: Turn, action: str) -> None:
    """Carry out an action the engine handed over."""
    end(turn)
    opener = ACTIONS.get(action)
    if opener is None:
        raise ValueError(f"unknown host action {action!r}")
    await opener(turn)


def _asks_elsewhere(turn: Turn) -> bool:
    """True when text that fits none of the stage's options clearly asks for a module or a command."""
    if turn.inbound.kind is not InboundKind.TEXT:
        return False
    return turn.catalog.router.route(clean(turn.inbound.text)).kind is RouteKind.GO


def _leaves(turn: Turn) -> bool:
    """True when the person left the host's conversation: an engine button, or a command typed."""
    inbound = turn.inbound
    if inbound.kind is InboundKind.BUTTON:
        return not inbound.button_id.startswith(OPTION_PREFIX) and (
            inbound.button_id in HOST_ACTION_KEYS
            or inbound.button_id.startswith(MODULE_BUTTON_PREFIX)
            or inbound.button_id in turn.catalog.messages.actions
        )
    if inbound.kind is not InboundKind.TEXT:
        return inbound.kind is InboundKind.START
    return turn.catalog.router.command(clean(inbound.text)) is not None
