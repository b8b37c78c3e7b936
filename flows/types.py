"""Channel-neutral values that go in and out of the engine."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class InboundKind(StrEnum):
    """What the person did."""

    START = "start"  # first contact, /start
    TEXT = "text"  # typed a message
    BUTTON = "button"  # tapped a button (payload = button id)
    OTHER = "other"  # sticker, image, location...: nothing the engine can read


@dataclass(frozen=True)
class Inbound:
    """One thing a person sent, already normalised by the channel adapter.

    ``at`` is the time the platform says it happened (UTC); the engine never
    reads the clock.
    """

    kind: InboundKind
    at: dt.datetime
    text: str = ""
    button_id: str = ""


@dataclass(frozen=True)
class Button:
    """A choice offered to the person: short ASCII id + Vietnamese label."""

    id: str
    label: str


@dataclass(frozen=True)
class ReplyLink:
    """A web address to show under a reply."""

    label: str
    url: str


@dataclass(frozen=True)
class Reply:
    """One outgoing message, for any channel."""

    text: str
    image: str | None = None
    links: tuple[ReplyLink, ...] = ()
    buttons: tuple[Button, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """What ``dataclasses.asdict`` gives, several times faster (a reply is stored for every message)."""
        return {
            "text": self.text,
            "image": self.image,
            "links": tuple({"label": link.label, "url": link.url} for link in self.links),
            "buttons": tuple({"id": button.id, "label": button.label} for button in self.buttons),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reply:
        return cls(
            text=data["text"],
            image=data.get("image"),
            links=tuple(ReplyLink(**link) for link in data.get("links", ())),
            buttons=tuple(Button(**b) for b in data.get("buttons", ())),
        )


class EventKind(StrEnum):
    """Participation-log event kinds."""

    STARTED = "started"
    STEP = "step"
    CHECK_PASSED = "check_passed"
    CHECK_FAILED = "check_failed"
    STUCK = "stuck"
    HELP_REQUESTED = "help_requested"
    COMPLETED = "completed"
    RETRACTED = "retracted"  # corrects an earlier event (corrects_id); the log itself is never edited
    ATTENDED = "attended"  # was present at a community class (recorded by the volunteer who held it)


@dataclass(frozen=True)
class FlowEvent:
    """A fact for the participation log; the host adds who, where and when."""

    kind: EventKind
    module: str
    module_version: int
    step: str = ""


class Mode(StrEnum):
    """Where in the conversation the person is."""

    MENU = "menu"
    STEP = "step"
    STUCK = "stuck"


@dataclass(frozen=True)
class ConversationState:
    """The whole conversation state; stored as JSON between turns.

    ``offer`` holds the ids of buttons shown instead of the usual screen (routing
    suggestions, choices after a scam check), so that a typed number picks from
    them; ``scam_check`` means the next text is a message to check, not a
    request; ``subscribed`` is False once the person said "dừng nhận tin"
    (broadcasts must skip them). ``dialog`` and ``dialog_data`` belong to the
    host's own conversations (household, field visit...): the engine keeps
    them as they are.
    """

    mode: Mode = Mode.MENU
    module: str = ""
    module_version: int = 0
    step: str = ""
    history: tuple[str, ...] = ()
    offer: tuple[str, ...] = ()
    scam_check: bool = False
    subscribed: bool = True
    dialog: str = ""
    dialog_data: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode.value,
            "module": self.module,
            "module_version": self.module_version,
            "step": self.step,
            "history": list(self.history),
            "offer": list(self.offer),
            "scam_check": self.scam_check,
            "subscribed": self.subscribed,
            "dialog": self.dialog,
            "dialog_data": self.dialog_data,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ConversationState:
        if not data:
            return cls()
        try:
            mode = Mode(data.get("mode", Mode.MENU))
        except ValueError:
            mode = Mode.MENU
        return cls(
            mode=mode,
            module=str(data.get("module", "")),
            module_version=int(data.get("module_version", 0)),
            step=str(data.get("step", "")),
            history=tuple(str(s) for s in data.get("history", ())),
            offer=tuple(str(s) for s in data.get("offer", ())),
            scam_check=bool(data.get("scam_check", False)),
            subscribed=bool(data.get("subscribed", True)),
            dialog=str(data.get("dialog", "")),
            dialog_data=dict(data.get("dialog_data") or {}),
        )


@dataclass(frozen=True)
class Outcome:
    """What one inbound produced: the next state, the replies and the log events.

    ``handoff`` names a host action (household, delete my data...) the person
    chose: the host takes over from ``state``.
    """

    state: ConversationState
    replies: tuple[Reply, ...] = ()
    events: tuple[FlowEvent, ...] = field(default=())
    handoff: str = ""
