"""Exact and near (MinHash LSH) deduplication as pure functions: no Prefect, Ray or MLflow here.

Inputs: per document an id, a source kind, `exact_key(text)` and a `MinHasher` signature row.
Output: `find_duplicates(...) -> DedupResult`, which row indices to drop, why, and which row
survives in their place, plus cluster statistics for the data card.

`decide(...) -> Decisions` is the same computation on compact arrays, with the LSH band keys and the
signature rows fetched on demand (`find_duplicates` calls it with everything in memory; global dedup over
unit files, `tasks.corpus.core.deduplicate_units`, streams them from disk), so both give identical decisions.

Survivor rule (both stages): the member whose source kind comes first in `spec.source_priority`
(unknown kinds last), then the smallest id in string order. Every row is ranked once by that key
and all later steps work on ranks, so the decisions do not depend on the order of the input rows.

Run the tests with `.venv/bin/pytest tests/unit -q -k dedup`; the benchmarks are
`benchmarks/bench_minhash.py` and `benchmarks/bench_dedup_quality.py`.
"""

from __future__ import annotations

import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import xxhash

from data_specs.dedup import DedupSpec, MinHashSpec
from tasks.dedup.lsh import NearDupGraph, band_keys, near_duplicates_banded
from tasks.dedup.minhash import EMPTY, SCHEME, MinHasher, shingle_hashes, to_lean_minhash

__all__ = ["SCHEME", "Decisions", "DedupResult", "ExactJaccard", "MinHashSpec", "MinHasher", "decide", "exact_key",
           "find_duplicates", "to_lean_minhash"]

EXACT = "dedup/exact"
_SHINGLE_BATCH = 1024  # texts tokenised at once when building shingle sets
NEAR = "dedup/near"


def exact_key(text: str) -> bytes:
    """16-byte hash of the normalised text (NFKC, casefold, whitespace collapsed) for exact dedup."""
    norm = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return xxhash.xxh3_128_digest(norm.encode("utf-8"))


@dataclass(frozen=True)
class DedupResult:
    """Dedup decisions for one run.

    `removed[i] = (reason, survivor)`: `survivor` is always a row that is kept. For a row that is an
    exact copy of a row which was itself removed as a near-duplicate, the reason stays 'dedup/exact'
    and `survivor` is the near cluster's kept row. Clusters and their sizes count the final clusters
    (exact copies and near-duplicates together) with at least two rows.
    """

    removed: dict[int, tuple[str, int]]  # row index -> (reason 'dedup/exact' | 'dedup/near', survivor row index)
    clusters: int  # number of duplicate clusters (size >= 2)
    cluster_sizes: dict[int, int]  # histogram: cluster size -> how many clusters
    candidate_pairs: int  # LSH candidate pairs examined
    verified_pairs: int  # pairs that passed verification
    exact_checked: int = 0  # ambiguous pairs settled by exact Jaccard (verify="exact")


