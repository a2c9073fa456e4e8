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
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import xxhash

from data_specs.dedup import DedupSpec, MinHashSpec
from tasks.dedup.exact_verify import ExactJaccard
from tasks.dedup.lsh import band_keys, near_duplicates_banded
from tasks.dedup.minhash import EMPTY, SCHEME, MinHasher, to_lean_minhash

__all__ = ["SCHEME", "Decisions", "DedupResult", "ExactJaccard", "MinHashSpec", "MinHasher", "decide", "exact_key",
           "find_duplicates", "to_lean_minhash"]

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
    text_bytes_read: int = 0    # Ray engine: text bytes the verify tasks read (one node: `ExactJaccard`'s counts)
    text_bytes_wanted: int = 0  # ... and the bytes of the texts they needed

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
) -> Decisions:
    """Dedup decisions from compact per-row arrays, with band keys and signatures fetched on demand.

    `order`: row indices in survivor priority (best first); `exact_groups[i]`: an integer label, equal
    for rows with equal exact keys; `has_shingles[i]`: the signature is not EMPTY; `band_keys_of(b)`:
    band b's (n,) uint64 LSH keys by row; `signature_rows(rows)`: (len(rows), num_perm) signatures.
    Holds O(n) small arrays and one band's keys; never the (n, num_perm) signatures.
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

    candidate_pairs = verified_pairs = exact_checked = text_bytes_read = text_bytes_wanted = 0
    # 2. near: local index = position in priority order, so a component's root is its survivor
    if mh.enabled and survivors.size:
        local = survivors[has_shingles[survivors]]  # (m,) local -> row
        graph = near_duplicates_banded(
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
        text_bytes_read, text_bytes_wanted = graph.text_bytes_read, graph.text_bytes_wanted
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
        text_bytes_read=text_bytes_read,
        text_bytes_wanted=text_bytes_wanted,
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
