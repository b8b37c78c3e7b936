"""The conversation engine: ``advance(catalog, state, inbound) -> Outcome``.

Pure: no I/O, no clock, no platform types. Every screen offers a list of
buttons; a number typed on a text-only channel picks from that same list.
A typed message is read in this order:

1. anything that looks like an OTP, password, card or ID number is refused
   with a warning, and nothing else happens;
2. a bare number picks a shown button;
3. a message that is exactly one of the screen's buttons or answers picks it;
4. an exact command ("menu", "dừng nhận tin", "/trogiup") works everywhere;
5. the screen's buttons and answers, matched loosely (contained, or with typos);
6. the router: a module, a command, the scam check, or "out of scope";
   when unsure it offers its best guesses as buttons, below a floor it says
   honestly that it did not understand.

In scam-check mode the next text is a message to check, not a request.
"""

from __future__ import annotations

from dataclasses import replace

from flows.catalog import HOST_ACTION_KEYS, MODULE_BUTTON_PREFIX, Catalog
from flows.model import ModuleSpec
from flows.router import RouteKind
from flows.safety import find_secrets
from flows.scam_check import scan
from flows.screen import (
    ANSWER_PREFIX,
    BACK,
    CONTINUE,
    HELP,
    HUMAN,
    MENU,
    RETRY,
    SCAM_CHECK,
    STOP,
    STUCK,
    SUBSCRIBE,
    choices,
    current_step,
    in_progress,
    screen,
)
from flows.text import MAX_INPUT_CHARS, best_match, clean, exact_match, parse_number
from flows.types import ConversationState, EventKind, FlowEvent, Inbound, InboundKind, Mode, Outcome, Reply

__all__ = ["advance", "resume", "screen"]

MAX_HISTORY = 50
# Buttons that are valid whenever they are tapped, even from an old message.
ALWAYS_VALID = frozenset({MENU, HELP, HUMAN, STOP, SUBSCRIBE, SCAM_CHECK, *HOST_ACTION_KEYS})
OFFERABLE = frozenset({*ALWAYS_VALID, BACK, CONTINUE, RETRY})
SCAM_MODE_COMMAND_WORDS = 4  # in scam-check mode only a message this short can be a command


def advance(catalog: Catalog, state: ConversationState, inbound: Inbound) -> Outcome:
    """Return the next state, the replies and the log events for one inbound."""
    repaired = _repair(catalog, state)
    if repaired is None:
        fresh = ConversationState(subscribed=state.subscribed)
        return Outcome(fresh, (_menu_screen(catalog, fresh, catalog.say("content_updated")),))
    state = repaired
    if inbound.kind is InboundKind.START:
        greeting = catalog.say("welcome_back" if state.module else "welcome")
        menu_state = replace(_calm(state), mode=Mode.MENU)
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
        fresh = ConversationState(subscribed=state.subscribed)
        return fresh, _menu_screen(catalog, fresh, catalog.say("content_updated"))
    current = screen(catalog, repaired)
    return repaired, replace(current, text=f"{catalog.say('welcome_back')}\n\n{current.text}")


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
    has_secret = bool(find_secrets(text))
    if state.scam_check:
        return _on_checked_message(catalog, state, text, has_secret)
    if has_secret:
        return _complain(catalog, state, "secret_warning")
    found = choices(catalog, state)
    number = parse_number(text)
    if number is not None:
        return _pick_number(catalog, state, number)
    phrases = {c.key: c.phrases for c in found}
    key = exact_match(text, phrases) or catalog.router.command(text) or best_match(text, phrases)
    if key is not None:
        return _choose(catalog, state, key)
    return _route(catalog, state, text)


def _pick_number(catalog: Catalog, state: ConversationState, number: int) -> Outcome:
    shown = [c for c in choices(catalog, state) if c.button is not None and c.shown]
    if 1 <= number <= len(shown):
        return _choose(catalog, state, shown[number - 1].key)
    return _complain(catalog, state, "number_out_of_range", max=len(shown))


def _route(catalog: Catalog, state: ConversationState, text: str) -> Outcome:
    route = catalog.router.route(text)
    if route.kind is RouteKind.GO:
        return _choose(catalog, state, route.destination)
    step = current_step(catalog, state) if state.mode is Mode.STEP else None
    if step is not None and step.check:
        return _complain(catalog, state, "check_choose_option")
    if route.kind is RouteKind.OUT_OF_SCOPE:
        return _complain(catalog, state, "out_of_scope", topics=[m.title for m in catalog.modules.values()])
    if route.kind is RouteKind.SUGGEST:
        return _offer(catalog, state, "suggest", route.suggestions())
    return _complain(catalog, state, "not_understood")


