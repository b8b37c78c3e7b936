"""Routing free text to where the person wants to go.

Destinations are the modules ("mod:<id>"), the global commands (menu, back,
help, human, stop, subscribe), the scam-message check and "out_of_scope".
Each has phrases. After the :class:`~flows.normalize.Normalizer` has expanded
chat spellings and fixed typos, the router weighs the words and word pairs a
message shares with each destination's phrases, like a small search engine:

- a feature (content word, or pair of adjacent words) weighs more the fewer
  destinations use it; a pair of content words weighs double, a pair with a
  filler word ("cac lenh") half;
- a feature counts in proportion to how much of its best phrase the message
  covers: "dang nhap" alone is weak evidence for "dang nhap dich vu cong",
  "vneid" is full evidence for "vneid";
- a module's own texts add a little background evidence, capped;
- navigation commands (menu, back, help, stop...) are what short messages
  say: in a long message their evidence is scaled down.

All of it is precomputed once per catalog; routing a message is a few dict look-ups.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from flows.normalize import Normalizer, slash_command
from flows.text import fold

OUT_OF_SCOPE = "out_of_scope"
SCALE = 2.5  # raw evidence at which the score is 50
CONFIDENT = 50.0  # go straight there at or above this score...
MARGIN = 0.75  # ...when the runner-up has at most this share of the best raw evidence
FLOOR = 30.0  # below this nothing is suggested: "I did not understand"
SUGGESTIONS = 3
PAIR = 2.0  # weight of a pair of content words ("gap nguoi") relative to one word
FILLER_PAIR = 1.0  # weight of a pair with one filler word ("cac lenh")
BACKGROUND = 0.25  # weight of a module's own texts relative to its phrases
BACKGROUND_CAP = 1.0  # at most this much raw evidence from them
BRIEF_WORDS = 8  # brief destinations lose evidence beyond this many content words


class RouteKind(StrEnum):
    """What the engine should do with a message."""

    GO = "go"  # one destination, confidently
    SUGGEST = "suggest"  # unsure: offer the best few
    OUT_OF_SCOPE = "out_of_scope"  # a topic the bot does not cover
    UNKNOWN = "unknown"  # nothing close: say so honestly


@dataclass(frozen=True)
class Scored:
    """A destination and how well a message fits it (0-100)."""

    destination: str
    score: float


@dataclass(frozen=True)
class Route:
    """The routing decision for one message, with the ranking behind it."""

    kind: RouteKind
    ranked: tuple[Scored, ...]

    @property
    def destination(self) -> str:
        """Where to go for GO and OUT_OF_SCOPE; the best guess otherwise ("" if none)."""
        return self.ranked[0].destination if self.ranked else ""

    def suggestions(self, limit: int = SUGGESTIONS) -> tuple[str, ...]:
        """The best in-scope destinations worth offering as buttons."""
        found = [s.destination for s in self.ranked if s.destination != OUT_OF_SCOPE and s.score >= FLOOR]
        return tuple(found[:limit])


@dataclass(frozen=True)
class _Phrase:
    destination: str
    total: float  # the summed weight of all its features


@dataclass(frozen=True)
class _Reading:
    """A message as features, and how many content words it has."""

    features: frozenset[str]
    length: int


@dataclass(frozen=True)
class Router:
    """Scores messages against every destination's phrases (see the module docstring)."""

    normalizer: Normalizer
    fillers: frozenset[tuple[str, ...]]
    longest_filler: int
    phrases: tuple[_Phrase, ...] = ()
    index: Mapping[str, tuple[tuple[int, float], ...]] = field(default_factory=dict)  # feature -> (phrase, w)
    commands: Mapping[str, str] = field(default_factory=dict)  # a message that is exactly a command phrase
    slash: Mapping[str, str] = field(default_factory=dict)  # "/menu" -> "menu"
    background: Mapping[str, tuple[tuple[str, float], ...]] = field(default_factory=dict)  # feature -> (dest, w)
    brief: frozenset[str] = frozenset()

    @classmethod
    def build(
        cls,
        destinations: Mapping[str, Iterable[str]],
        normalizer: Normalizer,
        fillers: Iterable[str],
        commands: Iterable[str] = (),
        documents: Mapping[str, Iterable[str]] | None = None,
        brief: Iterable[str] = (),
    ) -> Router:
        """Index every destination's phrases.

        ``commands``: destinations a message can name exactly ("dừng nhận tin");
        ``documents``: a module's own texts, weak background evidence;
        ``brief``: destinations that long messages rarely mean.
        """
        filler_set = frozenset(tuple(normalizer.rewrite(fold(f).split())) for f in fillers if fold(f))
        base = cls(normalizer, filler_set, max((len(f) for f in filler_set), default=1))
        command_ids = set(commands)
        slash: dict[str, str] = {}
        exact: dict[str, str] = {}
        parsed: list[tuple[str, frozenset[str]]] = []
        for destination, phrases in destinations.items():
            for phrase in phrases:
                if command := slash_command(phrase):
                    slash[command] = destination
                    continue
                words = normalizer.rewrite(fold(phrase).split())
                if destination in command_ids and words:
                    exact.setdefault(" ".join(words), destination)
                if features := base._read(words).features:
                    parsed.append((destination, features))
        weight = base._weights(parsed, len(destinations))
        index: dict[str, list[tuple[int, float]]] = defaultdict(list)
        kept: list[_Phrase] = []
        for destination, features in parsed:
            total = sum(weight[f] for f in features)
            if total <= 0:
                continue  # only words every destination uses
            for feature in features:
                if weight[feature] > 0:
                    index[feature].append((len(kept), weight[feature]))
            kept.append(_Phrase(destination, total))
        return cls(
            normalizer,
            filler_set,
            base.longest_filler,
            tuple(kept),
            {f: tuple(entries) for f, entries in index.items()},
            exact,
            slash,
            base._background(documents or {}),
            frozenset(brief),
        )

    # --- reading -----------------------------------------------------------------------------

    def _read(self, words: list[str]) -> _Reading:
        """Content words and adjacent word pairs (a pair needs one content word)."""
        mask = self._mask(words)
        if all(mask):  # only fillers ("bạn giúp được gì"): then they are the meaning
            mask = [False] * len(words)
        found = {w for w, filler in zip(words, mask, strict=True) if not filler}
        length = len(found)
        for i in range(len(words) - 1):
            if not (mask[i] and mask[i + 1]):
                found.add(f"{words[i]} {words[i + 1]}")
        return _Reading(frozenset(found), length)

    def _mask(self, words: list[str]) -> list[bool]:
        """True where a word is part of a filler phrase ("nhu the nao", "a", "oi")."""
        mask = [False] * len(words)
        i = 0
        while i < len(words):
            for size in range(min(self.longest_filler, len(words) - i), 0, -1):
                if tuple(words[i : i + size]) in self.fillers:
                    mask[i : i + size] = [True] * size
                    i += size
                    break
            else:
                i += 1
        return mask

    def _weights(self, parsed: list[tuple[str, frozenset[str]]], count: int) -> dict[str, float]:
        owners: dict[str, set[str]] = defaultdict(set)
        for destination, features in parsed:
            for feature in features:
                owners[feature].add(destination)
        return {f: math.log(count / len(ds)) * self._kind_weight(f) for f, ds in owners.items()}

    def _kind_weight(self, feature: str) -> float:
        if " " not in feature:
            return 1.0
        first, second = feature.split(" ")
        return FILLER_PAIR if (first,) in self.fillers or (second,) in self.fillers else PAIR

    def _background(self, documents: Mapping[str, Iterable[str]]) -> dict[str, tuple[tuple[str, float], ...]]:
        owners: dict[str, set[str]] = defaultdict(set)
        for destination, texts in documents.items():
            for text in texts:
                for feature in self._read(self.normalizer.rewrite(fold(text).split())).features:
                    owners[feature].add(destination)
        count = len(documents)
        return {
            f: tuple((d, BACKGROUND * math.log(count / len(ds))) for d in sorted(ds))
            for f, ds in owners.items()
            if len(ds) < count
        }

    # --- routing -----------------------------------------------------------------------------

    def command(self, text: str) -> str | None:
        """The command a message is exactly ("/dung", "dừng nhận tin"), else None."""
        slash = slash_command(text)
        if slash:
            return self.slash.get(slash)
        return self.commands.get(" ".join(self.normalizer.words(text)))

    def rank(self, text: str) -> tuple[Scored, ...]:
        """Every destination the message shares anything with, best first."""
        return _ranked(self._evidence(self._read(self.normalizer.words(text))))

    def route(self, text: str) -> Route:
        """Decide: go, suggest, out of scope, or unknown."""
        slash = slash_command(text)
        words = self.normalizer.words(text)
        command = self.slash.get(slash) if slash else self.commands.get(" ".join(words))
        if command:
            return Route(RouteKind.GO, (Scored(command, 100.0),))
        raw = self._evidence(self._read(words))
        ranked = _ranked(raw)
        if not ranked or ranked[0].score < FLOOR:
            return Route(RouteKind.UNKNOWN, ranked)
        best = ranked[0]
        runner_up = raw[ranked[1].destination] if len(ranked) > 1 else 0.0
        clear = best.score >= CONFIDENT and runner_up <= MARGIN * raw[best.destination]
        if best.destination == OUT_OF_SCOPE:
            return Route(RouteKind.OUT_OF_SCOPE if clear else RouteKind.UNKNOWN, ranked)
        return Route(RouteKind.GO if clear else RouteKind.SUGGEST, ranked)

    def explain(self, text: str) -> dict[str, list[tuple[str, float]]]:
        """What each destination matched: features with their counted weight (for content editors)."""
        found: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for feature, destination, counted in self._matches(self._read(self.normalizer.words(text)).features):
            found[destination].append((feature, round(counted, 2)))
        return dict(found)

    def _evidence(self, reading: _Reading) -> dict[str, float]:
        raw: dict[str, float] = defaultdict(float)
        for _, destination, counted in self._matches(reading.features):
            raw[destination] += counted
        extra: dict[str, float] = defaultdict(float)
        for feature in reading.features:
            for destination, weight in self.background.get(feature, ()):
                extra[destination] += weight
        for destination, weight in extra.items():
            raw[destination] += min(weight, BACKGROUND_CAP)
        if reading.length > BRIEF_WORDS:
            for destination in self.brief.intersection(raw):
                raw[destination] *= BRIEF_WORDS / reading.length
        return dict(raw)

    def _matches(self, all_features: frozenset[str]) -> list[tuple[str, str, float]]:
        """(feature, destination, weight x best coverage of a phrase of that destination holding it)."""
        features = sorted(f for f in all_features if f in self.index)
        covered: dict[int, float] = defaultdict(float)
        for feature in features:
            for number, weight in self.index[feature]:
                covered[number] += weight
        found = []
        for feature in features:
            best: dict[str, tuple[float, float]] = {}
            for number, weight in self.index[feature]:
                phrase = self.phrases[number]
                coverage = covered[number] / phrase.total
                if coverage > best.get(phrase.destination, (0.0, 0.0))[0]:
                    best[phrase.destination] = (coverage, weight)
            found += [(feature, d, weight * coverage) for d, (coverage, weight) in best.items()]
        return found


def _ranked(raw: Mapping[str, float]) -> tuple[Scored, ...]:
    """Destinations by evidence, as 0-100 scores (50 at ``SCALE``)."""
    ordered = sorted(raw.items(), key=lambda item: (-item[1], item[0]))
    return tuple(Scored(d, round(100 * r / (r + SCALE), 1)) for d, r in ordered)
