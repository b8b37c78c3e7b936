"""`hocvuso content check`: broken content is reported with file:line, shipped content passes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from content import CONTENT_DIR, read_content
from flows.catalog import ContentInvalid, check_content, load_catalog
from tests.conftest import DATA, make_content

MINI = (DATA / "mini_module.yaml").read_text(encoding="utf-8")


def line_of(text: str, needle: str, last: bool = False) -> int:
    """1-based line of the first (or last) line containing ``needle``."""
    lines = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    return lines[-1] if last else lines[0]


def broken(old: str, new: str) -> str:
    assert old in MINI, old
    return MINI.replace(old, new, 1)


CASES = {
    "unknown target step": (
        broken("goto: b}", "goto: nowhere}"),
        "leads to unknown step 'nowhere'",
        "goto: nowhere}",
    ),
    "duplicate step id": (broken("  - id: c\n", "  - id: a\n"), "duplicate step id 'a'", "LAST:  - id: a"),
    "unreachable step": (
        broken("complete: true", 'complete: true\n  - id: lost\n    text: "X"\n    stuck: "Y"\n    complete: true'),
        "step 'lost' cannot be reached",
        "id: lost",
    ),
    "button id too long": (
        broken("id: to_b,", "id: this_button_id_is_far_too_long_for_telegram,"),
        "longer than 32 bytes",
        "this_button_id_is_far_too_long",
    ),
    "missing text": (broken('    text: "Bước A"\n', ""), "steps.0.text: Field required", "  - id: a"),
    "empty text": (broken('text: "Bước A"', 'text: "   "'), "text is empty", 'text: "   "'),
    "check without a correct answer": (
        broken('label: "Hai", correct: true}', 'label: "Hai"}'),
        "the check has no correct answer",
        "options:",
    ),
    "unknown field (typo)": (broken('    stuck: "Giải thích A"', '    stuk: "Giải thích A"'), "stuk", "stuk:"),
    "duplicate key": (broken("version: 2", "version: 2\nversion: 3"), "duplicate key 'version'", "version: 3"),
    "invalid YAML": (broken("id: mini", "id: [mini"), "not valid YAML", None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_broken_module_is_reported_at_its_line(tmp_path: Path, case: str) -> None:
    module, message, needle = CASES[case]
    errors = check_content(read_content(make_content(tmp_path, {"mini.yaml": module})))
    matching = [e for e in errors if message in e.message]
    assert matching, errors
    assert matching[0].file == "content/modules/mini.yaml"
    if needle is not None:
        last = needle.startswith("LAST:")
        assert matching[0].line == line_of(module, needle.removeprefix("LAST:"), last=last)
    with pytest.raises(ContentInvalid):
        load_catalog(read_content(make_content(tmp_path / "again", {"mini.yaml": module})))


def test_duplicate_module_ids_across_files(tmp_path: Path) -> None:
    errors = check_content(read_content(make_content(tmp_path, {"a.yaml": MINI, "b.yaml": MINI})))
    assert [str(e) for e in errors] == [
        "content/modules/b.yaml:1: duplicate module id 'mini' (also in content/modules/a.yaml)"
    ]


def test_messages_need_every_key_and_valid_templates(tmp_path: Path) -> None:
    messages = (CONTENT_DIR / "messages.yaml").read_text(encoding="utf-8")
    messages = messages.replace('  welcome_back: "Chào bạn quay lại! Mình học tiếp nhé."\n', "")
    messages = messages.replace("{{ max }} ký tự", "{{ max ký tự")
    errors = [str(e) for e in check_content(read_content(make_content(tmp_path, messages=messages)))]
    assert any("texts: 'welcome_back' is missing" in e for e in errors), errors
    assert any(e.startswith(f"content/messages.yaml:{line_of(messages, 'too_long:')}: texts.too_long") for e in errors)


def test_shipped_content_is_valid() -> None:
    assert check_content(read_content()) == []


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


def test_cli_exit_codes(tmp_path: Path) -> None:
    ok = run_cli("content", "check")
    assert ok.returncode == 0, ok.stderr
    bad_dir = make_content(tmp_path, {"mini.yaml": CASES["unknown target step"][0]})
    bad = run_cli("content", "check", str(bad_dir))
    assert bad.returncode == 1
    expected_line = line_of(CASES["unknown target step"][0], "goto: nowhere}")
    assert f"content/modules/mini.yaml:{expected_line}: step 'a' leads to unknown step 'nowhere'" in bad.stderr
