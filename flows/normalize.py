"""Reading chat-style Vietnamese: folding, chat abbreviations, English words and typos.

Everything is precomputed once (``Normalizer.build``); ``words`` is then cheap.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from itertools import pairwise

from rapidfuzz import process
from rapidfuzz.distance import OSA

from flows.text import fold

# One Vietnamese syllable written without diacritics: onset, vowels, coda.
_SYLLABLE = re.compile(r"^(?:ngh|ng|gh|gi|kh|nh|ph|th|tr|ch|qu|[bcdghklmnprstvx])?[aeiouy]{1,3}(?:ng|nh|ch|[cmnpt])?$")
_SLASH = re.compile(r"^\s*/([a-z0-9_]+)(?:@\w+)?\s*$")
_LETTERS = re.compile(r"^[a-z]+$")
MIN_CORRECTED = 3  # shorter tokens are never corrected: too many real words are that short
SHORT_MESSAGE = 4  # in a message this short, a real word in an odd pair may still be a typo
MIN_GLUED = 6  # shorter tokens are never split into several words
MAX_PIECES = 6


def is_syllable(token: str) -> bool:
    """True if ``token`` could be one Vietnamese syllable typed without diacritics."""
    return bool(_SYLLABLE.match(token))


def slash_command(text: str) -> str | None:
    """ "/menu" or "/menu@some_bot" -> "/menu"; None when the text is not a bare command."""
    match = _SLASH.match(text.lower())
    return f"/{match.group(1)}" if match else None


def _slip(typed: str, word: str) -> bool:
    """A letter left out, added or swapped ("quy"/"quay", "lia"/"lai"), not replaced by another
    ("phoi"/"phai"): a replaced letter that still makes a real word is usually a different word."""
    return len(typed) != len(word) or sorted(typed) == sorted(word)


def _split(phrase: str) -> tuple[str, ...]:
    return tuple(fold(phrase).split())


@dataclass(frozen=True)
class Normalizer:
    """Turns a message into the words it means, ready for matching."""

    rewrites: Mapping[tuple[str, ...], tuple[str, ...]]
    longest_rewrite: int
    lexicon: frozenset[str]  # real words: corrected only by context, in short messages
    vocabulary: tuple[str, ...]  # the words routing phrases use: typos are corrected towards them
    bigrams: frozenset[tuple[str, str]]  # word pairs in routing phrases, to pick a correction by context
    known_pairs: frozenset[tuple[str, str]] = frozenset()  # word pairs seen in any correct text

    @classmethod
    def build(cls, rewrites: Mapping[str, str], known_texts: Iterable[str], phrases: Iterable[str]) -> Normalizer:
        """``rewrites``: typed form -> meant words; ``known_texts``: any correct Vietnamese
        (module texts) whose words count as real; ``phrases``: what routing matches against."""
        table = {_split(k): _split(v) for k, v in rewrites.items() if _split(k)}
        syllables = frozenset(w for text in known_texts for w in fold(text).split() if is_syllable(w))
        base = cls(table, max((len(k) for k in table), default=1), syllables, (), frozenset())
        phrase_words = [base.rewrite(list(_split(p))) for p in phrases]
        for words in phrase_words:  # "dichvucong" in a phrase: also read it as "dich vu cong"
            for word in words:
                pieces = base._pieces(word) if not is_syllable(word) else None
                if pieces and (word,) not in table:
                    table[(word,)] = tuple(pieces)
        base = replace(base, rewrites=table)
        expanded = [base.rewrite(list(_split(p))) for p in phrases]
        vocabulary = sorted({w for words in expanded for w in words if _LETTERS.match(w)})
        texts = [fold(text).split() for text in known_texts]
        lexicon = {w for words in texts for w in words}
        lexicon |= set(vocabulary) | {w for words in table.values() for w in words}
        bigrams = {pair for words in expanded for pair in pairwise(words)}
        known_pairs = bigrams | {pair for words in texts for pair in pairwise(words)}
        lexicon_set, pairs = frozenset(lexicon), frozenset(known_pairs)
        return cls(table, base.longest_rewrite, lexicon_set, tuple(vocabulary), frozenset(bigrams), pairs)

    @cached_property
    def _vocabulary_set(self) -> frozenset[str]:
        return frozenset(self.vocabulary)

    def words(self, text: str) -> list[str]:
        """Folded words of ``text``, abbreviations and English expanded, typos corrected."""
        return self.rewrite(self._correct(self.rewrite(fold(text).split())))

    def rewrite(self, tokens: list[str]) -> list[str]:
        """Replace known chat forms, longest first: "quen mk" before "mk"."""
        out: list[str] = []
        i = 0
        while i < len(tokens):
            for size in range(min(self.longest_rewrite, len(tokens) - i), 0, -1):
                replacement = self.rewrites.get(tuple(tokens[i : i + size]))
                if replacement is not None:
                    out += replacement
                    i += size
                    break
            else:
                out.append(tokens[i])
                i += 1
        return out

    def _correct(self, tokens: list[str]) -> list[str]:
        out: list[str] = []
        for i, token in enumerate(tokens):
            before = out[-1] if out else ""
            after = tokens[i + 1] if i + 1 < len(tokens) else ""
            if len(token) < MIN_CORRECTED or not _LETTERS.match(token):
                out.append(token)
            elif token in self.lexicon:
                unused = len(tokens) <= SHORT_MESSAGE and token not in self._vocabulary_set
                out.append(self._in_context(token, before, after) if unused else token)
            else:
                out += self._closest(token, before, after) or [token]
        return out

    def _in_context(self, token: str, before: str, after: str) -> str:
        """A real word in a pair nobody writes ("quy lai") may be a slip for one in a known pair ("quay lai")."""
        if (before, token) in self.known_pairs or (token, after) in self.known_pairs:
            return token
        found = process.extract(token, self.vocabulary, scorer=OSA.distance, score_cutoff=1, limit=8)
        for candidate, _, _ in sorted(found, key=lambda f: f[1]):
            if _slip(token, candidate) and ((before, candidate) in self.bigrams or (candidate, after) in self.bigrams):
                return candidate
        return token

    def _closest(self, token: str, before: str, after: str) -> list[str] | None:
        """A correction for an unknown word: a near vocabulary word, or the words it glues together."""
        limit = 1 if len(token) <= 5 else 2
        found = process.extract(token, self.vocabulary, scorer=OSA.distance, score_cutoff=limit, limit=8)
        candidates = [c for c, _, _ in sorted(found, key=lambda f: f[1])]
        plausible = is_syllable(token)  # maybe a real word we do not know: only fix a clear slip
        for candidate in candidates:  # prefer a word that forms a known pair with its neighbour
            if plausible and not _slip(token, candidate):
                continue
            if (before, candidate) in self.bigrams or (candidate, after) in self.bigrams:
                return [candidate]
        if plausible:
            return None
        if candidates:
            return [candidates[0]]
        return self._pieces(token)

    def _pieces(self, token: str) -> list[str] | None:
        """Split words typed without spaces ("dichvucong") into known syllables."""
        if len(token) < MIN_GLUED or not _LETTERS.match(token):
            return None
        best: dict[int, list[str]] = {0: []}
        for end in range(1, len(token) + 1):
            for start in range(max(0, end - 7), end):
                piece = token[start:end]
                known = piece in self.lexicon and is_syllable(piece)
                if start in best and len(piece) > 1 and known and len(best[start]) < MAX_PIECES:
                    candidate = [*best[start], piece]
                    if end not in best or len(candidate) < len(best[end]):
                        best[end] = candidate
        pieces = best.get(len(token))
        return pieces if pieces and len(pieces) > 1 else None
