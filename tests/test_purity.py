"""flows/ stays a pure engine: no I/O libraries, no app packages, no clock."""

from __future__ import annotations

import ast
from pathlib import Path

import flows

FORBIDDEN_MODULES = {"telegram", "aiohttp", "sqlalchemy", "apscheduler", "bot", "storage", "asyncio", "requests"}
FORBIDDEN_CALLS = {
    *("now", "utcnow", "today", "time", "monotonic", "perf_counter"),  # the clock comes in the inbound
    *("open", "read_text", "read_bytes", "write_text", "glob", "iterdir", "urlopen", "getenv"),  # no I/O
}
FLOWS_DIR = Path(flows.__file__).parent


def violations(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in FORBIDDEN_MODULES:
            found.append(node.module)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in FORBIDDEN_CALLS:
                found.append(f"{name}()")
    return found


def test_the_checker_catches_what_it_should() -> None:
    bad = "import sqlalchemy\nfrom bot.app import App\nimport datetime\nx = datetime.datetime.now()\nopen('f')\n"
    assert violations(bad) == ["sqlalchemy", "bot.app", "now()", "open()"]
    assert violations("from flows.types import Reply\nimport re\n") == []


def test_flows_package_is_pure() -> None:
    files = sorted(FLOWS_DIR.glob("*.py"))
    assert files, "flows/ has no modules?"
    problems = {f.name: v for f in files if (v := violations(f.read_text(encoding="utf-8")))}
    assert problems == {}
