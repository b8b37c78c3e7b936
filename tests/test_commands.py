"""Global commands, free-text routing and secret warnings in the engine (no database)."""

from __future__ import annotations

import pytest

from flows.catalog import Catalog
from flows.engine import advance, screen
from flows.types import ConversationState, EventKind, Mode
from tests.helpers import run, tap, text


def in_step(catalog: Catalog) -> ConversationState:
    return advance(catalog, ConversationState(), tap("mod:vneid")).state


def stuck(catalog: Catalog) -> ConversationState:
    return advance(catalog, in_step(catalog), tap("stuck")).state


def suggesting(catalog: Catalog) -> ConversationState:
    return advance(catalog, ConversationState(), text("giấy tờ")).state


def checking(catalog: Catalog) -> ConversationState:
    return advance(catalog, in_step(catalog), tap("scam_check")).state


STATES = {
    "menu": lambda c: ConversationState(),
    "step": in_step,
    "stuck": stuck,
    "suggestions": suggesting,
    "scam check": checking,
}


@pytest.mark.parametrize("where", list(STATES))
@pytest.mark.parametrize("typed", ["menu", "Menu chính", "/menu", "về trang chủ"])
def test_menu_works_everywhere(shipped: Catalog, where: str, typed: str) -> None:
    outcome = advance(shipped, STATES[where](shipped), text(typed))
    assert outcome.state.mode is Mode.MENU
    assert not outcome.state.offer
    assert not outcome.state.scam_check
    assert outcome.replies[0].text == shipped.say("menu")


@pytest.mark.parametrize("where", list(STATES))
@pytest.mark.parametrize("typed", ["trợ giúp", "tro giup", "/trogiup"])
def test_help_works_everywhere_and_changes_nothing(shipped: Catalog, where: str, typed: str) -> None:
    state = STATES[where](shipped)
    outcome = advance(shipped, state, text(typed))
    assert outcome.state == state
    assert outcome.replies[0].text == shipped.say("help")
    assert outcome.replies[0].buttons == screen(shipped, state).buttons


@pytest.mark.parametrize("where", list(STATES))
@pytest.mark.parametrize("typed", ["gặp người hỗ trợ", "gap nguoi ho tro", "/gapnguoi"])
def test_a_human_can_be_requested_from_anywhere(shipped: Catalog, where: str, typed: str) -> None:
    state = STATES[where](shipped)
    outcome = advance(shipped, state, text(typed))
    assert outcome.replies[0].text == shipped.say("human_requested")
    assert [e.kind for e in outcome.events] == [EventKind.HELP_REQUESTED]
    event = outcome.events[0]
    if state.mode is Mode.MENU:
        assert (event.module, event.module_version, event.step) == ("", 0, "")
    else:
        assert (event.module, event.step) == ("vneid", "intro")


@pytest.mark.parametrize("where", list(STATES))
@pytest.mark.parametrize("typed", ["dừng nhận tin", "dung nhan tin", "/dung", "STOP"])
def test_stop_unsubscribes_from_anywhere_and_can_be_undone(shipped: Catalog, where: str, typed: str) -> None:
    stopped = advance(shipped, STATES[where](shipped), text(typed))
    assert stopped.state.subscribed is False
    assert stopped.replies[0].text == shipped.say("stop_confirmed")
    assert ConversationState.from_dict(stopped.state.to_dict()).subscribed is False
    assert stopped.replies[0].buttons[0].id == "subscribe"
    again = advance(shipped, stopped.state, text("1"))
    assert again.state.subscribed is True
    assert again.replies[0].text == shipped.say("subscribe_confirmed")
    assert advance(shipped, stopped.state, text("nhận tin trở lại")).state.subscribed is True


def test_unsubscribing_survives_moving_around_and_content_updates(shipped: Catalog) -> None:
    state = advance(shipped, ConversationState(), text("/dung")).state
    for inbound in [tap("mod:vneid"), text("menu"), text("cai vneid ntn"), tap("mod:lua_dao")]:
        state = advance(shipped, state, inbound).state
        assert state.subscribed is False
    gone = ConversationState(mode=Mode.STEP, module="vneid", module_version=1, step="removed", subscribed=False)
    assert advance(shipped, gone, text("1")).state.subscribed is False


def test_old_states_without_the_new_fields_load_subscribed(shipped: Catalog) -> None:
    old = {"mode": "step", "module": "vneid", "module_version": 1, "step": "intro", "history": []}
    state = ConversationState.from_dict(old)
    assert (state.subscribed, state.offer, state.scam_check) == (True, (), False)


