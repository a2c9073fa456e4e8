"""Text statistics shared by every filter: split once per document, reuse everywhere.

`TextStats(text)` exposes lazily computed, cached views of one text: `lines`, `paragraphs`, `tokens`,
`words`, and the n-gram helpers the Gopher repetition rules need. A filter asks for what it needs; a
second filter asking for the same view gets the cached one. When the text changes (C4's line rules),
the cleaner builds a new `TextStats`.

Tokenisation replaces spaCy's blank English tokenizer (what datatrove 0.10.1 uses for English) by one regex
that follows spaCy where it matters for the ratios: a word is a run of letters and digits, optionally joined
by `'`, `’`, `.`, `-` or `_` (`don't`, `e-mail`, `3.14`, `U.S`); `Mr.`, `Mrs.`, `Dr.`... keep their dot; a run
of dots or of hyphens (`...`, `--`) is one token; every other non-space character, `_` included (Gutenberg's
`_emphasis_`), is a token of its own. It differs from spaCy on contractions (`do n't`) and hyphenated words
(`well - known`), which moves the letter ratio by about a percentage point. `tokens` are what datatrove calls
words (punctuation included: the denominator of its ratios); `words` are the tokens with a character outside
datatrove's `PUNCTUATION_SET` (its "non-symbol words").

Word n-grams are hashed, not joined into strings: each token gets Python's 64-bit string hash, an n-gram's
hash is the polynomial `h(n) = h(n-1) * P + token` in uint64 arithmetic (numpy, vectorised), and its
character length (its tokens' characters, no separators) comes from a cumulative sum. Collisions among a
document's n-grams are negligible (about N^2 / 2^64). On documents with more than `NGRAM_MAX_TOKENS` tokens the n-gram
rules look at the first `NGRAM_MAX_TOKENS` tokens only and divide by the characters those tokens span, which
bounds a 20 MB document to well under a second of n-gram work.
"""

from __future__ import annotations

import re
from functools import cached_property

import numpy as np

