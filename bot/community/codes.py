"""``/ma CODE``: one command for every code a person may receive (invite, household, mentor)."""

from __future__ import annotations

from sqlalchemy import select

from bot.community.links import use_link_code
from bot.community.turn import Picked, Turn, ask, menu_option, repeat, show_menu
from storage.codes import normalise_code
from storage.households import household_by_code
from storage.models import Area, Person
from storage.roles import redeem_invite


async def open_codes(turn: Turn, argument: str = "") -> None:
    if argument:
        await _use(turn, argument, in_stage=False)
        return
    ask(turn, "code.enter", turn.say("code_ask"), [menu_option(turn)], free_text=True)


async def on_code(turn: Turn, answer: Picked) -> None:
    if answer.text is None:
        show_menu(turn)
        return
    await _use(turn, answer.text, in_stage=True)


async def _use(turn: Turn, text: str, in_stage: bool) -> None:
    assert turn.person is not None
    if await use_link_code(turn, text):
        return
    redeemed = await redeem_invite(turn.session, text, turn.person.id, turn.now)
    if redeemed.grant is not None:
        from bot.community.volunteers import tools

        area = await turn.session.get(Area, redeemed.grant.area_code)
        role = turn.label(f"role.{redeemed.grant.role}")
        granted = turn.say("code_role_granted", role=role, area=area.name if area else redeemed.grant.area_code)
        show_menu(turn, f"{granted}\n{await tools(turn)}")
        return
    household = await household_by_code(turn.session, text)
    if household is not None:
        from bot.community.households import join

        await join(turn, household)
        return
    code = normalise_code(text)
    mentor = await turn.session.scalar(select(Person).where(Person.mentor_code == code)) if code else None
    if mentor is not None:
        if mentor.id == turn.person.id:
            show_menu(turn, turn.say("mentor_own_code"))
            return
        turn.person.mentor_id = mentor.id
        show_menu(turn, turn.say("mentor_linked"))
        return
    if in_stage:
        repeat(turn, "code_unknown")
    else:
        show_menu(turn, turn.say("code_unknown"))
