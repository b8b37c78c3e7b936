"""Free-text routing: top-1 accuracy per writing style and per destination, and time per message.

    python bench/match_accuracy.py [--eval tests/data/routing_eval.yaml] [--content DIR] [--repeat 20]

The prediction is what the engine would act on: the destination it goes to or
suggests first, "out_of_scope", or "unknown" (below the floor: "I did not
understand"). For an out-of-scope message, "unknown" also counts as right:
neither routes the person anywhere (the strict count is printed too).
Timing covers ``router.route`` on every message (normalising, typo fixing,
scoring every destination: the match, target p99 <= 2 ms), and the whole
``advance`` (secret check, screen choices, routing, reply) for reference.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from content import CONTENT_DIR, read_content
from flows.catalog import MODULE_BUTTON_PREFIX, Catalog, load_catalog
from flows.engine import advance
from flows.router import OUT_OF_SCOPE, RouteKind
from flows.types import ConversationState, Inbound, InboundKind

EVAL_FILE = ROOT / "tests" / "data" / "routing_eval.yaml"
STYLES = ("diacritics", "no_diacritics", "abbreviations", "typos", "long_polite", "mixed_english")
UNKNOWN = "unknown"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Example:
    """One labelled message."""

    text: str
    style: str
    dest: str  # module id, command key, scam_check or out_of_scope


@dataclass(frozen=True)
class Result:
    example: Example
    predicted: str  # destination id as in the eval file, out_of_scope or unknown

    @property
    def correct(self) -> bool:
        return self.strict or (self.example.dest == OUT_OF_SCOPE and self.predicted == UNKNOWN)

    @property
    def strict(self) -> bool:
        return self.predicted == self.example.dest


def load_examples(path: Path = EVAL_FILE) -> list[Example]:
    """The labelled messages of an eval file."""
    return [Example(str(item["text"]), item["style"], item["dest"]) for item in yaml.safe_load(path.read_text("utf-8"))]


def predict(catalog: Catalog, text: str) -> str:
    """What the engine would do with ``text`` from the menu, as an eval-file label."""
    route = catalog.router.route(text)
    if route.kind is RouteKind.UNKNOWN:
        return UNKNOWN
    if route.kind is RouteKind.OUT_OF_SCOPE:
        return OUT_OF_SCOPE
    return route.destination.removeprefix(MODULE_BUTTON_PREFIX)


def evaluate(catalog: Catalog, examples: list[Example]) -> list[Result]:
    return [Result(e, predict(catalog, e.text)) for e in examples]


def accuracy(results: list[Result], key: str) -> dict[str, tuple[int, int]]:
    """(right, total) per style or per destination."""
    table: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in results:
        group = r.example.style if key == "style" else r.example.dest
        table[group][0] += r.correct
        table[group][1] += 1
    return {k: (v[0], v[1]) for k, v in table.items()}


def timings(call: Callable[[str], object], examples: list[Example], repeat: int) -> list[float]:
    """Milliseconds per call, every message ``repeat`` times, after a warm-up pass."""
    for e in examples:
        call(e.text)
    found = []
    for _ in range(repeat):
        for e in examples:
            start = time.perf_counter()
            call(e.text)
            found.append((time.perf_counter() - start) * 1000)
    return sorted(found)


def _percentile(sorted_ms: list[float], share: float) -> float:
    return sorted_ms[int(share * (len(sorted_ms) - 1))]


def _table(title: str, rows: dict[str, tuple[int, int]], order: list[str]) -> None:
    print(f"\n{title:<22} {'right':>6} {'total':>6} {'top-1':>7}")
    for name in order:
        right, total = rows[name]
        print(f"{name:<22} {right:>6} {total:>6} {100 * right / total:>6.1f}%")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval", type=Path, default=EVAL_FILE)
    parser.add_argument("--content", type=Path, default=CONTENT_DIR)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--errors", action="store_true", help="list every wrong prediction")
    args = parser.parse_args(argv)
    catalog = load_catalog(read_content(args.content))
    examples = load_examples(args.eval)
    results = evaluate(catalog, examples)

    by_style = accuracy(results, "style")
    _table("style", by_style, [s for s in STYLES if s in by_style])
    by_dest = accuracy(results, "dest")
    _table("destination", by_dest, sorted(by_dest))
    right = sum(r.correct for r in results)
    strict = sum(r.strict for r in results)
    print(f"\nall: {right}/{len(results)} = {100 * right / len(results):.1f}%", end="")
    print(f"  (strict, 'unknown' never right: {100 * strict / len(results):.1f}%)")
    print("predictions:", dict(Counter(r.predicted for r in results).most_common()))

    step = advance(catalog, ConversationState(), Inbound(InboundKind.BUTTON, NOW, button_id="mod:vneid")).state
    calls: dict[str, Callable[[str], object]] = {
        "router.route (the match)": catalog.router.route,
        "advance, from the menu": lambda t: advance(catalog, ConversationState(), Inbound(InboundKind.TEXT, NOW, t)),
        "advance, inside a step": lambda t: advance(catalog, step, Inbound(InboundKind.TEXT, NOW, t)),
    }
    print(f"\ntime per message, {len(examples)} messages x {args.repeat}, over the full content:")
    print(f"{'':<28} {'p50':>8} {'p99':>8} {'max':>8}")
    p99 = 0.0
    for name, call in calls.items():
        times = timings(call, examples, args.repeat)
        p50, p99_here = statistics.median(times), _percentile(times, 0.99)
        p99 = p99_here if name.startswith("router") else p99
        print(f"{name:<28} {p50:>6.3f}ms {p99_here:>6.3f}ms {times[-1]:>6.3f}ms")

    if args.errors:
        print("\nwrong:")
        for r in results:
            if not r.correct:
                print(f"  [{r.example.style}] {r.example.dest} <- {r.predicted}: {r.example.text}")
    worst = min(right / total for right, total in by_style.values())
    return 0 if worst >= 0.9 and p99 <= 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