TOKEN_RE = re.compile(
    r"(?:Mr|Mrs|Ms|Dr|St|Jr|Sr)\.|[^\W_]+(?:['’.\-_][^\W_]+)*|\.{2,}|-{2,}|[^\w\s]|_"
)
PARAGRAPH_RE = re.compile(r"\n{2,}")
# datatrove 0.10.1 `utils/text.py`: PUNCTUATION (ASCII and common CJK/typographic marks, control characters)
# united with TERMINAL_PUNCTUATION (sentence terminators of every script, quotes not among them).
TERMINAL_PUNCTUATION = frozenset(
    "!.?\u0589\u061d\u061e\u061f\u06d4\u0700\u0701\u0702\u07f9\u0837\u0839\u083d\u083e\u0964\u0965\u104a\u104b"
    "\u1362\u1367\u1368\u166e\u1735\u1736\u17d4\u17d5\u17d6\u17d9\u17da\u1803\u1809\u1944\u1945\u1aa8\u1aa9\u1aaa"
    "\u1aab\u1b5a\u1b5b\u1b5e\u1b5f\u1b7d\u1b7e\u1c3b\u1c3c\u1c7e\u1c7f\u203c\u203d\u2047\u2048\u2049\u2e2e\u2e3c"
    "\u2e53\u2e54\u3002\ua4ff\ua60e\ua60f\ua6f3\ua6f7\ua876\ua877\ua8ce\ua8cf\ua92f\ua9c8\ua9c9\uaa5d\uaa5e\uaa5f"
    "\uaaf0\uaaf1\uabeb\ufe52\ufe56\ufe57\uff01\uff0e\uff1f\uff61\U00010a56\U00010a57\U00010f55\U00010f56\U00010f57"
    "\U00010f58\U00010f59\U00010f86\U00010f87\U00010f88\U00010f89\U00011047\U00011048\U000110be\U000110bf\U000110c0"
    "\U000110c1\U00011141\U00011142\U00011143\U000111c5\U000111c6\U000111cd\U000111de\U000111df\U00011238\U00011239"
    "\U0001123b\U0001123c\U000112a9\U0001144b\U0001144c\U000115c2\U000115c3\U000115c9\U000115ca\U000115cb\U000115cc"
    "\U000115cd\U000115ce\U000115cf\U000115d0\U000115d1\U000115d2\U000115d3\U000115d4\U000115d5\U000115d6\U000115d7"
    "\U00011641\U00011642\U0001173c\U0001173d\U0001173e\U00011944\U00011946\U00011a42\U00011a43\U00011a9b\U00011a9c"
    "\U00011c41\U00011c42\U00011ef7\U00011ef8\U00011f43\U00011f44\U00016a6e\U00016a6f\U00016af5\U00016b37\U00016b38"
    "\U00016b44\U00016e98\U0001bc9f\U0001da88"
)
PUNCTUATION = TERMINAL_PUNCTUATION | frozenset(
    "!/\u2014\u201d:\uff05\uff11\u3008&(\u3001\u2501\\\u3010#%\u300c\u300d\uff0c\u3011\uff1b+^]~"
    "\u201c\u300a\u201e';\u2019{|"
    "\u2236\xb4[=-`*\uff0e\uff08\u2013\uff1f\uff01\uff1a$\uff5e\xab\u3009,><\u300b)?\uff09\u3002\u2026@_.\"}\u25ba\xbb"
) | frozenset(map(chr, (*range(0, 9), *range(11, 32), *range(127, 160))))
STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
GOPHER_LINE_RE = re.compile("\n+")
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
    def splitlines(self) -> list[str]:
        """`text.splitlines()` (Gopher quality's and C4's lines in datatrove); never empty."""
        return self.text.splitlines() or [""]

    @cached_property
    def nonempty_lines(self) -> list[str]:
        """Lines with some non-space character (FineWeb's lines)."""
        return [line for line in self.lines if line.strip()]

    @cached_property
    def gopher_lines(self) -> list[str]:
        """`re.split("\\n+", text)`: Gopher repetition's lines (datatrove), whitespace-only lines included."""
        return GOPHER_LINE_RE.split(self.text)

    @cached_property
    def gopher_line_duplicates(self) -> tuple[int, int]:
        return find_duplicates(self.gopher_lines)

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
        return [t for t in self.tokens if not PUNCTUATION.issuperset(t)]

    @cached_property
    def mean_word_length(self) -> float:
        words = self.words
        return sum(map(len, words)) / len(words) if words else 0.0

    @cached_property
    def alpha_words(self) -> int:
        """Tokens containing at least one letter (a punctuation token never does)."""
        return sum(1 for w in self.words if _HAS_ALPHA(w))

    @cached_property
    def stop_words(self) -> int:
        """Distinct Gopher stop words among the tokens (case-sensitive), as datatrove counts them."""
        return len(STOP_WORDS.intersection(self.tokens))

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
        """(hashes (T-n+1,), character lengths (T-n+1,)) of the word n-grams, lengths as `"".join` (no spaces)."""
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
            out = (h, cum[n:] - cum[: t - n + 1])
        cache[n] = out
        return out

    def top_ngram_chars(self, n: int) -> int:
        """Characters covered by the most frequent n-gram: len(" ".join(ngram)) * count (datatrove
        `find_top_duplicate`). Ties go to the n-gram seen first, as `Counter.most_common(1)` does.
        """
        h, lengths = self.ngrams(n)
        if len(h) == 0:
            return 0
        _, first, counts = np.unique(h, return_index=True, return_counts=True)
        top = counts.max()
        i = int(first[counts == top].min())
        return (int(lengths[i]) + n - 1) * int(top)

    def duplicate_ngram_chars(self, n: int, stop_above: float = float("inf")) -> int:
        """Characters in duplicated n-grams, greedy and non-overlapping (datatrove `find_all_duplicate`, which
        measures an n-gram as `"".join`: its tokens without the spaces between them).

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
