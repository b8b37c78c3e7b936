"""``/xoa``: a person deletes their data; only anonymous counts stay."""

from __future__ import annotations

from bot.community.turn import Option, Picked, Turn, ask, end, show_menu
from flows.types import Reply
from storage.repo import delete_person

YES, NO = "yes", "no"


async def open_delete(turn: Turn) -> None:
    options = [Option(YES, turn.label("delete.yes")), Option(NO, turn.label("delete.no"))]
    ask(turn, "delete.confirm", turn.say("delete_confirm"), options)


async def on_confirm(turn: Turn, answer: Picked) -> None:
    if answer.value != YES or turn.person is None:
        show_menu(turn, turn.say("delete_kept"))
        return
    await delete_person(turn.session, turn.person)
    end(turn)
    turn.deleted = True
    turn.person = None
    turn.replies.append(Reply(text=turn.say("delete_done")))
