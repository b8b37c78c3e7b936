"""The terminal chat as a real process: a full module, crashes, and the export."""

from __future__ import annotations

import asyncio
import csv
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

from sqlalchemy import select

from bot.app import open_app
from bot.channels.console import CHANNEL, SEPARATOR
from bot.community.consent import AGREE
from bot.config import Settings
from bot.dispatcher import Envelope
from flows.catalog import Catalog
from flows.types import Inbound, InboundKind
from storage.models import OutboxMessage
from tests.helpers import T0, as_numbers

HOCVUSO = str(Path(sys.executable).parent / "hocvuso")
# First contact in the terminal: "1" agrees to the consent question, "1" picks the demo commune's first village.
AGREE_AND_VILLAGE = ["1", "1"]


def env_for(data_dir: Path) -> dict[str, str]:
    return {**os.environ, "HOCVUSO_DATA_DIR": str(data_dir), "HOCVUSO_DATABASE_URL": ""}


def chat(data_dir: Path, stdin: str) -> str:
    done = subprocess.run(
        [HOCVUSO, "chat"], input=stdin, capture_output=True, text=True, env=env_for(data_dir), timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def export_rows(data_dir: Path, out: Path) -> list[dict[str, str]]:
    done = subprocess.run(
        [HOCVUSO, "export", "--out", str(out)], capture_output=True, text=True, env=env_for(data_dir), check=False
    )
    assert done.returncode == 0, done.stderr
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "CSV must start with a UTF-8 BOM for Excel"
    return list(csv.DictReader(raw.decode("utf-8-sig").splitlines()))


def test_a_resident_completes_vneid_in_the_terminal_and_the_export_shows_it(shipped: Catalog, tmp_path: Path) -> None:
    data = tmp_path / "data"
    typed = [*AGREE_AND_VILLAGE, "cai vneid ntn", *as_numbers(shipped, "vneid")]
    first_step = shipped.step("vneid", shipped.modules["vneid"].start)
    output = chat(data, "\n".join(typed) + "\n")
    assert shipped.say("consent_prompt").splitlines()[0] in output
    done_step = next(s for s in shipped.modules["vneid"].steps if s.complete)
    assert first_step.text.strip() in output
    assert done_step.text.strip() in output
    for step in shipped.modules["vneid"].steps:
        if step.check:
            assert step.check.right.strip() in output
    rows = export_rows(data, tmp_path / "log.csv")
    labels = shipped.messages.labels
    completed = [r for r in rows if r[labels["export.kind"]] == "completed"]
    assert len(completed) == 1
    assert completed[0][labels["export.module"]] == "vneid"
    assert completed[0][labels["export.channel"]] == "console"
    assert completed[0][labels["export.person"]].startswith("p-")
    assert {r[labels["export.person"]] for r in rows} == {completed[0][labels["export.person"]]}
    assert "local" not in (tmp_path / "log.csv").read_text(encoding="utf-8-sig")


class Reader:
    """Reads a process's stdout in a thread so the test can wait for a text with a timeout."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen = ""
        self.thread = threading.Thread(target=self._pump, args=(process,), daemon=True)
        self.thread.start()

    def _pump(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.put(line)

    def wait_for(self, needle: str, then: str = "", timeout: float = 30.0) -> None:
        """Wait until ``needle`` has been printed (followed by ``then``, if given)."""
        while needle not in self.seen or then not in self.seen[self.seen.index(needle) :]:
            self.seen += self.lines.get(timeout=timeout)


def test_sigkill_mid_flow_then_restart_resumes_at_the_same_step(shipped: Catalog, tmp_path: Path) -> None:
    data = tmp_path / "data"
    process = subprocess.Popen(
        [HOCVUSO, "chat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env_for(data)
    )
    reader = Reader(process)
    try:
        reader.wait_for(shipped.say("consent_prompt").splitlines()[0])
        assert process.stdin is not None
        intro = shipped.step("vneid", "intro")
        process.stdin.write("\n".join([*AGREE_AND_VILLAGE, "cai vneid ntn", "1"]) + "\n")
        process.stdin.flush()
        target = shipped.step("vneid", intro.buttons[0].goto)
        reader.wait_for(target.text.strip(), then=SEPARATOR)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        reader.thread.join(timeout=30)
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()
    assert process.returncode == -signal.SIGKILL
    output = chat(data, "")
    # Either the resume screen, or (killed between printing and marking it sent) the in-flight reply
    # sent again: the person sees the step they were on, once.
    assert output.count(target.text.strip()) == 1
    assert shipped.say("welcome").splitlines()[0] not in output
    # And it goes on from there: the first button of that step leads to its target.
    output = chat(data, "1\n")
    assert shipped.step("vneid", target.buttons[0].goto).text.strip() in output


def test_a_reply_committed_but_not_sent_is_sent_after_restart_once(shipped: Catalog, tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = Settings.from_env(env_for(data))

    async def commit_without_sending() -> None:
        async with open_app(settings) as app:  # no transport: exactly what a crash right after commit leaves
            for event_id, inbound in [
                ("s", Inbound(InboundKind.START, T0)),
                ("a", Inbound(InboundKind.BUTTON, T0, button_id=AGREE)),
                ("t", Inbound(InboundKind.TEXT, T0, text="cai vneid ntn")),  # at the village question
            ]:
                assert await app.dispatcher.handle(Envelope(CHANNEL, event_id, "local", inbound))

    asyncio.run(commit_without_sending())
    intro = shipped.step("vneid", "intro").text.strip()
    first = chat(data, "")
    assert first.count(intro) == 1
    assert shipped.say("welcome").splitlines()[0] in first
    second = chat(data, "")
    assert second.startswith(shipped.say("welcome_back"))  # a resume screen, not a re-send
    assert shipped.say("welcome").splitlines()[0] not in second

    async def outbox_statuses() -> list[str]:
        async with open_app(settings) as app, app.sessions() as session:
            return list((await session.scalars(select(OutboxMessage.status))).all())

    # the consent question, thanks with the village question, the module's first step: each sent once
    assert asyncio.run(outbox_statuses()) == ["sent"] * 3


def test_bad_input_in_the_terminal_is_answered_and_nothing_is_lost(shipped: Catalog, tmp_path: Path) -> None:
    data = tmp_path / "data"
    lines = [*AGREE_AND_VILLAGE, "cai vneid ntn", "", "x" * 10_000, "😀🙏", "\x07\x1b", "42", "1"]
    output = chat(data, "\n".join(lines) + "\n")
    for key in ("empty_input", "not_understood"):
        assert shipped.say(key) in output
    assert shipped.say("too_long", max=1000) in output
    assert shipped.say("number_out_of_range", max=5) in output
    assert shipped.step("vneid", shipped.step("vneid", "intro").buttons[0].goto).text.strip() in output