class ExactJaccard:
    """Exact Jaccard of shingle sets for pairs of rows, reading text only for the rows asked about.

    `load_texts(rows)` returns the texts of those rows. Pairs are settled in blocks of `block_pairs`; each
    block loads the texts of its rows not yet cached in one `load_texts` call (so a caller that reads by
    unit file reads each unit at most once per block: once per run when all ambiguous pairs come in one
    call of at most `block_pairs`). Memory: the texts of one block (at most 2 * `block_pairs` rows, e.g.
    16 k rows x 5 KB = 80 MB of web text) plus the cache of sorted unique shingle hashes, which is bounded:
    after a block, the least recently used sets are evicted until at most `max_hashes` hashes (8 bytes
    each, 128 MB by default) remain.
    """

    def __init__(self, load_texts: Callable[[np.ndarray], Sequence[str]], ngram: int,
                 max_hashes: int = 1 << 24, block_pairs: int = 1 << 13):
        self.load_texts = load_texts
        self.ngram = ngram
        self.max_hashes = max_hashes
        self.block_pairs = block_pairs
        self.sets: OrderedDict[int, np.ndarray] = OrderedDict()
        self.cached_hashes = 0
        self.loads = 0  # calls to load_texts

    def _ensure(self, rows: np.ndarray) -> None:
        wanted = np.unique(rows).tolist()
        for row in wanted:
            if row in self.sets:
                self.sets.move_to_end(row)
        missing = np.asarray([r for r in wanted if r not in self.sets], dtype=np.int64)
        if missing.size == 0:
            return
        self.loads += 1
        texts = self.load_texts(missing)
        rows = missing.tolist()
        for b0 in range(0, len(rows), _SHINGLE_BATCH):  # tokens of a batch are Python objects: keep it small
            hashes, offsets = shingle_hashes(texts[b0 : b0 + _SHINGLE_BATCH], self.ngram)
            for k, row in enumerate(rows[b0 : b0 + _SHINGLE_BATCH]):
                self.sets[row] = np.unique(hashes[offsets[k] : offsets[k + 1]])
                self.cached_hashes += self.sets[row].size

    def _evict(self) -> None:
        while self.cached_hashes > self.max_hashes and self.sets:
            _, dropped = self.sets.popitem(last=False)
            self.cached_hashes -= dropped.size

    def __call__(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        out = np.empty(lo.size, dtype=np.float64)
        for b0 in range(0, lo.size, self.block_pairs):
            blo, bhi = lo[b0 : b0 + self.block_pairs], hi[b0 : b0 + self.block_pairs]
            self._ensure(np.concatenate([blo, bhi]))
            for k, (a, b) in enumerate(zip(blo.tolist(), bhi.tolist()), start=b0):
                sa, sb = self.sets[a], self.sets[b]
                inter = np.intersect1d(sa, sb, assume_unique=True).size
                union = sa.size + sb.size - inter
                out[k] = inter / union if union else 1.0
            self._evict()
        return out


@dataclass(frozen=True)
class Decisions:
    """Dedup decisions as arrays over the n rows (the compact form of `DedupResult`).

    `final[i]` is the kept row that row i collapses into (itself when kept); `reason[i]` is 0 (kept),
    `REASON_CODES[EXACT]` or `REASON_CODES[NEAR]`.
    """

    final: np.ndarray   # (n,) int64
    reason: np.ndarray  # (n,) int8
    clusters: int
    cluster_sizes: dict[int, int]
    candidate_pairs: int
    verified_pairs: int
    exact_checked: int

    def to_result(self) -> DedupResult:
        """The `DedupResult` form: a dict of removed rows."""
        names = {code: name for name, code in REASON_CODES.items()}
        removed = {int(i): (names[int(self.reason[i])], int(self.final[i])) for i in np.flatnonzero(self.reason)}
        return DedupResult(removed, self.clusters, self.cluster_sizes, self.candidate_pairs, self.verified_pairs,
                           self.exact_checked)


REASON_CODES = {EXACT: 1, NEAR: 2}


class _LocalRows:
    """Signature rows by local index, fetched on demand through `fetch(rows)` (rows = corpus row indices)."""

    def __init__(self, fetch: Callable[[np.ndarray], np.ndarray], local: np.ndarray, num_perm: int):
        self.fetch, self.local, self.shape = fetch, local, (local.size, num_perm)

    def __getitem__(self, idx: np.ndarray) -> np.ndarray:
        return self.fetch(self.local[idx])


def decide(
    order: np.ndarray,
    exact_groups: np.ndarray,
    has_shingles: np.ndarray,
    band_keys_of: Callable[[int], np.ndarray],
    signature_rows: Callable[[np.ndarray], np.ndarray],
    spec: DedupSpec,
    exact_jaccard: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    near: Callable[[np.ndarray], NearDupGraph] | None = None,
) -> Decisions:
    """Dedup decisions from compact per-row arrays, with band keys and signatures fetched on demand.

    `order`: row indices in survivor priority (best first); `exact_groups[i]`: an integer label, equal
    for rows with equal exact keys; `has_shingles[i]`: the signature is not EMPTY; `band_keys_of(b)`:
    band b's (n,) uint64 LSH keys by row; `signature_rows(rows)`: (len(rows), num_perm) signatures.
    Holds O(n) small arrays and one band's keys; never the (n, num_perm) signatures.

    `near(local)`, when given, replaces the single-node near-dedup step: it gets the (m,) rows to cluster in
    survivor-priority order and returns their `NearDupGraph` over local indices (the Ray Data job,
    `tasks.corpus.ray_dedup`); `band_keys_of`, `signature_rows` and `exact_jaccard` are then unused.
    """
    n = order.size
    mh = spec.minhash
    final = np.arange(n, dtype=np.int64)
    reason = np.zeros(n, dtype=np.int8)
    survivors = order
    if spec.exact.enabled and n:
        # 1. exact: the first row of each key in priority order survives
        _, first, inverse = np.unique(exact_groups[order], return_index=True, return_inverse=True)
        keeper = first[inverse.ravel()]
        copy = keeper != np.arange(n)
        final[order[copy]] = order[keeper[copy]]
        reason[order[copy]] = REASON_CODES[EXACT]
        survivors = order[~copy]

    candidate_pairs = verified_pairs = exact_checked = 0
    # 2. near: local index = position in priority order, so a component's root is its survivor
    if mh.enabled and survivors.size:
        local = survivors[has_shingles[survivors]]  # (m,) local -> row
        graph = near(local) if near is not None else near_duplicates_banded(
            local.size,
            lambda b: np.asarray(band_keys_of(b))[local],
            _LocalRows(signature_rows, local, mh.num_perm),
            bands=mh.bands,
            threshold=mh.threshold,
            verify_mode=mh.verify,
            bucket_cap=mh.bucket_cap,
            anchors=mh.bucket_anchors,
            exact=None if exact_jaccard is None else (lambda lo, hi: exact_jaccard(local[lo], local[hi])),
            exact_margin=mh.exact_margin,
        )
        exact_checked = graph.exact_checked
        candidate_pairs, verified_pairs = graph.candidate_pairs, graph.verified_pairs
        dup = np.flatnonzero(graph.root != np.arange(local.size))
        final[local[dup]] = local[graph.root[dup]]
        reason[local[dup]] = REASON_CODES[NEAR]
        final = final[final]  # exact copies of a near-removed row follow it to the kept row

    _, sizes = np.unique(final, return_counts=True)
    hist_sizes, hist_counts = np.unique(sizes[sizes >= 2], return_counts=True)
    return Decisions(
        final=final,
        reason=reason,
        clusters=int(hist_counts.sum()),
        cluster_sizes={int(s): int(c) for s, c in zip(hist_sizes, hist_counts)},
        candidate_pairs=candidate_pairs,
        verified_pairs=verified_pairs,
        exact_checked=exact_checked,
    )


def _priority_order(ids: Sequence[str], sources: Sequence[str], priority: Sequence[str]) -> list[int]:
    """Row indices sorted by (source priority, id): position 0 is the most wanted survivor."""
    prio = {kind: i for i, kind in enumerate(priority)}
    unknown = len(prio)
    # The row index only breaks ties between equal ids (ids are meant to be unique).
    return sorted(range(len(ids)), key=lambda i: (prio.get(sources[i], unknown), ids[i], i))


def find_duplicates(
    ids: Sequence[str],
    sources: Sequence[str],
    exact_keys: Sequence[bytes],
    signatures: np.ndarray,
    spec: DedupSpec,
    exact_jaccard: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> DedupResult:
    """Global dedup decisions over all documents of a run (rows in any order).

    1. exact (if enabled): rows with equal `exact_keys` form a cluster; the best-ranked one survives;
    2. near (if `spec.minhash.enabled`): LSH + verification + union-find over the exact survivors
       that have at least one shingle (an empty signature carries no similarity evidence; empty
       texts are caught by exact dedup); the best-ranked member of each cluster survives.
       With `verify="exact"`, `exact_jaccard(rows_a, rows_b)` (e.g. an `ExactJaccard`) settles the
       pairs whose estimate is ambiguous; without it the signature estimate decides.
    """
    n = len(ids)
    if not (len(sources) == len(exact_keys) == n):
        raise ValueError(f"ids, sources, exact_keys differ in length: {n}, {len(sources)}, {len(exact_keys)}")
    mh = spec.minhash
    if mh.enabled and signatures.shape != (n, mh.num_perm):
        raise ValueError(f"signatures shape {signatures.shape} != ({n}, {mh.num_perm})")
    if n == 0:
        return DedupResult({}, 0, {}, 0, 0)
    labels: dict[bytes, int] = {}
    groups = np.fromiter((labels.setdefault(k, len(labels)) for k in exact_keys), dtype=np.int64, count=n)
    has_shingles = ~np.all(signatures == EMPTY, axis=1) if mh.enabled else np.zeros(n, dtype=bool)
    return decide(
        np.asarray(_priority_order(ids, sources, spec.source_priority), dtype=np.int64),
        groups,
        has_shingles,
        lambda b: band_keys(signatures[:, b * mh.rows : (b + 1) * mh.rows]),
        lambda rows: signatures[rows],
        spec,
        exact_jaccard,
    ).to_result()
