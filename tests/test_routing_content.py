"""routing.yaml and scam_check.yaml are content: checked with file:line errors like the modules."""

from __future__ import annotations

import shutil
from pathlib import Path

from content import read_content
from flows.catalog import check_content
from flows.text import exact_match
from tests.conftest import make_content


def broken(tmp_path: Path, name: str, old: str, new: str) -> list[str]:
    content = make_content(tmp_path)
    path = content / name
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return [str(e) for e in check_content(read_content(content))]


def test_routing_problems_are_reported_at_their_line(tmp_path: Path) -> None:
    errors = broken(tmp_path, "routing.yaml", "  ko: khong\n", "  ko: khong\n  '???': khong\n")
    assert any(e.startswith("content/routing.yaml:") and "abbreviations: '???' is empty" in e for e in errors), errors
    errors = broken(tmp_path / "b", "routing.yaml", "out_of_scope:", "out_of_scop:")
    assert any("routing.yaml" in e and "out_of_scop" in e for e in errors), errors


def test_every_scam_sign_needs_an_explanation_and_phrases(tmp_path: Path) -> None:
    errors = broken(tmp_path, "scam_check.yaml", "  shortener:\n", "  shortened:\n")
    assert any("flags: 'shortener' is missing" in e for e in errors), errors
    errors = broken(tmp_path / "b", "scam_check.yaml", "\nflags:\n", '\nflags:\n  extra:\n    explain: "Giải thích"\n')
    assert any("scam_check.yaml:" in e and "flags: 'extra' has no phrases" in e for e in errors), errors


def test_routing_files_are_required(tmp_path: Path) -> None:
    content = make_content(tmp_path)
    (content / "routing.yaml").unlink()
    shutil.move(content / "scam_check.yaml", tmp_path / "elsewhere.yaml")
    errors = [str(e) for e in check_content(read_content(content))]
    assert "content/routing.yaml:0: file is missing" in errors
    assert "content/scam_check.yaml:0: file is missing" in errors


def test_exact_match_compares_folded_text() -> None:
    choices = {"a": ["Nhận được tin nhắn"], "b": ["xong"]}
    assert exact_match("nhan duoc tin nhan", choices) == "a"
    assert exact_match("Xong!", choices) == "b"
    assert exact_match("xong roi", choices) is None
    assert exact_match("  ", choices) is None
