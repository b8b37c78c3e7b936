"""The labelled evaluation set: at least 90% top-1 in every writing style (see bench/match_accuracy.py)."""

from __future__ import annotations

from collections import Counter

from bench.match_accuracy import STYLES, accuracy, evaluate, load_examples
from flows.catalog import Catalog
from flows.router import OUT_OF_SCOPE

TARGET = 0.90


def test_the_eval_set_is_big_varied_and_labelled_with_real_destinations(shipped: Catalog) -> None:
    examples = load_examples()
    assert len(examples) >= 220
    assert len({e.text for e in examples}) == len(examples), "duplicate messages"
    styles = Counter(e.style for e in examples)
    assert set(styles) == set(STYLES)
    assert min(styles.values()) >= 30
    known = {m for m in shipped.modules} | {"scam_check", "menu", "back", "help", "human", "stop", OUT_OF_SCOPE}
    assert {e.dest for e in examples} == known


def test_top1_accuracy_is_at_least_90_percent_in_every_style(shipped: Catalog) -> None:
    results = evaluate(shipped, load_examples())
    by_style = accuracy(results, "style")
    wrong = [
        f"[{r.example.style}] {r.example.dest} <- {r.predicted}: {r.example.text}" for r in results if not r.correct
    ]
    low = {style: f"{right}/{total}" for style, (right, total) in by_style.items() if right / total < TARGET}
    assert not low, "\n".join([str(low), *wrong])
