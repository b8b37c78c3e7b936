"""Volunteers' and officers' tools in chat: their commands, ``/cuatoi``, ``/moi`` (invite codes) and
``/dangnhap`` (a login link to the dashboard)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from bot.community.turn import Option, Picked, Turn, ask, menu_option, show_menu
from bot.dashboard.links import issue_login_link
from flows.community import AreaKind
from storage.clock import LOCAL_TZ
from storage.codes import new_code
from storage.metrics import area_metrics, mentees
from storage.models import Area, Person, Role
from storage.roles import create_invite, scope

MENTOR_CODE_LENGTH = 7  # household codes have 8, invite codes 10: a code's length says what it is


async def tools(turn: Turn) -> str:
    """The commands this person's roles allow, as one short text."""
    assert turn.person is not None
    officer = bool(await scope(turn.session, turn.person.id, Role.OFFICER))
    return turn.say("role_tools", officer=officer)


async def volunteer_scope(turn: Turn) -> set[str] | None:
    """The areas the person may act on as a volunteer (officers included); None after telling them no."""
    assert turn.person is not None
    areas = await scope(turn.session, turn.person.id)
    if not areas:
        show_menu(turn, turn.say("role_required"))
        return None
    return areas


async def open_mine(turn: Turn) -> None:
    """``/cuatoi``: the volunteer's mentor code, mentees and their villages' progress."""
    areas = await volunteer_scope(turn)
    if areas is None:
        return
    assert turn.person is not None
    if turn.person.mentor_code is None:
        turn.person.mentor_code = await _free_mentor_code(turn)
    people = await mentees(turn.session, turn.person.id)
    villages = await turn.session.scalars(
        select(Area.code).where(Area.code.in_(areas), Area.kind == AreaKind.VILLAGE).order_by(Area.name)
    )
    metrics = await area_metrics(
        turn.session, turn.catalog.community, list(villages), year=turn.now.astimezone(LOCAL_TZ).year
    )
    shown = [m for m in metrics if m.kind == AreaKind.VILLAGE][:10]
    summary = turn.say(
        "mine_summary",
        code=turn.person.mentor_code,
        goal=turn.catalog.community.mentor_goal,
        mentees=[
            {"name": m.display_name or turn.say("person_unnamed", number=i), "done": len(m.modules)}
            for i, m in enumerate(people, start=1)
        ],
        areas=[
            {"name": m.name, "reached": m.people_reached, "done": m.households_gia_dinh_so, "official": m.households}
            for m in shown
        ],
    )
    show_menu(turn, summary)


async def open_invite(turn: Turn) -> None:
    """``/moi``: an officer creates a single-use invite code for a volunteer or an officer."""
    assert turn.person is not None
    if not await scope(turn.session, turn.person.id, Role.OFFICER):
        show_menu(turn, turn.say("officer_required"))
        return
    options = [
        Option(Role.VOLUNTEER, turn.label("invite.volunteer")),
        Option(Role.OFFICER, turn.label("invite.officer")),
        menu_option(turn),
    ]
    ask(turn, "invite.role", turn.say("invite_ask_role"), options)


async def on_invite_role(turn: Turn, answer: Picked) -> None:
    assert turn.person is not None
    if answer.value not in (Role.VOLUNTEER, Role.OFFICER):
        show_menu(turn)
        return
    areas = await scope(turn.session, turn.person.id, Role.OFFICER)
    kinds = (AreaKind.VILLAGE, AreaKind.COMMUNE) if answer.value == Role.VOLUNTEER else (AreaKind.COMMUNE,)
    found = await turn.session.scalars(
        select(Area).where(Area.code.in_(areas), Area.kind.in_(kinds)).order_by(Area.kind, Area.name)
    )
    options = [*[Option(a.code, a.name) for a in found][:30], menu_option(turn)]
    ask(turn, "invite.area", turn.say("invite_ask_area"), options, role=answer.value)


async def on_invite_area(turn: Turn, answer: Picked) -> None:
    assert turn.person is not None
    role = turn.state.dialog_data.get("role")
    area = await turn.session.get(Area, answer.value) if answer.value and answer.value != "menu" else None
    allowed = await scope(turn.session, turn.person.id, Role.OFFICER)
    if area is None or area.code not in allowed or role not in (Role.VOLUNTEER, Role.OFFICER):
        show_menu(turn)
        return
    hours = turn.catalog.community.invite_valid_hours
    code = await create_invite(turn.session, Role(role), area.code, turn.person.id, turn.now, hours)
    expires = (turn.now + dt.timedelta(hours=hours)).astimezone(LOCAL_TZ)
    text = turn.say(
        "invite_created",
        role=turn.label(f"role.{role}"),
        area=area.name,
        code=code,
        expires=expires.strftime("%H:%M %d/%m/%Y"),
    )
    show_menu(turn, text)


async def open_login(turn: Turn) -> None:
    """``/dangnhap``: an officer gets a one-time link to the dashboard."""
    assert turn.person is not None
    issued = await issue_login_link(turn.session, turn.person.id, turn.base_url, turn.now, turn.person.id)
    if issued is None:
        show_menu(turn, turn.say("login_officer_only"))
        return
    url, expires = issued
    show_menu(turn, turn.say("login_link", url=url, expires=expires.astimezone(LOCAL_TZ).strftime("%H:%M %d/%m/%Y")))


async def _free_mentor_code(turn: Turn) -> str:
    while True:
        code = new_code(MENTOR_CODE_LENGTH)
        if await turn.session.scalar(select(Person.id).where(Person.mentor_code == code)) is None:
            return code
