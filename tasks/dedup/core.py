"""Exact and near (MinHash LSH) deduplication as pure functions: no Prefect, Ray or MLflow here.

Inputs: per document an id, a source kind, `exact_key(text)` and a `MinHasher` signature row.
Output: `find_duplicates(...) -> DedupResult`, which row indices to drop, why, and which row
survives in their place, plus cluster statistics for the data card.

Survivor rule (both stages): the member whose source kind comes first in `spec.source_priority`
(unknown kinds last), then the smallest id in string order. Every row is ranked once by that key
and all later steps work on ranks, so the decisions do not depend on the order of the input rows.

Run the tests with `.venv/bin/pytest tests/unit -q -k dedup`; the benchmarks are
`benchmarks/bench_minhash.py` and `benchmarks/bench_dedup_quality.py`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import xxhash

from data_specs.dedup import DedupSpec, MinHashSpec
from tasks.dedup.lsh import near_duplicates
from tasks.dedup.minhash import EMPTY, SCHEME, MinHasher, shingle_hashes, to_lean_minhash

__all__ = ["SCHEME", "DedupResult", "ExactJaccard", "MinHashSpec", "MinHasher", "exact_key", "find_duplicates", "to_lean_minhash"]

EXACT = "dedup/exact"
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

    `load_texts(rows)` returns the texts of those rows; each row's sorted unique shingle hashes are
    computed once and cached, so a row in many ambiguous pairs is read once.
    """

    def __init__(self, load_texts: Callable[[np.ndarray], Sequence[str]], ngram: int):
        self.load_texts = load_texts
        self.ngram = ngram
        self.sets: dict[int, np.ndarray] = {}

    def _ensure(self, rows: np.ndarray) -> None:
        missing = np.asarray(sorted({int(r) for r in rows} - self.sets.keys()), dtype=np.int64)
        if missing.size == 0:
            return
        hashes, offsets = shingle_hashes(self.load_texts(missing), self.ngram)
        for k, row in enumerate(missing.tolist()):
            self.sets[row] = np.unique(hashes[offsets[k] : offsets[k + 1]])

    def __call__(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        self._ensure(np.concatenate([lo, hi]))
        out = np.empty(lo.size, dtype=np.float64)
        for k, (a, b) in enumerate(zip(lo.tolist(), hi.tolist())):
            sa, sb = self.sets[a], self.sets[b]
            inter = np.intersect1d(sa, sb, assume_unique=True).size
            union = sa.size + sb.size - inter
            out[k] = inter / union if union else 1.0
        return out


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

    order = _priority_order(ids, sources, spec.source_priority)
    final = np.arange(n, dtype=np.int64)  # final[i] = kept row that row i collapses into
    reason: dict[int, str] = {}

    # 1. exact: the first row of each key in priority order survives
    survivors = order
    if spec.exact.enabled:
        first: dict[bytes, int] = {}
        survivors = []
        for i in order:
            s = first.setdefault(exact_keys[i], i)
            if s == i:
                survivors.append(i)
            else:
                final[i] = s
                reason[i] = EXACT

    candidate_pairs = verified_pairs = exact_checked = 0
    # 2. near: local index = position in priority order, so a component's root is its survivor
    if mh.enabled and survivors:
        local = np.asarray(survivors, dtype=np.int64)  # (m,) local -> row
        local = local[~np.all(signatures[local] == EMPTY, axis=1)]
        graph = near_duplicates(
            np.ascontiguousarray(signatures[local]),
            bands=mh.bands,
            rows=mh.rows,
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
        for i in local[dup].tolist():
            reason[i] = NEAR
        final = final[final]  # exact copies of a near-removed row follow it to the kept row

    removed = {i: (reason[i], int(final[i])) for i in sorted(reason)}
    _, sizes = np.unique(final, return_counts=True)
    hist_sizes, hist_counts = np.unique(sizes[sizes >= 2], return_counts=True)
    return DedupResult(
        removed=removed,
        clusters=int(hist_counts.sum()),
        cluster_sizes={int(s): int(c) for s, c in zip(hist_sizes, hist_counts)},
        candidate_pairs=candidate_pairs,
        verified_pairs=verified_pairs,
        exact_checked=exact_checked,
    )
