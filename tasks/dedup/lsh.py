"""Banded LSH candidate pairs, signature verification and union-find, all vectorised with numpy.

Rows here are *local* indices 0..m-1 that the caller has already sorted by survivor priority, so the
smallest local index of a cluster is its survivor and every step is independent of input row order.
Memory: one band (m,) uint64 key array at a time plus the unique candidate pairs; never m x m.

`near_duplicates_banded` takes the band keys from a callable (`band -> (m,) keys`) and the signatures
from anything indexable by local row arrays, so the caller can stream both from disk: one band's keys
in memory at a time, and only the signature rows of the pairs being verified. Per band the work is the
pure function `band_pairs(keys, seen, ...)`; ambiguous pairs are gathered over all bands and settled by
exact Jaccard in one call at the end, so the text of a unit is read once per run, not once per band.

The Ray Data form (`tasks.corpus.ray_dedup`): the band keys are rows (band, key, local index);
grouped by (band, slice of the key space), `bucket_pairs` yields each band's candidate pairs as codes
`lo * m + hi`; a distinct over the codes replaces the `seen` set (`seen` only stops a pair found by two bands
from being verified twice: the union of the bands' codes is the same set, and its size is `candidate_pairs`);
grouped by a hash of the code, `estimate` and exact Jaccard settle each pair; `components` runs on the
verified edges (it depends only on the edge set). No step needs all signatures at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tasks.dedup.minhash import _fmix64

_BAND_MUL = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant (golden ratio) for the row fold
_VERIFY_CHUNK = 1 << 16  # pairs compared per block: (chunk, P) uint32 x 2


def band_keys(band: np.ndarray) -> np.ndarray:
    """(m, r) uint32 band values -> (m,) uint64 bucket keys (row fold `k = k*M + v`, then fmix64)."""
    key = np.zeros(band.shape[0], dtype=np.uint64)
    for j in range(band.shape[1]):
        key *= _BAND_MUL
        key += band[:, j]
    return _fmix64(key)


def band_key_matrix(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, P) signatures -> (n, bands) uint64: column b is `band_keys` of band b (values b*rows .. (b+1)*rows-1)."""
    out = np.empty((sig.shape[0], bands), dtype=np.uint64)
    for b in range(bands):
        out[:, b] = band_keys(sig[:, b * rows : (b + 1) * rows])
    return out


