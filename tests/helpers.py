"""Test helpers: drive the engine, plan a path through a module."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from collections import deque
from pathlib import Path

from content import CONTENT_DIR
from flows.catalog import Catalog
from flows.engine import advance, screen
from flows.types import ConversationState, Inbound, InboundKind, Outcome

T0 = dt.datetime(2026, 11, 2, 1, 30, tzinfo=dt.UTC)


class FakeClock:
    """A clock the test moves by hand (callable like storage.clock.utc_now)."""

    def __init__(self, now: dt.datetime = T0) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def content_at_any_hour(root: Path) -> Path:
    """A copy of the shipped content without quiet hours, in ``root``: bulk messages go out at any hour.

    For the tests and benches that send broadcasts: what they check must not depend on the time of day
    they run at. Quiet hours have tests of their own, under a fixed clock.
    """
    content = root / "content"
    shutil.copytree(CONTENT_DIR, content, ignore=shutil.ignore_patterns("__pycache__", "*.py"), dirs_exist_ok=True)
    community = content / "community.yaml"
    changed, found = re.subn(
        r"^quiet_hours:.*$", 'quiet_hours: {start: "00:00", end: "00:00"}', community.read_text("utf-8"), flags=re.M
    )
    assert found == 1, f"no quiet_hours line in {community}"
    community.write_text(changed, encoding="utf-8")
    return content


def text(value: str) -> Inbound:
    return Inbound(InboundKind.TEXT, T0, text=value)


def tap(button_id: str) -> Inbound:
    return Inbound(InboundKind.BUTTON, T0, button_id=button_id)


def run(catalog: Catalog, inbounds: list[Inbound], state: ConversationState | None = None) -> list[Outcome]:
    """Feed inbounds one after another; return every outcome."""
    outcomes = []
    state = state or ConversationState()
    for inbound in inbounds:
        outcome = advance(catalog, state, inbound)
        outcomes.append(outcome)
        state = outcome.state
    return outcomes


def completion_path(catalog: Catalog, module_id: str) -> list[str]:
    """Shortest list of button ids from the module's start to a completion step, answering checks right."""
    module = catalog.modules[module_id]
    steps = {s.id: s for s in module.steps}
    previous: dict[str, tuple[str, str] | None] = {module.start: None}
    queue = deque([module.start])
    while queue:
        current = queue.popleft()
        step = steps[current]
        if step.complete:
            path: list[str] = []
            node = current
            while previous[node] is not None:
                node, button = previous[node]  # type: ignore[misc]
                path.append(button)
            return path[::-1]
        moves = [(b.id, b.goto) for b in step.buttons]
        if step.check:
            moves += [(o.id, step.check.next) for o in step.check.options if o.correct]
        for button, target in moves:
            if target not in previous:
                previous[target] = (current, button)
                queue.append(target)
    raise AssertionError(f"module {module_id} cannot be completed")


def as_numbers(catalog: Catalog, module_id: str) -> list[str]:
    """The completion path as the numbers a person would type on a text-only channel."""
    state = advance(catalog, ConversationState(), tap(f"mod:{module_id}")).state
    typed = []
    for button_id in completion_path(catalog, module_id):
        offered = [b.id for b in screen(catalog, state).buttons]
        typed.append(str(offered.index(button_id) + 1))
        state = advance(catalog, state, tap(button_id)).state
    return typed