def test_back_from_the_menu_returns_to_the_module(shipped: Catalog) -> None:
    state = run(shipped, [tap("mod:vneid"), tap("not_installed"), text("menu")])[-1].state
    back = advance(shipped, state, text("quay lại"))
    assert back.state.mode is Mode.STEP
    assert back.state.step == "install_where"
    assert advance(shipped, ConversationState(), text("quay lai")).state.mode is Mode.MENU


def test_free_text_from_the_menu_opens_the_right_module(shipped: Catalog) -> None:
    outcome = advance(shipped, ConversationState(), text("bi goi dien tu xung cong an"))
    assert outcome.state.module == "lua_dao"
    assert [e.kind for e in outcome.events] == [EventKind.STARTED, EventKind.STEP]


def test_an_unsure_message_offers_three_suggestions_that_numbers_pick(shipped: Catalog) -> None:
    outcome = advance(shipped, ConversationState(), text("giấy tờ"))
    reply = outcome.replies[0]
    assert reply.text == shipped.say("suggest")
    ids = [b.id for b in reply.buttons]
    assert 2 <= len(ids) <= 4
    assert ids[-1] == "menu"
    assert all(len(i.encode()) <= 32 and i.isascii() for i in ids)
    assert outcome.state.offer == tuple(ids)
    picked = advance(shipped, outcome.state, text("1"))
    assert picked.state.module == ids[0].removeprefix("mod:")
    assert picked.state.offer == ()
    assert advance(shipped, outcome.state, text("quay lai")).state == ConversationState()


def test_in_a_step_suggestions_lead_back_to_the_step(shipped: Catalog) -> None:
    state = in_step(shipped)
    outcome = advance(shipped, state, text("giấy tờ"))
    ids = [b.id for b in outcome.replies[0].buttons]
    assert ids[-1] == "continue"
    resumed = advance(shipped, outcome.state, text(str(len(ids))))
    assert resumed.state == state
    # the step's own answers still work while suggestions are shown
    assert advance(shipped, outcome.state, text("da cai vneid")).state.step == "account_status"


def test_nonsense_is_answered_honestly_with_the_menu_and_a_human(shipped: Catalog) -> None:
    outcome = advance(shipped, ConversationState(), text("qwzx plmk"))
    reply = outcome.replies[0]
    assert reply.text == shipped.say("not_understood")
    ids = [b.id for b in reply.buttons]
    assert "human" in ids
    assert "mod:vneid" in ids
    assert outcome.state == ConversationState()


def test_out_of_scope_gets_a_polite_list_of_what_the_bot_does(shipped: Catalog) -> None:
    outcome = advance(shipped, ConversationState(), text("giá vàng hôm nay bao nhiêu"))
    reply = outcome.replies[0].text
    assert reply.startswith("Xin lỗi")
    for module in shipped.modules.values():
        assert module.title in reply
    assert outcome.state == ConversationState()


@pytest.mark.parametrize(
    "typed",
    [
        "482913",
        "mã OTP là 482913",
        "passcode cua toi 246810",
        "cccd 079123456789",
        "4111 1111 1111 1111",
        "mk la Hoa@1960",
    ],
)
@pytest.mark.parametrize("where", ["menu", "step", "suggestions"])
def test_secrets_are_refused_with_a_warning_and_change_nothing(shipped: Catalog, typed: str, where: str) -> None:
    state = STATES[where](shipped)
    outcome = advance(shipped, state, text(typed))
    assert outcome.state == state
    assert outcome.events == ()
    assert outcome.replies[0].text == shipped.say("secret_warning")
    assert outcome.replies[0].buttons == screen(shipped, state).buttons


def test_small_numbers_still_pick_buttons(shipped: Catalog) -> None:
    state = in_step(shipped)
    assert advance(shipped, state, text("1")).state.step == "install_where"
    assert advance(shipped, ConversationState(), text("12")).replies[0].text.startswith("Chỉ có các số")


def test_global_buttons_are_valid_from_old_messages(shipped: Catalog) -> None:
    state = in_step(shipped)
    for button in ("help", "human", "stop", "subscribe", "scam_check", "menu"):
        outcome = advance(shipped, state, tap(button))
        assert outcome.replies[0].text != shipped.say("stale_button"), button
    assert advance(shipped, state, tap("retry")).replies[0].text == shipped.say("stale_button")
