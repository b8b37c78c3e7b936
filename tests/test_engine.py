"""The engine, with no database and no server."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.catalog import Catalog
from flows.engine import advance, resume, screen
from flows.text import MAX_INPUT_CHARS
from flows.types import ConversationState, EventKind, Inbound, InboundKind, Mode, Reply
from tests.helpers import T0, completion_path, run, tap, text


def kinds(outcome) -> list[str]:
    return [e.kind.value for e in outcome.events]


def labels(outcome) -> list[str]:
    return [b.label for b in outcome.replies[-1].buttons]


def test_start_greets_and_shows_menu(mini: Catalog) -> None:
    outcome = advance(mini, ConversationState(), Inbound(InboundKind.START, T0))
    assert outcome.state.mode is Mode.MENU
    assert mini.say("welcome") in outcome.replies[0].text
    assert labels(outcome) == [
        "Bài thử",
        mini.action_label("scam_check"),
        mini.action_label("classes"),
        mini.action_label("household"),
        mini.action_label("human"),
    ]
    assert outcome.events == ()


def test_typed_words_without_diacritics_walk_the_module(mini: Catalog) -> None:
    start, answer, wrong, right = run(mini, [text("bai thu"), text("xong roi"), text("1"), text("hai")])
    assert start.state.step == "a"
    assert kinds(start) == ["started", "step"]
    assert answer.state.step == "b"
    assert kinds(answer) == ["step"]
    assert wrong.state.step == "b"
    assert kinds(wrong) == ["check_failed"]
    assert wrong.replies[0].text == "Chưa đúng, thử lại."
    assert [b.id for b in wrong.replies[0].buttons][:2] == ["one", "two"]  # same question offered again
    assert right.state.step == "c"
    assert [r.text for r in right.replies] == ["Đúng rồi!", "Xong bài."]
    assert kinds(right) == ["check_passed", "step", "completed"]
    assert {e.module_version for e in right.events} == {2}


def test_numbers_pick_the_displayed_buttons(mini: Catalog) -> None:
    state = advance(mini, ConversationState(), tap("mod:mini")).state
    shown = screen(mini, state).buttons
    assert [b.id for b in shown] == ["to_b", "stuck", "back", "menu"]
    assert advance(mini, state, text(" 1. ")).state.step == "b"
    assert advance(mini, state, text("4")).state.mode is Mode.MENU


def test_stuck_explains_differently_and_offers_a_human(mini: Catalog) -> None:
    state = advance(mini, ConversationState(), tap("mod:mini")).state
    stuck = advance(mini, state, text("Tôi bị kẹt"))
    assert stuck.state.mode is Mode.STUCK
    assert stuck.replies[0].text == "Giải thích A"
    assert [b.id for b in stuck.replies[0].buttons] == ["retry", "human", "menu"]
    assert kinds(stuck) == ["stuck"]
    human = advance(mini, stuck.state, tap("human"))
    assert kinds(human) == ["help_requested"]
    assert human.events[0].step == "a"
    assert human.replies[0].text == mini.say("human_requested")
    again = advance(mini, human.state, tap("retry"))
    assert again.state.mode is Mode.STEP
    assert again.replies[0].text == "Bước A"


def test_back_and_menu_and_continue(mini: Catalog) -> None:
    outcomes = run(mini, [tap("mod:mini"), tap("to_b"), tap("back"), tap("back"), tap("mod:mini")])
    assert outcomes[2].state.step == "a"
    assert outcomes[2].state.history == ()
    assert outcomes[3].state.mode is Mode.MENU  # back from the first step
    in_b = outcomes[1].state
    menu = advance(mini, in_b, text("menu"))
    assert menu.state.mode is Mode.MENU
    assert labels(menu)[0] == "Tiếp tục: Bài thử"
    resumed = advance(mini, menu.state, text("1"))
    assert resumed.state.mode is Mode.STEP
    assert resumed.state.step == "b"
    assert resumed.events == ()


def test_bad_input_gets_a_short_reply_and_changes_nothing(mini: Catalog) -> None:
    state = advance(mini, ConversationState(), tap("mod:mini")).state
    cases = {
        "": "empty_input",
        "   \t ": "empty_input",
        "x" * 10_000: "too_long",
        "😀🙏": "not_understood",
        "\x00\x07\x1b\u200b": "empty_input",
        "\x1b[31mabc\x07": "not_understood",
        "99": "number_out_of_range",
        "0": "number_out_of_range",
    }
    for raw, key in cases.items():
        outcome = advance(mini, state, text(raw))
        assert outcome.state == state, raw
        assert outcome.events == ()
        assert len(outcome.replies) == 1
        reply = outcome.replies[0]
        assert reply.text.startswith(mini.say(key, max=4 if key != "too_long" else MAX_INPUT_CHARS)[:20]), raw
        assert [b.id for b in reply.buttons] == ["to_b", "stuck", "back", "menu"], raw


def test_text_in_the_middle_of_a_check(mini: Catalog) -> None:
    state = run(mini, [tap("mod:mini"), tap("to_b")])[-1].state
    outcome = advance(mini, state, text("hom nay troi dep qua"))
    assert outcome.state == state
    assert outcome.events == ()
    assert outcome.replies[0].text == mini.say("check_choose_option")
    assert [b.id for b in outcome.replies[0].buttons][:2] == ["one", "two"]


def test_an_old_button_is_refused_politely(mini: Catalog) -> None:
    state = run(mini, [tap("mod:mini"), tap("to_b")])[-1].state
    outcome = advance(mini, state, tap("to_b"))
    assert outcome.state == state
    assert outcome.replies[0].text == mini.say("stale_button")


def test_stickers_and_images_get_a_polite_reply(mini: Catalog) -> None:
    state = advance(mini, ConversationState(), tap("mod:mini")).state
    outcome = advance(mini, state, Inbound(InboundKind.OTHER, T0))
    assert outcome.state == state
    assert outcome.replies[0].text == mini.say("unsupported_message")


def test_a_state_from_older_content_is_repaired(mini: Catalog) -> None:
    gone = ConversationState(mode=Mode.STEP, module="mini", module_version=1, step="removed_step")
    outcome = advance(mini, gone, text("1"))
    assert outcome.state == ConversationState()
    assert mini.say("content_updated") in outcome.replies[0].text
    unknown_module = replace(gone, module="nope", step="a")
    assert advance(mini, unknown_module, text("1")).state.mode is Mode.MENU
    state, reply = resume(mini, ConversationState(mode=Mode.STEP, module="mini", module_version=1, step="b"))
    assert state.module_version == 2
    assert reply.text.endswith("Câu hỏi: 1 + 1 = ?")


def test_free_text_can_jump_to_another_module_from_a_step(mini: Catalog) -> None:
    state = run(mini, [tap("mod:mini"), tap("to_b")])[-1].state
    outcome = advance(mini, state, text("thu nghiem"))
    assert outcome.state.step == "a"
    assert kinds(outcome) == ["started", "step"]


SHIPPED_MODULES = ["vneid", "dich_vu_cong", "binh_dan_hoc_vu_so", "lua_dao", "gia_dinh_so"]


@pytest.mark.parametrize("module_id", SHIPPED_MODULES)
def test_each_shipped_module_completes_only_after_its_check(shipped: Catalog, module_id: str) -> None:
    assert set(SHIPPED_MODULES) <= set(shipped.modules)
    path = completion_path(shipped, module_id)
    module = shipped.modules[module_id]
    checks = [s.id for s in module.steps if s.check]
    assert 2 <= len(checks) <= 3, "each learning module ends with a 2-3 question check"
    state = run(shipped, [tap(f"mod:{module_id}")])[-1].state
    events = []
    for button in path:
        step = shipped.step(module_id, state.step)
        if step.check:  # answer wrong first: no completion, the same question again
            wrong = next(o.id for o in step.check.options if not o.correct)
            failed = advance(shipped, state, tap(wrong))
            assert [e.kind for e in failed.events] == [EventKind.CHECK_FAILED]
            assert failed.state.step == state.step
        outcome = advance(shipped, state, tap(button))
        events += outcome.events
        state = outcome.state
    kinds = [e.kind for e in events]
    assert kinds.count(EventKind.COMPLETED) == 1
    assert kinds[-1] is EventKind.COMPLETED
    passed = [e.step for e in events if e.kind is EventKind.CHECK_PASSED]
    assert passed == checks
    assert kinds.index(EventKind.COMPLETED) > kinds.index(EventKind.CHECK_PASSED)


def test_every_step_of_the_shipped_content_offers_stuck_back_and_menu(shipped: Catalog) -> None:
    for module in shipped.modules.values():
        for step in module.steps:
            state = ConversationState(mode=Mode.STEP, module=module.id, module_version=module.version, step=step.id)
            ids = [b.id for b in screen(shipped, state).buttons]
            assert ids[-3:] == ["stuck", "back", "menu"], step.id
            assert all(len(i.encode()) <= 32 and i.isascii() for i in ids)


BUTTON_IDS = [
    *("menu", "back", "stuck", "retry", "human", "continue", "mod:vneid", "mod:x", "zzz"),
    *("help", "stop", "subscribe", "scam_check", "mod:lua_dao"),
]
inbounds = st.one_of(
    st.builds(lambda t: Inbound(InboundKind.TEXT, T0, text=t), st.text(max_size=60)),
    st.builds(lambda n: Inbound(InboundKind.TEXT, T0, text=str(n)), st.integers(-3, 12)),
    st.builds(
        lambda b: Inbound(InboundKind.BUTTON, T0, button_id=b),
        st.sampled_from(BUTTON_IDS),
    ),
    st.builds(
        lambda t: Inbound(InboundKind.TEXT, T0, text=t),
        st.sampled_from(["quay lại", "/dung", "nhận tin trở lại", "kiểm tra tin nhắn", "giấy tờ", "mã OTP 123456"]),
    ),
    st.just(Inbound(InboundKind.START, T0)),
    st.just(Inbound(InboundKind.OTHER, T0)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(inbounds, max_size=25))
def test_any_sequence_of_inbounds_leaves_a_valid_state(shipped: Catalog, sequence: list[Inbound]) -> None:
    state = ConversationState()
    for inbound in sequence:
        outcome = advance(shipped, state, inbound)
        assert outcome.replies or outcome.handoff, inbound
        for reply in outcome.replies:  # stored as JSON in the outbox, read back by the sender
            assert reply.to_dict() == asdict(reply)
            assert Reply.from_dict(json.loads(json.dumps(reply.to_dict()))) == reply
        state = outcome.state
        if state.mode is not Mode.MENU:
            assert shipped.step(state.module, state.step) is not None
        assert all(shipped.step(state.module, s) for s in state.history)
        assert ConversationState.from_dict(state.to_dict()) == state
