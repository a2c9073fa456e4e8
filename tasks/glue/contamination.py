"""Benchmark contamination: which GLUE evaluation examples share a 13-gram with the pretraining corpus.

The method is GPT-3's (Brown et al. 2020, appendix C): text is lower-cased, punctuation is dropped and
the rest split into words; an evaluation example is *dirty* if it shares an n-gram (n = 13) with any
training document. A pair task's example is matched whole (`pairs="whole_example"`, the default): its two
fields are one run of words, so n-grams may cross from the first sentence into the second, and an example
shorter than n words is dirty only when all of it occurs contiguously in one document. A short hypothesis
such as "He refused." then no longer flags every document that contains those two words.
`pairs="each_field"` matches field by field as before (a named option, not the default). Text shorter than n
words has no n-gram; by default (`short_fields="whole"`) it is dirty when it occurs whole in one training
document, as GPT-3 did, and with `short_fields="skip"` it can never be dirty. N-grams never span two
documents.

Memory follows the evaluation sets, not the corpus: `EvalNgramIndex` hashes the evaluation n-grams
(64-bit) into sorted arrays, and `scan()` streams corpus documents past them in batches, so a corpus of
any size needs only one batch of word hashes at a time. `scan()` may be called any number of times;
what it found accumulates.

    index = EvalNgramIndex({"sst2": [("a masterpiece of a film .",), ...]})
    index.scan(iter_curated_documents("out/curated"))
    index.results()["sst2"]   # ContaminationResult(n_examples=872, n_contaminated=3, rate=0.0034, ...)

Inputs: evaluation examples as tuples of text fields (`TASKS[task].text_columns` order), corpus
documents as strings. Output: per result key, the contaminated example indices.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pyarrow.parquet as pq
import xxhash
from fsspec.core import url_to_fs

ShortFields = Literal["whole", "skip"]
PairMatching = Literal["whole_example", "each_field"]

NGRAM = 13  # GPT-3 appendix C's n-gram size: long enough that a shared 13-gram is rarely chance

# Polynomial (Horner) hash of a word-hash sequence: H(w0..wm-1) = sum h(wk) * P^(m-1-k) mod 2^64.
# P is odd, so multiplying by it is a bijection mod 2^64: two m-grams that differ in one word never
# collide, and otherwise they collide with probability about 2^-64 per pair. With ~10^6 indexed
# n-grams and ~10^10 corpus n-grams that is ~5e-4 expected false hits over a whole corpus.
_P = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio, odd

# How many corpus words `scan()` holds at once: ~1M words is ~65 MB of Python strings plus ~40 MB of
# numpy temporaries (8 B word hash, running n-gram hash, segment ends, masks), and numpy's per-call
# overhead is amortised over ~100 paragraphs or more.
_BATCH_WORDS = 1 << 20

# --- normalisation -------------------------------------------------------------------------------
# GLUE's single-sentence sets are Penn-Treebank tokenised ("it 's", "do n't", "-lrb-"), the corpus is
# not ("it's", "don't", "("). These rules, and deleting apostrophes, make both give the same words:
_PTB_BRACKETS = re.compile(r"-[lr][rsc]b-")  # -lrb- -rrb- -lsb- -rsb- -lcb- -rcb-: bracket tokens
_PTB_CLITIC = re.compile(r"(?<=\w) (?=(?:n't|'s|'re|'ve|'ll|'d|'m)\b)")  # "do n't" -> "don't"
_WORD = re.compile(r"[^\W_]+")  # a run of letters/digits; everything else (punctuation, _) separates


def words(text: str) -> list[str]:
    """Lower-cased words of `text` with punctuation dropped: what n-grams are made of.

    Apostrophes are deleted inside words ("don't" -> "dont"); every other punctuation mark separates
    words ("well-known" -> "well", "known"). PTB tokenisation is undone first ("do n't" -> "dont",
    "-lrb-" dropped), so GLUE's tokenised sentences match running text.
    """
    text = text.lower().replace("\u2019", "'").replace("\u02bc", "'")  # typographic apostrophes (’ ʼ)
    text = _PTB_BRACKETS.sub(" ", text)
    text = _PTB_CLITIC.sub("", text)
    return _WORD.findall(text.replace("'", ""))


def _hash_words(ws: Sequence[str]) -> np.ndarray:
    """uint64 xxh3 hash of each word (stable across processes, unlike `hash()`). Shape (len(ws),)."""
    return np.fromiter(map(xxhash.xxh3_64_intdigest, map(str.encode, ws)), dtype=np.uint64, count=len(ws))


def _ngram_hashes(
    h: np.ndarray, lengths: np.ndarray, sizes: Iterable[int]
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """For each m in `sizes` (ascending), the hashes of every m-gram inside one segment.

    h: (L,) word hashes of several segments laid end to end; lengths: (S,) words per segment.
    Yields (m, hashes (G,), inside (L-m+1,) bool) where hashes = the m-grams starting at the positions
    where `inside` is True; m-grams that cross a segment boundary are left out.
    Horner's rule builds m-gram hashes from (m-1)-gram hashes, so all sizes up to max cost one
    multiply-add pass each.
    """
    wanted = sorted(set(sizes))
    if not wanted or h.size == 0:
        return
    ends = np.cumsum(lengths)  # (S,) one past each segment's last word
    seg_end = np.repeat(ends, lengths)  # (L,) end of the segment each position is in
    last = np.arange(h.size) + 1  # (L,) m-gram at i ends before i + m; compared with seg_end
    run = h.copy()  # run[i] = hash of the m-gram starting at i (valid for i < L - m + 1)
    for m in range(1, wanted[-1] + 1):
        if m > 1:
            k = h.size - m + 1
            if k <= 0:
                return
            run = run[:k] * _P + h[m - 1 :]
        if m in wanted:
            inside = last[: run.size] + (m - 1) <= seg_end[: run.size]
            yield m, run[inside], inside


@dataclass(frozen=True)
class ContaminationResult:
    """Contamination of one result key's evaluation set."""

    n_examples: int
    n_contaminated: int
    rate: float  # n_contaminated / n_examples (0.0 for an empty set)
    contaminated: tuple[int, ...]  # sorted indices into the examples given to the index


