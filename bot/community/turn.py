"""One inbound in the host's hands, and the small dialog toolkit the host's conversations share.

A host conversation (household, field visit...) is a sequence of stages. Each
stage shows a text and numbered options; the options' values and labels are
kept in ``state.dialog_data`` so that a tapped button (``x:2``), a typed
number ("2") or a typed label ("tao ho moi") all pick the same option. A stage
may also take free text (a household's label, a code).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from flows.catalog import Catalog
from flows.engine import screen
from flows.safety import find_secrets
from flows.text import MAX_INPUT_CHARS, best_match, clean, exact_match, parse_number
from flows.types import Button, ConversationState, Inbound, InboundKind, Mode, Reply
from storage.models import Person
from storage.repo import StoredState, lock_states

OPTION_PREFIX = "x:"
DEFAULT_BASE_URL = "http://127.0.0.1:8080"  # Settings' default host and port


@dataclass(frozen=True)
class Option:
    value: str
    label: str


@dataclass
class Turn:
    """The session, who wrote, their state, and what goes back (replies, log rows)."""

    session: AsyncSession
    catalog: Catalog
    channel: str
    sender_id: str
    person: Person | None
    state: ConversationState
    inbound: Inbound
    now: dt.datetime
    replies: list[Reply] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    deleted: bool = False  # the person deleted their data during this turn
    # Run once this turn's transaction is committed (e.g. scheduling a confirmed broadcast); lost on a crash
    # in between, so whatever they do must also be redone by a periodic check.
    after_commit: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    base_url: str = DEFAULT_BASE_URL  # where the bot's web pages are reached (for login links)
    windows: Mapping[str, dt.timedelta] = field(default_factory=dict)  # Settings.sending_windows
    # The engine states this transaction read and will write (bot.dispatcher), by person id.
    states: dict[int, StoredState] = field(default_factory=dict)

    async def state_of(self, person_id: int) -> StoredState | None:
        """Another person's stored state, to change in this transaction; None if they have none.

        It is the one the dispatcher writes at commit, so two turns of one transaction see each other's change.
        """
        if person_id not in self.states:
            self.states.update(await lock_states(self.session, [person_id]))
        return self.states.get(person_id)

    def say(self, key: str, **values: Any) -> str:
        return self.catalog.say(key, **values)

    def label(self, key: str) -> str:
        return self.catalog.label(key)


@dataclass(frozen=True)
class Picked:
    """What the person answered to a stage: an option's value, free text, or neither."""

    value: str | None = None
    text: str | None = None


def ask(turn: Turn, stage: str, text: str, options: list[Option], free_text: bool = False, **data: Any) -> None:
    """Show a stage: ``text`` with numbered options; remember them for the answer."""
    turn.state = replace(
        turn.state,
        dialog=stage,
        dialog_data={
            **data,
            "options": [o.value for o in options],
            "labels": [o.label for o in options],
            "free": free_text,
        },
    )
    buttons = tuple(Button(f"{OPTION_PREFIX}{i}", o.label) for i, o in enumerate(options, start=1))
    turn.replies.append(Reply(text=text, buttons=buttons))


def data(turn: Turn) -> dict[str, Any]:
    return turn.state.dialog_data


def read_answer(turn: Turn) -> Picked:
    """Match the inbound against the current stage's options (button, number, label) or take free text."""
    stage = data(turn)
    values: list[str] = stage.get("options", [])
    labels: list[str] = stage.get("labels", [])
    inbound = turn.inbound
    if inbound.kind is InboundKind.BUTTON:
        index = _option_index(inbound.button_id)
        return Picked(values[index - 1]) if index and index <= len(values) else Picked()
    if inbound.kind is not InboundKind.TEXT:
        return Picked()
    text = clean(inbound.text)
    number = parse_number(text)
    if number is not None and 1 <= number <= len(values):
        return Picked(values[number - 1])
    phrases = {str(i): (label,) for i, label in enumerate(labels)}
    found = exact_match(text, phrases) or (None if stage.get("free") else best_match(text, phrases))
    if found is not None:
        return Picked(values[int(found)])
    return Picked(text=text) if stage.get("free") and text else Picked()


def free_text_problem(turn: Turn, text: str, max_chars: int = MAX_INPUT_CHARS) -> str | None:
    """The text key to answer with if typed text must not be kept (a secret, too long), else None."""
    if find_secrets(text):
        return "secret_warning"
    if len(text) > max_chars:
        return "too_long"
    return None


def repeat(turn: Turn, key: str = "choose_listed", **values: Any) -> None:
    """Say what went wrong and show the same stage again."""
    stage = data(turn)
    options = [Option(v, label) for v, label in zip(stage.get("options", []), stage.get("labels", []), strict=True)]
    extra = {k: v for k, v in stage.items() if k not in ("options", "labels", "free")}
    ask(turn, turn.state.dialog, turn.say(key, **values), options, bool(stage.get("free")), **extra)


def end(turn: Turn) -> None:
    """Leave the host conversation; the engine has the person again."""
    turn.state = replace(turn.state, dialog="", dialog_data={})


def show_menu(turn: Turn, preface: str = "") -> None:
    """End the conversation and show the engine's menu (with "Tiếp tục" if a module is in progress)."""
    end(turn)
    turn.state = replace(turn.state, mode=Mode.MENU, offer=(), scam_check=False)
    menu = screen(turn.catalog, turn.state)
    text = f"{preface}\n\n{menu.text}" if preface else menu.text
    turn.replies.append(replace(menu, text=text))


def joined(*parts: str) -> str:
    """Texts as paragraphs of one message, the empty ones left out."""
    return "\n\n".join(part for part in parts if part)


def menu_option(turn: Turn) -> Option:
    return Option("menu", turn.label("dialog.menu"))


def _option_index(button_id: str) -> int | None:
    if not button_id.startswith(OPTION_PREFIX):
        return None
    rest = button_id.removeprefix(OPTION_PREFIX)
    return int(rest) if rest.isdigit() else None
