"""``/phattin``: a volunteer or an officer broadcasts to an area they cover; ``/phattin trangthai``;
``/kettai``: who is stuck in a module, to go and help in person.

Compose: area → who → (module) → text → when → preview with the exact count per channel → "Gửi".
The draft is written at the preview; "Gửi" confirms it once (a second tap changes nothing). The
job is scheduled after the transaction commits (``Turn.after_commit``).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy import select

from bot.broadcasts import scheduler as broadcast_scheduler
from bot.broadcasts import service
from bot.broadcasts.reminders import stalled
from bot.community.turn import Option, Picked, Turn, ask, free_text_problem, menu_option, repeat, show_menu
from bot.community.volunteers import volunteer_scope
from flows.broadcast_template import TemplateRefused, compile_template
from flows.community import AreaKind
from storage.audience import Audience
from storage.clock import LOCAL_TZ, local_text
from storage.models import Area, Broadcast, BroadcastStatus
from storage.roles import scope

ALL, NOT_COMPLETED, COMPLETED, NOT_GDS, NEW = service.WHO_CHOICES
NOW, MORNING, AT, YEARLY = "now", "morning", "at", "yearly"
SEND, REWRITE, CANCEL, PAUSE, RESUME, REFRESH = "send", "rewrite", "cancel", "pause", "resume", "refresh"
MORNING_HOUR = 8
STATUS_SHOWN = 3
STUCK_SHOWN = 15
_DAY_TIME = re.compile(r"^(\d{1,2})[/.-](\d{1,2})(?:[/.-](\d{4}))?\s+(\d{1,2})(?:[:h](\d{2}))?$")


# --- compose ---------------------------------------------------------------------------------


async def open_broadcast(turn: Turn) -> None:
    areas = await volunteer_scope(turn)
    if areas is None:
        return
    found = await areas_in(turn, areas)
    if len(found) == 1:
        _ask_who(turn, found[0].code)
        return
    options = [*[Option(a.code, a.name) for a in found][:30], menu_option(turn)]
    ask(turn, "bc.area", turn.say("broadcast_ask_area"), options)


async def on_area(turn: Turn, answer: Picked) -> None:
    if answer.value is None or answer.value == "menu" or answer.value not in await _scope(turn):
        show_menu(turn)
        return
    _ask_who(turn, answer.value)


def _ask_who(turn: Turn, area: str) -> None:
    options = [Option(key, turn.label(f"broadcast.who_{key}")) for key in (ALL, NOT_COMPLETED, COMPLETED, NOT_GDS, NEW)]
    ask(turn, "bc.who", turn.say("broadcast_ask_who"), [*options, menu_option(turn)], area=area)


async def on_who(turn: Turn, answer: Picked) -> None:
    area = turn.state.dialog_data.get("area")
    if answer.value in (NOT_COMPLETED, COMPLETED):
        options = [Option(m.id, m.title) for m in turn.catalog.modules.values()]
        ask(
            turn,
            "bc.module",
            turn.say("broadcast_ask_module"),
            [*options, menu_option(turn)],
            area=area,
            who=answer.value,
        )
        return
    if answer.value not in (ALL, NOT_GDS, NEW):
        show_menu(turn)
        return
    _ask_text(turn, _audience(turn, {"area": area, "who": answer.value}))


async def on_module(turn: Turn, answer: Picked) -> None:
    if answer.value not in turn.catalog.modules:
        show_menu(turn)
        return
    stage = turn.state.dialog_data
    _ask_text(turn, _audience(turn, {"area": stage.get("area"), "who": stage.get("who"), "module": answer.value}))


def _audience(turn: Turn, choice: dict[str, Any]) -> dict[str, Any]:
    """The audience a chat choice means, as stored in the dialog and the broadcast."""
    module = choice.get("module")
    return service.audience_for(str(choice["area"]), str(choice["who"]), module, turn.now).to_dict()


def _ask_text(
    turn: Turn, audience: dict[str, Any], key: str = "broadcast_ask_text", survey: str | None = None, **values: Any
) -> None:
    text = turn.say("broadcast_ask_text") if key == "broadcast_ask_text" else turn.say(key, **values)
    kept = {"survey": survey} if survey else {}
    ask(turn, "bc.text", text, [menu_option(turn)], free_text=True, audience=audience, **kept)


def ask_when(turn: Turn, audience: dict[str, Any], template: str, survey: str | None = None) -> None:
    """The "when" stage, for a text already checked (a broadcast's, or a survey's invitation)."""
    options = [Option(key, turn.label(f"broadcast.when_{key}")) for key in (NOW, MORNING, AT, YEARLY)]
    kept = {"survey": survey} if survey else {}
    ask(
        turn,
        "bc.when",
        turn.say("broadcast_ask_when"),
        [*options, menu_option(turn)],
        audience=audience,
        template=template,
        **kept,
    )


async def on_text(turn: Turn, answer: Picked) -> None:
    audience = turn.state.dialog_data.get("audience")
    if answer.text is None or not isinstance(audience, dict):
        show_menu(turn)
        return
    problem = free_text_problem(turn, answer.text, max_chars=2000)
    if problem:
        repeat(turn, problem, max=2000)
        return
    try:
        compile_template(answer.text)
    except TemplateRefused as refused:
        repeat(turn, refused.problem.key, detail=refused.problem.detail)
        return
    ask_when(turn, audience, answer.text, turn.state.dialog_data.get("survey"))


async def on_when(turn: Turn, answer: Picked) -> None:
    stage = turn.state.dialog_data
    if answer.value == NOW:
        await _preview(turn, None, None)
    elif answer.value == MORNING:
        local = turn.now.astimezone(LOCAL_TZ) + dt.timedelta(days=1)
        await _preview(turn, local.replace(hour=MORNING_HOUR, minute=0, second=0, microsecond=0), None)
    elif answer.value in (AT, YEARLY):
        key = "broadcast_ask_at" if answer.value == AT else "broadcast_ask_yearly"
        ask(
            turn,
            f"bc.{answer.value}",
            turn.say(key),
            [menu_option(turn)],
            free_text=True,
            audience=stage.get("audience"),
            template=stage.get("template"),
            survey=stage.get("survey"),
        )
    else:
        show_menu(turn)


def future_moment(turn: Turn, text: str | None) -> dt.datetime | None:
    """The local moment typed ("15/12 8:00"), if it is to come; else None, after asking again why."""
    moment = parse_moment(text or "", turn.now)
    if moment is None:
        repeat(turn, "broadcast_at_bad")
        return None
    if moment <= turn.now.astimezone(LOCAL_TZ):
        repeat(turn, "broadcast_at_past")
        return None
    return moment


async def on_at(turn: Turn, answer: Picked) -> None:
    moment = future_moment(turn, answer.text)
    if moment is not None:
        await _preview(turn, moment, None)


async def on_yearly(turn: Turn, answer: Picked) -> None:
    moment = parse_moment(answer.text or "", turn.now)
    quiet = turn.catalog.community.quiet_hours
    if moment is None:
        repeat(turn, "broadcast_at_bad")
        return
    if quiet.contains(moment.time()):
        repeat(turn, "broadcast_quiet_yearly", start=_hm(quiet.start), end=_hm(quiet.end))
        return
    await _preview(turn, None, f"{moment:%m-%d %H:%M}")


async def _preview(turn: Turn, local_at: dt.datetime | None, every_year: str | None) -> None:
    assert turn.person is not None
    stage = turn.state.dialog_data
    audience = Audience.from_dict(stage["audience"])
    template = str(stage["template"])
    notes = []
    if local_at is not None:
        quiet = turn.catalog.community.quiet_hours
        allowed = quiet.next_allowed(local_at)
        if allowed != local_at:
            notes.append(
                turn.say("broadcast_quiet_moved", start=_hm(quiet.start), end=_hm(quiet.end), at=local_text(allowed))
            )
            local_at = allowed
    seen = await service.preview(turn.session, turn.catalog, audience, template, turn.windows, turn.now)
    if seen.too_long:
        channel, count = next(iter(seen.too_long.items()))
        limit = service.TEXT_LIMITS.get(channel, service.DEFAULT_TEXT_LIMIT)
        _ask_text(
            turn,
            stage["audience"],
            "broadcast_too_long",
            stage.get("survey"),
            count=count,
            channel=_channel(turn, channel),
            limit=limit,
        )
        return
    if not seen.total:
        show_menu(turn, turn.say("broadcast_nobody"))
        return
    draft = await service.create_draft(
        turn.session,
        turn.person.id,
        audience,
        template,
        turn.now,
        send_at=local_at.astimezone(dt.UTC) if local_at else None,
        every_year=every_year,
        survey=stage.get("survey"),
    )
    notes += [
        turn.say("broadcast_out_of_window", count=count, channel=_channel(turn, channel))
        for channel, count in seen.out_of_window.items()
    ]
    text = turn.say(
        "broadcast_preview",
        sample=seen.sample,
        total=seen.total,
        channels=[{"name": _channel(turn, c), "count": n} for c, n in seen.by_channel.items()],
        when=_describe_when(turn, local_at, every_year),
        notes=notes,
    )
    options = [
        Option(SEND, turn.label("broadcast.send")),
        Option(REWRITE, turn.label("broadcast.rewrite")),
        Option(CANCEL, turn.label("broadcast.cancel")),
    ]
    kept = {"survey": stage["survey"]} if stage.get("survey") else {}
    ask(turn, "bc.confirm", text, options, broadcast=draft.id, audience=stage["audience"], **kept)


async def on_confirm(turn: Turn, answer: Picked) -> None:
    stage = turn.state.dialog_data
    broadcast_id = stage.get("broadcast")
    broadcast = await _own(turn, broadcast_id)
    if broadcast is None:
        show_menu(turn)
        return
    if answer.value == REWRITE and broadcast.status == BroadcastStatus.DRAFT:
        await turn.session.delete(broadcast)
        _ask_text(turn, stage.get("audience") or {}, survey=stage.get("survey"))
        return
    if answer.value != SEND:
        if broadcast.status == BroadcastStatus.DRAFT:
            await turn.session.delete(broadcast)
        show_menu(turn, turn.say("broadcast_dropped"))
        return
    if not await service.confirm(turn.session, broadcast.id, turn.now):
        show_menu(turn, turn.say("broadcast_already"))
        return
    turn.after_commit.append(lambda: _schedule(broadcast.id))
    later = broadcast.every_year or (broadcast.send_at and broadcast.send_at > turn.now)
    local_at = broadcast.send_at.astimezone(LOCAL_TZ) if broadcast.send_at else None
    when = _describe_when(turn, local_at, broadcast.every_year) if later else turn.say("broadcast_when_sending")
    show_menu(turn, turn.say("broadcast_confirmed", when=when))


async def _schedule(broadcast_id: int) -> None:
    running = broadcast_scheduler.current()
    if running is not None:  # else the leader's next tick schedules it
        await running.schedule(broadcast_id)


# --- status, stop, resume ---------------------------------------------------------------------


async def open_status(turn: Turn) -> None:
    assert turn.person is not None
    if await volunteer_scope(turn) is None:
        return
    mine = list(
        await turn.session.scalars(
            select(Broadcast)
            .where(Broadcast.author_id == turn.person.id, Broadcast.status != BroadcastStatus.DRAFT)
            .order_by(Broadcast.id.desc())
            .limit(STATUS_SHOWN)
        )
    )
    if not mine:
        show_menu(turn, turn.say("broadcast_status_none"))
        return
    shown = []
    for broadcast in mine:
        counted = await service.stats(turn.session, broadcast.id)
        assert counted is not None
        shown.append(
            {
                "number": broadcast.id,
                "start": broadcast.template[:40],
                "state": turn.label(f"broadcast.state_{_state(broadcast)}"),
                "recipients": counted.recipients,
                "counts": [
                    {"name": turn.label(f"outbox.{status}"), "count": count}
                    for status, count in sorted(counted.by_status.items())
                ],
                "failures": [{"reason": reason[:80], "count": count} for reason, count in counted.failures[:2]],
            }
        )
    latest = mine[0]
    options = [Option(REFRESH, turn.label("broadcast.refresh"))]
    if latest.status in (BroadcastStatus.SCHEDULED, BroadcastStatus.DONE):
        key = RESUME if latest.paused else PAUSE
        options.append(Option(key, turn.label(f"broadcast.{key}")))
    if latest.status == BroadcastStatus.SCHEDULED:
        options.append(Option(CANCEL, turn.label("broadcast.cancel")))
    ask(
        turn,
        "bc.status",
        turn.say("broadcast_status", broadcasts=shown),
        [*options, menu_option(turn)],
        broadcast=latest.id,
    )


async def on_status(turn: Turn, answer: Picked) -> None:
    assert turn.person is not None
    broadcast = await _own(turn, turn.state.dialog_data.get("broadcast"))
    if broadcast is None or answer.value not in (REFRESH, PAUSE, RESUME, CANCEL):
        show_menu(turn)
        return
    if answer.value in (PAUSE, RESUME):
        await service.set_paused(turn.session, broadcast.id, answer.value == PAUSE, turn.person.id, turn.now)
        if answer.value == RESUME:
            turn.after_commit.append(_wake_sender)
    elif answer.value == CANCEL:
        await service.cancel(turn.session, broadcast.id, turn.person.id, turn.now)
        turn.after_commit.append(lambda: _schedule(broadcast.id))  # removes its job
    await open_status(turn)


async def _wake_sender() -> None:
    running = broadcast_scheduler.current()
    if running is not None:
        running.wake_sender()


def _state(broadcast: Broadcast) -> str:
    if broadcast.status == BroadcastStatus.CANCELLED:
        return "cancelled"
    if broadcast.paused:
        return "paused"
    return "yearly" if broadcast.every_year else str(broadcast.status)


# --- /kettai ----------------------------------------------------------------------------------


async def open_stuck(turn: Turn) -> None:
    areas = await volunteer_scope(turn)
    if areas is None:
        return
    delays = turn.catalog.community.reminders.after_days
    days = delays[0] if delays else 1
    found = await stalled(turn.session, turn.catalog, turn.now, dt.timedelta(days=days), areas=areas)
    if not found:
        show_menu(turn, turn.say("stuck_none", days=_days(days)))
        return
    villages = {a.code: a.name for a in await turn.session.scalars(select(Area).where(Area.code.in_(areas)))}
    people = []
    for number, person in enumerate(found[:STUCK_SHOWN], start=1):
        module = turn.catalog.modules[person.module]
        steps = [s.id for s in module.steps]
        people.append(
            {
                "name": person.name or turn.say("person_unnamed", number=number),
                "village": villages.get(person.area_code or "", ""),
                "module": module.title,
                "step": steps.index(person.step) + 1 if person.step in steps else "?",
                "steps": len(steps),
                "days": (turn.now - person.silent_since).days,
            }
        )
    show_menu(turn, turn.say("stuck_list", people=people, more=max(0, len(found) - STUCK_SHOWN)))


# --- helpers ----------------------------------------------------------------------------------


async def _scope(turn: Turn) -> set[str]:
    assert turn.person is not None
    return await scope(turn.session, turn.person.id)


async def areas_in(turn: Turn, codes: set[str]) -> list[Area]:
    """The communes and villages among ``codes``: communes first, then by name (for an area question)."""
    found = await turn.session.scalars(
        select(Area).where(Area.code.in_(codes), Area.kind.in_([AreaKind.COMMUNE, AreaKind.VILLAGE]))
    )
    return sorted(found, key=lambda a: (a.kind != AreaKind.COMMUNE, a.name))


async def _own(turn: Turn, broadcast_id: object) -> Broadcast | None:
    """The broadcast, if this person wrote it."""
    assert turn.person is not None
    broadcast = await turn.session.get(Broadcast, broadcast_id) if isinstance(broadcast_id, int) else None
    return broadcast if broadcast is not None and broadcast.author_id == turn.person.id else None


def parse_moment(text: str, now: dt.datetime) -> dt.datetime | None:
    """ "15/12 8:00", "15/12/2026 8h30" -> a local time (the next such date when no year is given)."""
    match = _DAY_TIME.match(text.strip().lower())
    if not match:
        return None
    day, month, year, hour, minute = match.groups()
    local_now = now.astimezone(LOCAL_TZ)
    try:
        moment = dt.datetime(
            int(year or local_now.year), int(month), int(day), int(hour), int(minute or 0), tzinfo=LOCAL_TZ
        )
    except ValueError:
        return None
    if year is None and moment < local_now:  # "15/1" typed in December: next January
        try:
            return moment.replace(year=moment.year + 1)
        except ValueError:
            return None
    return moment


def _hm(moment: dt.time) -> str:
    return f"{moment.hour}:{moment.minute:02d}"


def _describe_when(turn: Turn, local_at: dt.datetime | None, every_year: str | None) -> str:
    if every_year:
        month_day, hour_minute = every_year.split()
        month, day = month_day.split("-")
        return turn.say("broadcast_when_yearly", day=f"{int(day)}/{int(month)}", time=hour_minute.lstrip("0"))
    if local_at is not None:
        return turn.say("broadcast_when_at", at=local_text(local_at))
    return turn.say("broadcast_when_now")


def _days(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _channel(turn: Turn, channel: str) -> str:
    key = f"channel.{channel}"
    return turn.label(key) if key in turn.catalog.messages.labels else channel