@dataclass
class _SizeIndex:
    """Evaluation m-grams of one size m: sorted unique hashes, and which example each entry came from."""

    keys: np.ndarray  # (K,) uint64, sorted, unique
    entry_key: np.ndarray  # (E,) index into keys
    entry_example: np.ndarray  # (E,) global example id
    found: np.ndarray  # (K,) bool: seen in the corpus so far
    bitmap: np.ndarray  # (2^b,) bool: True at the top b bits of every key (prefilter)
    shift: np.uint64  # 64 - b

    @classmethod
    def build(cls, hashes: np.ndarray, examples: np.ndarray) -> _SizeIndex:
        keys, inverse = np.unique(hashes, return_inverse=True)
        # Prefilter: a corpus hash whose top b bits hit no key cannot be a key, and most don't: with
        # 2^b >= 16 K slots at most 1/16 of corpus hashes pass on to the binary search. b is capped
        # at 24 (16 MiB of bools), which keeps >= 16 slots per key up to 1M keys.
        b = int(min(24, max(10, np.ceil(np.log2(16 * keys.size)))))
        shift = np.uint64(64 - b)
        bitmap = np.zeros(1 << b, dtype=bool)
        bitmap[keys >> shift] = True
        return cls(keys, inverse, examples, np.zeros(keys.size, dtype=bool), bitmap, shift)

    def mark(self, hashes: np.ndarray) -> None:
        """Set `found` for every key among `hashes`."""
        hashes = hashes[self.bitmap[hashes >> self.shift]]
        # searchsorted gives the insertion point; a hash is present iff the key there equals it
        # (clipped: an insertion point past the last key is a miss, checked against the last key)
        j = np.minimum(np.searchsorted(self.keys, hashes), self.keys.size - 1)
        self.found[j[self.keys[j] == hashes]] = True