def bucket_pairs(keys: np.ndarray, bucket_cap: int, anchors: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (lo, hi) of local indices sharing a bucket key, lo < hi.

    A bucket with up to `bucket_cap` members yields all k(k-1)/2 pairs. A larger bucket (a template
    or boilerplate page repeated thousands of times) yields only (anchor, member) pairs for its first
    `anchors` members -- the highest-priority ones -- so it costs O(k * anchors) rather than O(k^2).
    Members similar to an anchor still join its cluster; a member similar only to other non-anchor
    members of a giant bucket can be missed in this band (other bands usually catch it).
    """
    order = np.argsort(keys, kind="stable")  # stable: members of a bucket in ascending local index
    sk = keys[order]
    starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
    sizes = np.diff(np.r_[starts, keys.size])
    los, his = [], []
    for k in np.unique(sizes[(sizes >= 2) & (sizes <= bucket_cap)]):
        st = starts[sizes == k]  # (nb,)
        iu, ju = np.triu_indices(int(k), 1)  # (k(k-1)/2,)
        los.append(order[st[:, None] + iu[None, :]].ravel())
        his.append(order[st[:, None] + ju[None, :]].ravel())
    for st, k in zip(starts[sizes > bucket_cap], sizes[sizes > bucket_cap]):
        members = order[st : st + k]
        for i in range(min(anchors, int(k))):
            los.append(np.full(k - i - 1, members[i]))
            his.append(members[i + 1 :])
    if not los:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    return np.concatenate(los).astype(np.int64), np.concatenate(his).astype(np.int64)


def verify(sig: np.ndarray, lo: np.ndarray, hi: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean mask: estimated Jaccard (share of equal values over all P) >= threshold, as `MinHash.jaccard`."""
    keep = np.zeros(lo.size, dtype=bool)
    P = sig.shape[1]
    for c0 in range(0, lo.size, _VERIFY_CHUNK):
        c1 = c0 + _VERIFY_CHUNK
        eq = np.count_nonzero(sig[lo[c0:c1]] == sig[hi[c0:c1]], axis=1)
        keep[c0:c1] = eq / P >= threshold
    return keep


def components(m: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(m,) root of each node's connected component; the root is the component's smallest index.

    Vectorised union-find: hook the larger root of every still-split edge under the smaller one
    (`np.minimum.at`), then pointer-jump until every node points at its root; repeat until no edge
    spans two roots. Deterministic: it depends only on the edge set, not on edge order.
    """
    parent = np.arange(m, dtype=np.int64)
    while lo.size:
        rl, rh = parent[lo], parent[hi]
        split = rl != rh
        if not split.any():
            break
        lo, hi = lo[split], hi[split]
        np.minimum.at(parent, np.maximum(rl[split], rh[split]), np.minimum(rl[split], rh[split]))
        while True:  # pointer jumping
            pp = parent[parent]
            if np.array_equal(pp, parent):
                break
            parent = pp
    return parent


@dataclass(frozen=True)
class NearDupGraph:
    root: np.ndarray  # (m,) survivor (smallest local index) of each row's cluster
    candidate_pairs: int
    verified_pairs: int
    edges: tuple[np.ndarray, np.ndarray]  # verified pairs (lo, hi), local indices, lo < hi
    exact_checked: int = 0  # pairs settled by exact Jaccard (verify="exact")
    text_bytes_read: int = 0  # text bytes read to settle them (the Ray job's verify tasks report theirs)
    text_bytes_wanted: int = 0  # bytes of the distinct texts those pairs needed


ExactJaccard = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(lo, hi) local row indices -> exact Jaccard of each pair's shingle sets (float array)."""


def verify_exact(
    sig: np.ndarray, lo: np.ndarray, hi: np.ndarray, threshold: float, margin: float, exact: ExactJaccard
) -> tuple[np.ndarray, int]:
    """Signature estimate for clear cases, exact Jaccard for pairs within `margin` of the threshold.

    Returns (keep mask, number of pairs checked exactly)."""
    P = sig.shape[1]
    estimate = np.empty(lo.size, dtype=np.float64)
    for c0 in range(0, lo.size, _VERIFY_CHUNK):
        c1 = c0 + _VERIFY_CHUNK
        estimate[c0:c1] = np.count_nonzero(sig[lo[c0:c1]] == sig[hi[c0:c1]], axis=1) / P
    keep = estimate >= threshold
    ambiguous = np.flatnonzero(np.abs(estimate - threshold) < margin)
    if ambiguous.size:
        keep[ambiguous] = exact(lo[ambiguous], hi[ambiguous]) >= threshold
    return keep, int(ambiguous.size)


class SignatureRows(Protocol):
    """(m, P) signatures by local row: an ndarray, or a view that reads rows from disk on demand."""

    shape: tuple[int, int]

    def __getitem__(self, rows: np.ndarray) -> np.ndarray: ...


def band_pairs(
    keys: np.ndarray, seen: np.ndarray, bucket_cap: int, anchors: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One band: the candidate pairs (lo, hi) not in `seen`, and `seen` with them added.

    `keys` are the band's (m,) bucket keys in local order; `seen` is the sorted int64 codes `lo * m + hi`
    of the pairs earlier bands examined. Pure: it depends only on its arguments.
    """
    m = keys.size
    lo, hi = bucket_pairs(keys, bucket_cap, anchors)
    codes = np.unique(lo * m + hi)
    codes = codes[~np.isin(codes, seen, assume_unique=True)]
    if codes.size == 0:
        return codes, codes, seen
    return codes // m, codes % m, np.union1d(seen, codes)


def estimate(sig: SignatureRows, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Estimated Jaccard (share of equal signature values over all P) of each pair, in blocks of pairs."""
    P = sig.shape[1]
    out = np.empty(lo.size, dtype=np.float64)
    for c0 in range(0, lo.size, _VERIFY_CHUNK):
        c1 = c0 + _VERIFY_CHUNK
        out[c0:c1] = np.count_nonzero(sig[lo[c0:c1]] == sig[hi[c0:c1]], axis=1) / P
    return out


def near_duplicates_banded(
    m: int,
    band_keys_of: Callable[[int], np.ndarray],
    sig: SignatureRows,
    bands: int,
    threshold: float,
    verify_mode: str,
    bucket_cap: int,
    anchors: int,
    exact: ExactJaccard | None = None,
    exact_margin: float = 0.15,
) -> NearDupGraph:
    """Cluster m rows, already in survivor-priority order, by LSH + verification, one band at a time.

    `band_keys_of(b)` gives band b's (m,) keys in local order; `sig[rows]` the signature rows of local
    indices. Each band's new pairs are verified by their signature estimate as soon as the band is done;
    with `verify_mode="exact"` and `exact`, the ambiguous ones (estimate within `exact_margin` of the
    threshold) are gathered over all bands and passed to `exact` in one call. A pair's decision does not
    depend on the band that found it, so this equals settling them band by band.
    """
    seen = np.zeros(0, dtype=np.int64)  # sorted codes lo*m + hi of pairs already examined
    edges_lo, edges_hi, amb_lo, amb_hi = [], [], [], []
    n_cand = 0
    use_exact = verify_mode == "exact" and exact is not None
    for band in range(bands):
        lo, hi, seen = band_pairs(band_keys_of(band), seen, bucket_cap, anchors)
        if lo.size == 0:
            continue
        n_cand += lo.size
        if verify_mode in ("signature", "exact"):
            est = estimate(sig, lo, hi)
            keep = est >= threshold
            if use_exact:
                ambiguous = np.abs(est - threshold) < exact_margin
                amb_lo.append(lo[ambiguous])
                amb_hi.append(hi[ambiguous])
                keep &= ~ambiguous
        else:
            keep = np.ones(lo.size, dtype=bool)
        edges_lo.append(lo[keep])
        edges_hi.append(hi[keep])
    n_exact = 0
    if amb_lo:
        alo, ahi = np.concatenate(amb_lo), np.concatenate(amb_hi)
        n_exact = int(alo.size)
        if alo.size:
            keep = np.asarray(exact(alo, ahi)) >= threshold
            edges_lo.append(alo[keep])
            edges_hi.append(ahi[keep])
    return graph_from_edges(m, edges_lo, edges_hi, n_cand, n_exact)


def graph_from_edges(m: int, edges_lo: list[np.ndarray], edges_hi: list[np.ndarray], candidate_pairs: int,
                     exact_checked: int) -> NearDupGraph:
    """The `NearDupGraph` of m rows from blocks of verified edges, in any order (per band, per task):
    edges sorted into (lo, hi) order, clusters by `components`."""
    lo = np.concatenate(edges_lo) if edges_lo else np.zeros(0, dtype=np.int64)
    hi = np.concatenate(edges_hi) if edges_hi else np.zeros(0, dtype=np.int64)
    canonical = np.argsort(lo * max(m, 1) + hi, kind="stable")
    lo, hi = lo[canonical], hi[canonical]
    return NearDupGraph(root=components(m, lo, hi), candidate_pairs=candidate_pairs, verified_pairs=int(lo.size),
                        edges=(lo, hi), exact_checked=exact_checked)


def near_duplicates(
    sig: np.ndarray,
    bands: int,
    rows: int,
    threshold: float,
    verify_mode: str,
    bucket_cap: int,
    anchors: int,
    exact: ExactJaccard | None = None,
    exact_margin: float = 0.15,
) -> NearDupGraph:
    """Cluster the rows of `sig` (m, P), already in survivor-priority order, by LSH + verification.

    The in-memory form of `near_duplicates_banded`: band keys are computed from `sig` band by band.
    """
    return near_duplicates_banded(
        sig.shape[0], lambda b: band_keys(sig[:, b * rows : (b + 1) * rows]), sig, bands, threshold,
        verify_mode, bucket_cap, anchors, exact=exact, exact_margin=exact_margin,
    )