def _on_checked_message(catalog: Catalog, state: ConversationState, text: str, has_secret: bool) -> Outcome:
    """Scam-check mode: a number, a button word or a short command still works; anything else is checked."""
    number = parse_number(text)
    if number is not None and not has_secret:
        return _pick_number(catalog, state, number)
    short = len(text.split()) <= SCAM_MODE_COMMAND_WORDS
    key = catalog.router.command(text) or (
        best_match(text, {c.key: c.phrases for c in choices(catalog, state)}) if short else None
    )
    if key is not None and not has_secret:
        return _choose(catalog, state, key)
    flags = scan(text, catalog.scam_signals, catalog.router.normalizer)
    signs = [catalog.scam.flags[flag].explain for flag in flags]
    found = catalog.say("scam_found", count=len(signs), signs=signs) if signs else catalog.say("scam_none")
    learn = [MODULE_BUTTON_PREFIX + m for m in catalog.scam.offer_in_modules if m in catalog.modules][:1]
    after = replace(state, scam_check=False, offer=(SCAM_CHECK, *learn, _home(catalog, state)))
    # Two messages: each stays short enough for every channel (Zalo: 2000 characters).
    replies = [Reply(text=found), Reply(text=catalog.say("scam_footer"), buttons=screen(catalog, after).buttons)]
    if has_secret:
        replies.insert(0, Reply(text=catalog.say("secret_warning")))
    return Outcome(after, tuple(replies))


def _on_button(catalog: Catalog, state: ConversationState, button_id: str) -> Outcome:
    valid = {c.key for c in choices(catalog, state) if c.button is not None}
    module_id = button_id.removeprefix(MODULE_BUTTON_PREFIX)
    is_module = button_id.startswith(MODULE_BUTTON_PREFIX) and module_id in catalog.modules
    if button_id in valid or button_id in ALWAYS_VALID or is_module:
        return _choose(catalog, state, button_id)
    return _complain(catalog, state, "stale_button")


def _complain(catalog: Catalog, state: ConversationState, key: str, **values: object) -> Outcome:
    """Say what went wrong (or warn), offer the same buttons again, change nothing."""
    return Outcome(state, (Reply(text=catalog.say(key, **values), buttons=screen(catalog, state).buttons),))


def _offer(catalog: Catalog, state: ConversationState, text_key: str, keys: tuple[str, ...]) -> Outcome:
    """Show ``keys`` as buttons instead of the usual screen, plus a way home."""
    home = _home(catalog, state)
    offered = replace(state, offer=(*keys, home) if home not in keys else keys)
    return Outcome(offered, (Reply(text=catalog.say(text_key), buttons=screen(catalog, offered).buttons),))


def _home(catalog: Catalog, state: ConversationState) -> str:
    """The button that leads back: the module in progress, or the menu."""
    return CONTINUE if state.mode is not Mode.MENU and in_progress(catalog, state) else MENU


def _calm(state: ConversationState) -> ConversationState:
    """The usual screen again: no suggestions pending, not checking a message."""
    return replace(state, offer=(), scam_check=False)


# --- transitions ---------------------------------------------------------------------------


def _choose(catalog: Catalog, state: ConversationState, key: str) -> Outcome:
    if key == HELP:
        return _complain(catalog, state, "help")
    if key == BACK:
        return _back(catalog, state)
    state = _calm(state)
    if key in HOST_ACTION_KEYS:
        return Outcome(state, handoff=key)
    if key == MENU or (key in (CONTINUE, RETRY) and not state.module):
        return _show(catalog, replace(state, mode=Mode.MENU))
    if key in (CONTINUE, RETRY):
        return _show(catalog, replace(state, mode=Mode.STEP))
    if key.startswith(MODULE_BUTTON_PREFIX):
        return _start(catalog, state, catalog.modules[key.removeprefix(MODULE_BUTTON_PREFIX)])
    if key in (HUMAN, STOP, SUBSCRIBE, SCAM_CHECK):
        return _command(catalog, state, key)
    module = catalog.modules[state.module]
    if key == STUCK:
        stuck = replace(state, mode=Mode.STUCK)
        return Outcome(stuck, (screen(catalog, stuck),), (_event(EventKind.STUCK, module, state.step),))
    step = current_step(catalog, state)
    if key.startswith(ANSWER_PREFIX):
        return _enter(catalog, state, key.rsplit(":", 1)[1])
    if step.check:
        return _answer_check(catalog, state, module, key)
    target = next(b.goto for b in step.buttons if b.id == key)
    return _enter(catalog, state, target)


