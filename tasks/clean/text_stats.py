"""Text statistics shared by every filter: split once per document, reuse everywhere.

`TextStats(text)` exposes lazily computed, cached views of one text: `lines`, `paragraphs`, `tokens`,
`words`, and the n-gram helpers the Gopher repetition rules need. A filter asks for what it needs; a
second filter asking for the same view gets the cached one. When the text changes (C4's line rules),
the cleaner builds a new `TextStats`.

Tokenisation replaces nltk's `word_tokenize` (what datatrove uses, which needs a punkt download) by one
regex: a word is a run of word characters, optionally joined by `'`, `’`, `-` or `.` (`don't`, `e-mail`,
`3.14`, `U.S`), and every other non-space character is a token of its own. `words` are the tokens that are
not a single ASCII punctuation character (datatrove's `w not in string.punctuation`).

Word n-grams are hashed, not joined into strings: each token gets Python's 64-bit string hash, an n-gram's
hash is the polynomial `h(n) = h(n-1) * P + token` in uint64 arithmetic (numpy, vectorised), and its
character length (`" ".join` of its tokens) comes from a cumulative sum. Collisions among a document's
n-grams are negligible (about N^2 / 2^64). On documents with more than `NGRAM_MAX_TOKENS` tokens the n-gram
rules look at the first `NGRAM_MAX_TOKENS` tokens only and divide by the characters those tokens span, which
bounds a 20 MB document to well under a second of n-gram work.
"""

from __future__ import annotations

import re
import string
from functools import cached_property

import numpy as np

TOKEN_RE = re.compile(r"\w+(?:['’.\-]\w+)*|[^\w\s]")
PARAGRAPH_RE = re.compile(r"\n{2,}")
PUNCTUATION = frozenset(string.punctuation)
STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
TERMINAL_PUNCT = (".", "'", '"', "!", "?")
NGRAM_MAX_TOKENS = 500_000

_HAS_ALPHA = re.compile(r"[^\W\d_]").search
_P = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier (golden ratio), mixes token hashes


def find_duplicates(items: list[str]) -> tuple[int, int]:
    """(number of items seen before, characters in those items): datatrove's `find_duplicates`."""
    seen: set[str] = set()
    dup_items = dup_chars = 0
    for item in items:
        if item in seen:
            dup_items += 1
            dup_chars += len(item)
        else:
            seen.add(item)
    return dup_items, dup_chars


class TextStats:
    """Cached views of one text (see the module docstring)."""

    def __init__(self, text: str) -> None:
        self.text = text

    @cached_property
    def lines(self) -> list[str]:
        """`text.split("\\n")`, blank lines included (Gopher quality, FineWeb)."""
        return self.text.split("\n")

    @cached_property
    def nonempty_lines(self) -> list[str]:
        """Lines with some non-space character (Gopher repetition splits on `\\n+`)."""
        return [line for line in self.lines if line.strip()]

    @cached_property
    def paragraphs(self) -> list[str]:
        return PARAGRAPH_RE.split(self.text.strip())

    @cached_property
    def line_duplicates(self) -> tuple[int, int]:
        return find_duplicates(self.nonempty_lines)

    @cached_property
    def paragraph_duplicates(self) -> tuple[int, int]:
        return find_duplicates(self.paragraphs)

    @cached_property
    def tokens(self) -> list[str]:
        return TOKEN_RE.findall(self.text)

    @cached_property
    def words(self) -> list[str]:
        return [t for t in self.tokens if t not in PUNCTUATION]

    @cached_property
    def mean_word_length(self) -> float:
        words = self.words
        return sum(map(len, words)) / len(words) if words else 0.0

    @cached_property
    def alpha_words(self) -> int:
        """Words containing at least one letter."""
        return sum(1 for w in self.words if _HAS_ALPHA(w))

    @cached_property
    def stop_words(self) -> int:
        """Tokens in Gopher's stop-word list (case-sensitive, as in datatrove)."""
        return sum(1 for t in self.tokens if t in STOP_WORDS)

    @cached_property
    def _ngram_base(self) -> tuple[np.ndarray, np.ndarray, int]:
        """(token hashes (T,), cumulative token lengths (T+1,), characters spanned) over the bounded prefix."""
        tokens = self.tokens
        if len(tokens) > NGRAM_MAX_TOKENS:
            tokens = tokens[:NGRAM_MAX_TOKENS]
            # characters up to the end of the last token considered (a regex over the prefix finds it)
            n_chars = _prefix_chars(self.text, NGRAM_MAX_TOKENS)
        else:
            n_chars = len(self.text)
        hashes = np.fromiter(map(hash, tokens), dtype=np.int64, count=len(tokens)).view(np.uint64)
        cum = np.zeros(len(tokens) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens)), out=cum[1:])
        return hashes, cum, n_chars

    @property
    def ngram_chars(self) -> int:
        """Denominator of the n-gram fractions: the text length (or the bounded prefix's)."""
        return self._ngram_base[2]

    def ngrams(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(hashes (T-n+1,), character lengths (T-n+1,)) of the word n-grams, lengths as `" ".join`."""
        cache = self.__dict__.setdefault("_ngram_cache", {})
        if n in cache:
            return cache[n]
        hashes, cum, _ = self._ngram_base
        t = len(hashes)
        if t < n:
            out = (np.empty(0, np.uint64), np.empty(0, np.int64))
        else:
            h = hashes[: t - n + 1].copy()
            for k in range(1, n):
                h *= _P
                h += hashes[k : t - n + 1 + k]
            out = (h, cum[n:] - cum[: t - n + 1] + (n - 1))
        cache[n] = out
        return out

    def top_ngram_chars(self, n: int) -> int:
        """Characters covered by the most frequent n-gram: len(ngram) * count (datatrove `find_top_duplicate`).

        Ties go to the n-gram seen first, as `Counter.most_common(1)` does.
        """
        h, lengths = self.ngrams(n)
        if len(h) == 0:
            return 0
        _, first, counts = np.unique(h, return_index=True, return_counts=True)
        top = counts.max()
        i = int(first[counts == top].min())
        return int(lengths[i]) * int(top)

    def duplicate_ngram_chars(self, n: int, stop_above: float = float("inf")) -> int:
        """Characters in duplicated n-grams, greedy and non-overlapping (datatrove `find_all_duplicate`).

        Walk the positions; an n-gram seen before adds its length and jumps `n` tokens ahead, a new one is
        remembered and steps one token. Only positions whose n-gram occurs at least twice in the document
        can ever match, so the walk visits just those (exactly the same result, far fewer steps). Stops
        early once the count exceeds `stop_above` (the verdict is already known).
        """
        h, lengths = self.ngrams(n)
        if len(h) == 0:
            return 0
        _, inverse, counts = np.unique(h, return_inverse=True, return_counts=True)
        candidates = np.flatnonzero(counts[inverse] >= 2)
        if len(candidates) == 0:
            return 0
        seen: set[int] = set()
        repeated = 0
        nxt = 0
        hs = h[candidates].tolist()
        ls = lengths[candidates].tolist()
        for p, hp, lp in zip(candidates.tolist(), hs, ls):
            if p < nxt:
                continue
            if hp in seen:
                repeated += lp
                if repeated > stop_above:
                    return repeated
                nxt = p + n
            else:
                seen.add(hp)
                nxt = p + 1
        return repeated


def _prefix_chars(text: str, n_tokens: int) -> int:
    end = 0
    for i, m in enumerate(TOKEN_RE.finditer(text)):
        if i == n_tokens - 1:
            end = m.end()
            break
    return end or len(text)
