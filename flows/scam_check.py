"""Red flags in a message a resident pastes ("Kiểm tra tin nhắn").

:func:`scan` only ever lists warning signs; finding none is never a verdict
that a message is safe (the engine says so every time).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from rapidfuzz import fuzz

from flows.model import ScamSpec
from flows.normalize import Normalizer
from flows.text import clean, fold

# Signs found from the addresses in a message rather than from phrases.
LINK, LOOKALIKE, ODD_DOMAIN, SHORTENER = "link", "lookalike_domain", "odd_domain", "shortener"
DOMAIN_FLAGS = (LOOKALIKE, ODD_DOMAIN, SHORTENER, LINK)

_DOMAIN = re.compile(r"(?<![\w@.-])(https?://)?((?:\w(?:[\w-]*\w)?\.)+([a-z]{2,12}))(?![\w-])", re.IGNORECASE)
_NOT_WORD = re.compile(r"[^\w]+")
SHORT_BRAND = 4  # brands this short must be a whole part of the address ("acb"), longer ones may be inside
FUZZY_BRAND = 85.0  # "vietconbank" is close enough to "vietcombank"
FUZZY_DISGUISED = 75.0  # an address in other letters that resembles a known name


def _has_marks(text: str) -> bool:
    """True if the text is written with Vietnamese diacritics."""
    return any(ord(ch) > 127 and ch.isalpha() for ch in text)


@dataclass(frozen=True)
class ScamSignals:
    """The content of ``scam_check.yaml``, prepared for fast scanning."""

    order: tuple[str, ...]  # flag keys in content order
    official: tuple[str, ...]
    short_brands: frozenset[str]
    long_brands: tuple[str, ...]
    odd_tlds: frozenset[str]
    known_tlds: frozenset[str]
    shorteners: frozenset[str]
    plain: Mapping[str, tuple[str, ...]]  # flag -> " padded phrases " without diacritics
    marked: Mapping[str, tuple[str, ...]]  # flag -> " padded phrases " that need their diacritics

    @classmethod
    def build(cls, spec: ScamSpec, normalizer: Normalizer) -> ScamSignals:
        plain: dict[str, tuple[str, ...]] = {}
        marked: dict[str, tuple[str, ...]] = {}
        for key, flag in spec.flags.items():
            lowered = [_NOT_WORD.sub(" ", clean(p).lower()).strip() for p in flag.phrases]
            marked[key] = tuple(f" {p} " for p in lowered if p and _has_marks(p))
            plain[key] = tuple(
                f" {' '.join(normalizer.rewrite(fold(p).split()))} " for p in lowered if p and not _has_marks(p)
            )
        brands = [b.lower() for b in spec.brands]
        return cls(
            order=tuple(spec.flags),
            official=tuple(d.lower().removeprefix("www.") for d in spec.official_domains),
            short_brands=frozenset(b for b in brands if len(b) <= SHORT_BRAND),
            long_brands=tuple(b for b in brands if len(b) > SHORT_BRAND),
            odd_tlds=frozenset(t.lower().lstrip(".") for t in spec.odd_tlds),
            known_tlds=frozenset(t.lower().lstrip(".") for t in spec.known_tlds),
            shorteners=frozenset(s.lower() for s in spec.shorteners),
            plain=plain,
            marked=marked,
        )


def scan(text: str, signals: ScamSignals, normalizer: Normalizer) -> tuple[str, ...]:
    """The keys of every warning sign in ``text``, in content order."""
    cleaned = clean(text)
    found = _domain_flags(cleaned.lower(), signals)
    words = f" {' '.join(normalizer.words(cleaned))} "
    lowered = f" {_NOT_WORD.sub(' ', cleaned.lower()).strip()} "
    with_marks = _has_marks(cleaned)
    for key in signals.order:
        if any(p in words for p in signals.plain.get(key, ())) or any(
            p in (lowered if with_marks else words) for p in _marked_as(signals, key, with_marks)
        ):
            found.add(key)
    if found & {LOOKALIKE, ODD_DOMAIN, SHORTENER}:
        found.discard(LINK)  # the more telling sign about the link says it already
    return tuple(key for key in signals.order if key in found)


def _marked_as(signals: ScamSignals, key: str, with_marks: bool) -> tuple[str, ...]:
    """Phrases with diacritics: as written for a message with diacritics, folded for one without."""
    phrases = signals.marked.get(key, ())
    return phrases if with_marks else tuple(f" {fold(p)} " for p in phrases)


def _domain_flags(lowered: str, signals: ScamSignals) -> set[str]:
    found: set[str] = set()
    for match in _DOMAIN.finditer(lowered):
        scheme, domain, tld = match.group(1), match.group(2).removeprefix("www."), match.group(3)
        if not (scheme or match.group(2).startswith("www.") or tld in signals.known_tlds | signals.odd_tlds):
            continue
        found.add(LINK)
        if domain in signals.shorteners:
            found.add(SHORTENER)
            continue
        if tld in signals.odd_tlds:
            found.add(ODD_DOMAIN)
        if _looks_alike(domain, signals):
            found.add(LOOKALIKE)
    return found


def _looks_alike(domain: str, signals: ScamSignals) -> bool:
    """Uses an official-sounding name but is not an official address."""
    parts = re.split(r"[.-]", domain)
    if not domain.isascii():  # letters with diacritics or from other alphabets: "vnеid" with a Cyrillic "е"
        folded = [fold(p) for p in parts]
        names = [*signals.long_brands, *signals.official]
        return any(fuzz.ratio(p, name) >= FUZZY_DISGUISED for p in (*folded, ".".join(folded)) for name in names)
    if any(domain == o or domain.endswith(f".{o}") for o in signals.official):
        return False
    if signals.short_brands.intersection(parts):
        return True
    squashed = "".join(parts)
    if any(brand in squashed for brand in signals.long_brands):
        return True
    long_parts = [part for part in parts if len(part) > SHORT_BRAND]
    return any(fuzz.ratio(part, brand) >= FUZZY_BRAND for part in long_parts for brand in signals.long_brands)