def _command(catalog: Catalog, state: ConversationState, key: str) -> Outcome:
    """The commands that work from anywhere and keep the person where they are."""
    if key == HUMAN:
        module = catalog.modules[state.module] if state.mode is not Mode.MENU and state.module else None
        event = FlowEvent(
            kind=EventKind.HELP_REQUESTED,
            module=module.id if module else "",
            module_version=module.version if module else 0,
            step=state.step if module else "",
        )
        reply = Reply(text=catalog.say("human_requested"), buttons=screen(catalog, state).buttons)
        return Outcome(state, (reply,), (event,))
    if key == STOP:
        stopped = replace(state, subscribed=False)
        return _offer(catalog, stopped, "stop_confirmed", (SUBSCRIBE,))
    if key == SUBSCRIBE:
        return _complain(catalog, replace(state, subscribed=True), "subscribe_confirmed")
    checking = replace(state, scam_check=True)
    return Outcome(checking, (screen(catalog, checking),))


def _back(catalog: Catalog, state: ConversationState) -> Outcome:
    """One step back: out of suggestions or the scam check, out of the menu into the module, or the previous step."""
    if state.offer or state.scam_check:
        return _show(catalog, _calm(state))
    if state.mode is Mode.MENU:
        return _show(catalog, replace(state, mode=Mode.STEP) if in_progress(catalog, state) else state)
    if state.mode is Mode.STUCK:
        return _show(catalog, replace(state, mode=Mode.STEP))
    if not state.history:
        return _show(catalog, replace(state, mode=Mode.MENU))
    return _show(catalog, replace(state, mode=Mode.STEP, step=state.history[-1], history=state.history[:-1]))


def _answer_check(catalog: Catalog, state: ConversationState, module: ModuleSpec, option_id: str) -> Outcome:
    step = current_step(catalog, state)
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


def _start(catalog: Catalog, state: ConversationState, module: ModuleSpec) -> Outcome:
    started = replace(
        state, mode=Mode.STEP, module=module.id, module_version=module.version, step=module.start, history=()
    )
    events = (_event(EventKind.STARTED, module, module.start), _event(EventKind.STEP, module, module.start))
    return Outcome(started, (screen(catalog, started),), events)


def _enter(catalog: Catalog, state: ConversationState, step_id: str) -> Outcome:
    module = catalog.modules[state.module]
    history = state.history if step_id == state.step else (*state.history, state.step)[-MAX_HISTORY:]
    moved = replace(state, mode=Mode.STEP, step=step_id, history=history)
    events = [_event(EventKind.STEP, module, step_id)]
    if current_step(catalog, moved).complete:
        events.append(_event(EventKind.COMPLETED, module, step_id))
    return Outcome(moved, (screen(catalog, moved),), tuple(events))


def _show(catalog: Catalog, state: ConversationState) -> Outcome:
    return Outcome(state, (screen(catalog, state),))


def _event(kind: EventKind, module: ModuleSpec, step: str) -> FlowEvent:
    return FlowEvent(kind=kind, module=module.id, module_version=module.version, step=step)


# --- state -----------------------------------------------------------------------------------


def _repair(catalog: Catalog, state: ConversationState) -> ConversationState | None:
    """Fit a stored state to the current content; None when its step is gone."""
    offer = tuple(k for k in state.offer if _offerable(catalog, state, k))
    if not state.module:
        return replace(state, mode=Mode.MENU, step="", history=(), offer=offer)
    module = catalog.modules.get(state.module)
    if module is None or catalog.step(module.id, state.step) is None:
        return None
    history = tuple(s for s in state.history if catalog.step(module.id, s) is not None)
    return replace(state, module_version=module.version, history=history, offer=offer)


def _offerable(catalog: Catalog, state: ConversationState, key: str) -> bool:
    if key.startswith(MODULE_BUTTON_PREFIX):
        return key.removeprefix(MODULE_BUTTON_PREFIX) in catalog.modules
    return key in OFFERABLE and (key not in (CONTINUE, RETRY) or bool(state.module))