class EvalNgramIndex:
    """The n-grams of GLUE evaluation sets, against which a corpus is streamed.

    examples: {result_key: [example, ...]}, each example a tuple of its text fields (one for single-
    sentence tasks, two for pair tasks). Memory is O(evaluation n-grams); the corpus is never held.
    """

    def __init__(
        self,
        examples: Mapping[str, Sequence[Sequence[str]]],
        n: int = NGRAM,
        short_fields: ShortFields = "whole",
        pairs: PairMatching = "whole_example",
    ) -> None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if short_fields not in ("whole", "skip"):
            raise ValueError(f"short_fields must be 'whole' or 'skip', got {short_fields!r}")
        if pairs not in ("whole_example", "each_field"):
            raise ValueError(f"pairs must be 'whole_example' or 'each_field', got {pairs!r}")
        self.n = n
        self.short_fields: ShortFields = short_fields
        self.documents_scanned = 0
        self.words_scanned = 0
        self._keys = list(examples)
        self._offsets = np.cumsum([0] + [len(examples[k]) for k in self._keys])  # (R+1,) global id ranges

        # Every example (whole_example) or field (each_field) becomes one segment; its global example id says
        # whom a hit belongs to.
        field_words: list[str] = []
        field_len: list[int] = []
        field_example: list[int] = []
        g = 0
        for key in self._keys:
            for example in examples[key]:
                fields = [words(f or "") for f in example]  # a missing field (None) has no words
                if pairs == "whole_example":
                    fields = [[w for f in fields for w in f]]
                for w in fields:
                    field_words.extend(w)
                    field_len.append(len(w))
                    field_example.append(g)
                g += 1
        h = _hash_words(field_words)
        lengths = np.asarray(field_len, dtype=np.int64)
        owner = np.asarray(field_example, dtype=np.int64)
        seg_of_pos = np.repeat(np.arange(lengths.size), lengths)  # (L,) field index of each word
        starts = np.cumsum(lengths) - lengths  # (S,) first word of each field

        short = sorted({int(m) for m in lengths if 0 < m < n}) if short_fields == "whole" else []
        self._sizes: dict[int, _SizeIndex] = {}
        for m, hashes, inside in _ngram_hashes(h, lengths, [*short, n]):
            pos = np.flatnonzero(inside)
            seg = seg_of_pos[pos]
            if m < n:  # a short field is indexed whole: only its m-gram that starts at the field start
                keep = (lengths[seg] == m) & (pos == starts[seg])
                hashes, seg = hashes[keep], seg[keep]
            if hashes.size:
                self._sizes[m] = _SizeIndex.build(hashes, owner[seg])

    @property
    def n_ngrams(self) -> int:
        """Distinct evaluation hashes held (all sizes): what the index's memory grows with."""
        return sum(s.keys.size for s in self._sizes.values())

    def scan(self, documents: Iterable[str]) -> None:
        """Stream corpus documents past the index, marking every evaluation n-gram they contain.

        Documents are consumed in batches of about 1M words; call again with more documents to continue.
        """
        batch: list[str] = []
        lengths: list[int] = []
        for doc in documents:
            w = words(doc)
            batch.extend(w)
            lengths.append(len(w))
            if len(batch) >= _BATCH_WORDS:
                self._scan_batch(batch, lengths)
                batch, lengths = [], []
        if lengths:
            self._scan_batch(batch, lengths)

    def _scan_batch(self, batch: list[str], lengths: list[int]) -> None:
        self.documents_scanned += len(lengths)
        self.words_scanned += len(batch)
        if not self._sizes:
            return
        h = _hash_words(batch)
        for m, hashes, _ in _ngram_hashes(h, np.asarray(lengths, dtype=np.int64), self._sizes):
            self._sizes[m].mark(hashes)

    def dirty_mask(self) -> np.ndarray:
        """(examples,) bool over every example of every key, in the order given: found in the corpus so far."""
        dirty = np.zeros(int(self._offsets[-1]), dtype=bool)
        for index in self._sizes.values():
            dirty[index.entry_example[index.found[index.entry_key]]] = True
        return dirty

    def results(self, dirty: np.ndarray | None = None) -> dict[str, ContaminationResult]:
        """Per result key: how many examples, how many are dirty, and which (sorted indices). `dirty`: a mask
        from `dirty_mask()` (several scans' masks OR-ed), else this index's own."""
        dirty = self.dirty_mask() if dirty is None else dirty
        out: dict[str, ContaminationResult] = {}
        for r, key in enumerate(self._keys):
            lo, hi = int(self._offsets[r]), int(self._offsets[r + 1])
            idx = tuple(int(i) for i in np.flatnonzero(dirty[lo:hi]))
            total = hi - lo
            out[key] = ContaminationResult(total, len(idx), len(idx) / total if total else 0.0, idx)
        return out


def curated_shards(curated_dir: str) -> list[str]:
    """`<curated_dir>/data/*.parquet` (the curate stage's shards) in name order; FileNotFoundError when none."""
    fs, root = url_to_fs(f"{curated_dir.rstrip('/')}/data")
    paths = sorted(fs.glob(f"{root}/*.parquet"))
    if not paths:
        raise FileNotFoundError(f"no data/*.parquet under {curated_dir}: run `lmpipe curate` first")
    return [fs.unstrip_protocol(p) for p in paths]


def iter_shard_documents(paths: Iterable[str], batch_rows: int = 1024) -> Iterator[str]:
    """The `text` column of the given Parquet shards, streamed `batch_rows` rows at a time."""
    for path in paths:
        fs, p = url_to_fs(path)
        with fs.open(p, "rb") as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_rows, columns=["text"]):
                yield from batch.column(0).to_pylist()


def iter_curated_documents(curated_dir: str, batch_rows: int = 1024) -> Iterator[str]:
    """The `text` column of `<curated_dir>/data/*.parquet` (the curate stage's shards), streamed.

    Shards are read in name order, `batch_rows` rows at a time, so memory stays at one batch however
    large the corpus is. Raises FileNotFoundError when there is no shard.
    """
    yield from iter_shard_documents(curated_shards(curated_dir), batch_rows)


