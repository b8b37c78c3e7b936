"""``/lienket``: one person on Zalo and Telegram. A code asked for on one channel, typed on the other
(``/ma CODE``), makes the two accounts one person: progress and household together."""

from __future__ import annotations

from dataclasses import replace

from bot.community.turn import Turn, end, show_menu
from flows.engine import screen
from flows.types import ConversationState, Mode
from storage.links import LINK_CODE_MINUTES, LinkStatus, create_link_code, redeem_link_code


async def open_link(turn: Turn) -> None:
    assert turn.person is not None
    code = await create_link_code(turn.session, turn.person.id, turn.now)
    show_menu(turn, turn.say("link_code", code=code, minutes=LINK_CODE_MINUTES))


async def use_link_code(turn: Turn, text: str) -> bool:
    """True if ``text`` was a link code (used or refused here); False to try the other kinds of codes."""
    assert turn.person is not None
    linked = await redeem_link_code(turn.session, text, turn.person, turn.now)
    if linked.status is LinkStatus.UNKNOWN:
        return False
    if linked.kept is None:  # LinkStatus.OWN
        show_menu(turn, turn.say("link_own_code"))
        return True
    # This account's person is gone (merged): the dispatcher forgets it; the kept person's menu is shown.
    owner = await turn.state_of(linked.kept.id)
    kept = ConversationState.from_dict(owner.state if owner else None)
    menu_state = replace(kept, dialog="", dialog_data={}, mode=Mode.MENU, offer=(), scam_check=False)
    if owner is not None:
        owner.state = menu_state.to_dict()
    menu = screen(turn.catalog, menu_state)
    end(turn)
    turn.deleted = True
    turn.person = None
    turn.replies.append(replace(menu, text=f"{turn.say('link_done')}\n\n{menu.text}"))
    return True
