"""The conversation engine: ``advance(catalog, state, inbound) -> Outcome``.

Pure: no I/O, no clock, no platform types. Every screen offers a list of
buttons; a number typed on a text-only channel picks from that same list, and
free text is matched against the buttons' labels and the content's phrases.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from flows.catalog import Catalog
from flows.model import ModuleSpec, StepSpec
from flows.text import MAX_INPUT_CHARS, best_match, clean, parse_number
from flows.types import (
    Button,
    ConversationState,
    EventKind,
    FlowEvent,
    Inbound,
    InboundKind,
    Mode,
    Outcome,
    Reply,
    ReplyLink,
)
from flows.validate import MODULE_BUTTON_PREFIX

MENU, BACK, STUCK, RETRY, HUMAN, CONTINUE = "menu", "back", "stuck", "retry", "human", "continue"
ANSWER_PREFIX = "goto:"  # internal choice key for a free-text answer; never shown as a button
MAX_HISTORY = 50


@dataclass(frozen=True)
class _Choice:
    button: Button | None  # None for free-text answers, which have no button
    key: str
    phrases: tuple[str, ...]


def advance(catalog: Catalog, state: ConversationState, inbound: Inbound) -> Outcome:
    """Return the next state, the replies and the log events for one inbound."""
    state = _repair(catalog, state)
    if state is None:
        fresh = ConversationState()
        return Outcome(fresh, (_menu_screen(catalog, fresh, catalog.say("content_updated")),))
    if inbound.kind is InboundKind.START:
        greeting = catalog.say("welcome_back" if state.module else "welcome")
        menu_state = replace(state, mode=Mode.MENU)
        return Outcome(menu_state, (_menu_screen(catalog, menu_state, greeting),))
    if inbound.kind is InboundKind.OTHER:
        return _complain(catalog, state, "unsupported_message")
    if inbound.kind is InboundKind.BUTTON:
        return _on_button(catalog, state, inbound.button_id)
    return _on_text(catalog, state, inbound.text)


def resume(catalog: Catalog, state: ConversationState) -> tuple[ConversationState, Reply]:
    """Greet a returning person with the screen they left (or the menu if it is gone)."""
    repaired = _repair(catalog, state)
    if repaired is None:
        fresh = ConversationState()
        return fresh, _menu_screen(catalog, fresh, catalog.say("content_updated"))
    current = screen(catalog, repaired)
    return repaired, replace(current, text=f"{catalog.say('welcome_back')}\n\n{current.text}")


def screen(catalog: Catalog, state: ConversationState) -> Reply:
    """Render what the person should see now (used after errors and on resume)."""
    if state.mode is Mode.MENU:
        return Reply(text=catalog.say("menu"), buttons=_buttons(_choices(catalog, state)))
    step = _current_step(catalog, state)
    if state.mode is Mode.STUCK:
        return Reply(text=step.stuck, buttons=_buttons(_choices(catalog, state)))
    return Reply(
        text=step.text,
        image=step.image,
        links=tuple(ReplyLink(link.label, link.url) for link in step.links),
        buttons=_buttons(_choices(catalog, state)),
    )


def _menu_screen(catalog: Catalog, state: ConversationState, preface: str) -> Reply:
    menu = screen(catalog, state)
    return replace(menu, text=f"{preface}\n\n{menu.text}")


# --- input ---------------------------------------------------------------------------------


def _on_text(catalog: Catalog, state: ConversationState, raw: str) -> Outcome:
    if len(raw) > MAX_INPUT_CHARS:
        return _complain(catalog, state, "too_long", max=MAX_INPUT_CHARS)
    text = clean(raw)
    if not text:
        return _complain(catalog, state, "empty_input")
    choices = _choices(catalog, state)
    offered = [c for c in choices if c.button is not None]
    number = parse_number(text)
    if number is not None:
        if 1 <= number <= len(offered):
            return _choose(catalog, state, offered[number - 1].key)
        return _complain(catalog, state, "number_out_of_range", max=len(offered))
    key = best_match(text, {c.key: c.phrases for c in choices})
    if key is None and state.mode is not Mode.MENU:
        key = best_match(text, _module_phrases(catalog))
    if key is not None:
        return _choose(catalog, state, key)
    step = _current_step(catalog, state) if state.mode is Mode.STEP else None
    return _complain(catalog, state, "check_choose_option" if step and step.check else "not_understood")


def _on_button(catalog: Catalog, state: ConversationState, button_id: str) -> Outcome:
    offered = {c.key for c in _choices(catalog, state) if c.button is not None}
    module_id = button_id.removeprefix(MODULE_BUTTON_PREFIX)
    always_valid = button_id == MENU or (button_id.startswith(MODULE_BUTTON_PREFIX) and module_id in catalog.modules)
    if button_id in offered or always_valid:
        return _choose(catalog, state, button_id)
    return _complain(catalog, state, "stale_button")


def _complain(catalog: Catalog, state: ConversationState, key: str, **values: object) -> Outcome:
    """Say what went wrong, offer the same buttons again, change nothing."""
    return Outcome(state, (Reply(text=catalog.say(key, **values), buttons=screen(catalog, state).buttons),))


# --- choices -------------------------------------------------------------------------------


def _choices(catalog: Catalog, state: ConversationState) -> list[_Choice]:
    """Everything the person can pick now, buttons first in display order."""
    actions = catalog.messages.actions

    def action(key: str, **values: object) -> _Choice:
        label = catalog.action_label(key, **values)
        return _Choice(Button(key, label), key, (label, *actions[key].keywords))

    if state.mode is Mode.MENU:
        found = []
        if state.module and not _current_step(catalog, state).complete:
            found.append(action(CONTINUE, title=catalog.modules[state.module].title))
        for module in catalog.modules.values():
            key = MODULE_BUTTON_PREFIX + module.id
            found.append(_Choice(Button(key, module.title), key, (module.title, *module.keywords)))
        return found
    if state.mode is Mode.STUCK:
        return [action(RETRY), action(HUMAN), action(MENU)]
    step = _current_step(catalog, state)
    found = [_Choice(Button(b.id, b.label), b.id, (b.label,)) for b in step.buttons]
    if step.check:
        found += [_Choice(Button(o.id, o.label), o.id, (o.label,)) for o in step.check.options]
    found += [action(STUCK), action(BACK), action(MENU)]
    found += [_Choice(None, f"{ANSWER_PREFIX}{i}:{a.goto}", tuple(a.phrases)) for i, a in enumerate(step.answers)]
    return found


def _module_phrases(catalog: Catalog) -> dict[str, tuple[str, ...]]:
    return {MODULE_BUTTON_PREFIX + m.id: (m.title, *m.keywords) for m in catalog.modules.values()}


def _buttons(choices: list[_Choice]) -> tuple[Button, ...]:
    return tuple(c.button for c in choices if c.button is not None)


# --- transitions ---------------------------------------------------------------------------


def _choose(catalog: Catalog, state: ConversationState, key: str) -> Outcome:
    if key == MENU:
        menu_state = replace(state, mode=Mode.MENU)
        return Outcome(menu_state, (screen(catalog, menu_state),))
    if key in (CONTINUE, RETRY):
        return _show(catalog, replace(state, mode=Mode.STEP))
    if key.startswith(MODULE_BUTTON_PREFIX):
        return _start(catalog, catalog.modules[key.removeprefix(MODULE_BUTTON_PREFIX)])
    module = catalog.modules[state.module]
    if key == BACK:
        if not state.history:
            menu_state = replace(state, mode=Mode.MENU)
            return Outcome(menu_state, (screen(catalog, menu_state),))
        back = replace(state, mode=Mode.STEP, step=state.history[-1], history=state.history[:-1])
        return _show(catalog, back)
    if key == STUCK:
        stuck = replace(state, mode=Mode.STUCK)
        return Outcome(stuck, (screen(catalog, stuck),), (_event(EventKind.STUCK, module, state.step),))
    if key == HUMAN:
        reply = Reply(text=catalog.say("human_requested"), buttons=screen(catalog, state).buttons)
        return Outcome(state, (reply,), (_event(EventKind.HELP_REQUESTED, module, state.step),))
    step = _current_step(catalog, state)
    if key.startswith(ANSWER_PREFIX):
        return _enter(catalog, state, key.rsplit(":", 1)[1])
    if step.check:
        return _answer_check(catalog, state, module, step, key)
    target = next(b.goto for b in step.buttons if b.id == key)
    return _enter(catalog, state, target)


def _answer_check(
    catalog: Catalog, state: ConversationState, module: ModuleSpec, step: StepSpec, option_id: str
) -> Outcome:
    assert step.check is not None
    option = next(o for o in step.check.options if o.id == option_id)
    if not option.correct:
        reply = Reply(text=step.check.wrong, buttons=screen(catalog, state).buttons)
        return Outcome(state, (reply,), (_event(EventKind.CHECK_FAILED, module, step.id),))
    entered = _enter(catalog, state, step.check.next)
    return Outcome(
        entered.state,
        (Reply(text=step.check.right), *entered.replies),
        (_event(EventKind.CHECK_PASSED, module, step.id), *entered.events),
    )


def _start(catalog: Catalog, module: ModuleSpec) -> Outcome:
    state = ConversationState(mode=Mode.STEP, module=module.id, module_version=module.version, step=module.start)
    shown = _show(catalog, state)
    events = (_event(EventKind.STARTED, module, module.start), _event(EventKind.STEP, module, module.start))
    return Outcome(shown.state, shown.replies, events)


def _enter(catalog: Catalog, state: ConversationState, step_id: str) -> Outcome:
    module = catalog.modules[state.module]
    history = state.history if step_id == state.step else (*state.history, state.step)[-MAX_HISTORY:]
    moved = replace(state, mode=Mode.STEP, step=step_id, history=history)
    shown = _show(catalog, moved)
    events = [_event(EventKind.STEP, module, step_id)]
    if _current_step(catalog, moved).complete:
        events.append(_event(EventKind.COMPLETED, module, step_id))
    return Outcome(shown.state, shown.replies, tuple(events))


def _show(catalog: Catalog, state: ConversationState) -> Outcome:
    return Outcome(state, (screen(catalog, state),))


def _event(kind: EventKind, module: ModuleSpec, step: str) -> FlowEvent:
    return FlowEvent(kind=kind, module=module.id, module_version=module.version, step=step)


# --- state -----------------------------------------------------------------------------------


def _current_step(catalog: Catalog, state: ConversationState) -> StepSpec:
    step = catalog.step(state.module, state.step)
    assert step is not None, "state was repaired before use"
    return step


def _repair(catalog: Catalog, state: ConversationState) -> ConversationState | None:
    """Fit a stored state to the current content; None when its step is gone."""
    if not state.module:
        return replace(state, mode=Mode.MENU, step="", history=())
    module = catalog.modules.get(state.module)
    if module is None or catalog.step(module.id, state.step) is None:
        return None
    history = tuple(s for s in state.history if catalog.step(module.id, s) is not None)
    return replace(state, module_version=module.version, history=history)
