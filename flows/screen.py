"""What the person sees now: the screen's text and the choices it offers."""

from __future__ import annotations

from dataclasses import dataclass

from flows.catalog import MODULE_BUTTON_PREFIX, Catalog
from flows.model import StepSpec
from flows.types import Button, ConversationState, Mode, Reply, ReplyLink

MENU, BACK, STUCK, RETRY, HUMAN, CONTINUE = "menu", "back", "stuck", "retry", "human", "continue"
HELP, STOP, SUBSCRIBE, SCAM_CHECK = "help", "stop", "subscribe", "scam_check"
HOUSEHOLD = "household"
CLASSES = "classes"
ANSWER_PREFIX = "goto:"  # internal choice key for a free-text answer; never shown as a button


@dataclass(frozen=True)
class Choice:
    """Something the person can pick now.

    ``button`` is None for free-text answers; ``shown`` is False for the
    screen under a list of suggestions: still valid, but not numbered.
    """

    button: Button | None
    key: str
    phrases: tuple[str, ...]
    shown: bool = True


def screen(catalog: Catalog, state: ConversationState) -> Reply:
    """Render what the person should see now (used after errors and on resume)."""
    buttons = buttons_of(choices(catalog, state))
    if state.scam_check:
        return Reply(text=catalog.say("scam_check_prompt"), buttons=buttons)
    if state.offer:
        return Reply(text=catalog.say("choose_offer"), buttons=buttons)
    if state.mode is Mode.MENU:
        return Reply(text=catalog.say("menu"), buttons=buttons)
    step = current_step(catalog, state)
    if state.mode is Mode.STUCK:
        return Reply(text=step.stuck, buttons=buttons)
    return Reply(
        text=step.text,
        image=step.image,
        links=tuple(ReplyLink(link.label, link.url) for link in step.links),
        buttons=buttons,
    )


def buttons_of(found: list[Choice]) -> tuple[Button, ...]:
    """The numbered buttons, in order."""
    return tuple(c.button for c in found if c.button is not None and c.shown)


def choices(catalog: Catalog, state: ConversationState) -> list[Choice]:
    """Everything the person can pick now, shown buttons first in display order."""
    if state.scam_check:
        return [action(catalog, state, BACK), action(catalog, state, MENU)]
    if state.offer:
        offered = [destination(catalog, state, key) for key in state.offer]
        keys = set(state.offer)
        under = [Choice(c.button, c.key, c.phrases, shown=False) for c in _mode_choices(catalog, state)]
        return offered + [c for c in under if c.key not in keys]
    return _mode_choices(catalog, state)


def action(catalog: Catalog, state: ConversationState, key: str) -> Choice:
    """One of the engine's own buttons, with its label and typed keywords ("/..." commands excluded)."""
    values = {"title": catalog.modules[state.module].title} if key == CONTINUE and state.module else {}
    label = catalog.action_label(key, **values)
    keywords = tuple(k for k in catalog.messages.actions[key].keywords if not k.startswith("/"))
    return Choice(Button(key, label), key, (label, *keywords))


def destination(catalog: Catalog, state: ConversationState, key: str) -> Choice:
    """A button for a routing destination: a module or an action."""
    if key.startswith(MODULE_BUTTON_PREFIX):
        title = catalog.modules[key.removeprefix(MODULE_BUTTON_PREFIX)].title
        return Choice(Button(key, title), key, (title,))
    return action(catalog, state, key)


def current_step(catalog: Catalog, state: ConversationState) -> StepSpec:
    """The step the person is on; the state must have been repaired first."""
    step = catalog.step(state.module, state.step)
    assert step is not None, "state was repaired before use"
    return step


def in_progress(catalog: Catalog, state: ConversationState) -> bool:
    """True if the person has a module started and not finished."""
    return bool(state.module) and not current_step(catalog, state).complete


def unfinished_module(catalog: Catalog, state: ConversationState) -> str:
    """The module a stored state has started and not finished ("" if none, or if content changed since)."""
    step = catalog.step(state.module, state.step) if state.module in catalog.modules else None
    return state.module if step is not None and not step.complete else ""


def _mode_choices(catalog: Catalog, state: ConversationState) -> list[Choice]:
    """The choices of the menu, of "I am stuck" or of the current step: the same for everyone there."""
    if state.mode is Mode.MENU:
        key: tuple[str, ...] = (Mode.MENU, state.module if in_progress(catalog, state) else "")
    elif state.mode is Mode.STUCK:
        key = (Mode.STUCK,)
    else:
        key = (Mode.STEP, state.module, state.step)
    return list(catalog.derived(("choices", *key), lambda: tuple(_make_mode_choices(catalog, state))))


def _make_mode_choices(catalog: Catalog, state: ConversationState) -> list[Choice]:
    if state.mode is Mode.MENU:
        found = [action(catalog, state, CONTINUE)] if in_progress(catalog, state) else []
        for module in catalog.modules.values():
            key = MODULE_BUTTON_PREFIX + module.id
            found.append(Choice(Button(key, module.title), key, (module.title,)))  # keywords go through the router
        return [
            *found,
            action(catalog, state, SCAM_CHECK),
            action(catalog, state, CLASSES),
            action(catalog, state, HOUSEHOLD),
            action(catalog, state, HUMAN),
        ]
    if state.mode is Mode.STUCK:
        return [action(catalog, state, key) for key in (RETRY, HUMAN, MENU)]
    module = catalog.modules[state.module]
    step = current_step(catalog, state)
    found = [Choice(Button(b.id, b.label), b.id, (b.label,)) for b in step.buttons]
    if step.check:
        found += [Choice(Button(o.id, o.label), o.id, (o.label,)) for o in step.check.options]
    if module.id in catalog.scam.offer_in_modules and (step.id == module.start or step.complete):
        found.append(action(catalog, state, SCAM_CHECK))
    found += [action(catalog, state, key) for key in (STUCK, BACK, MENU)]
    found += [Choice(None, f"{ANSWER_PREFIX}{i}:{a.goto}", tuple(a.phrases)) for i, a in enumerate(step.answers)]
    return found
