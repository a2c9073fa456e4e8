"""Connected components by alternating large-star and small-star steps (Kiveris et al., "Connected
Components in MapReduce and Beyond", SoCC 2014), as pure numpy steps over one partition of the edges.

Why: with the Ray engine no step may hold every edge, so components cannot be one union-find on the driver.
Each step is a reduce over the edges grouped by node, which a Ray Data `groupby` runs partition by partition
(`tasks.corpus.ray_components`); rounds take O(log^2 n) steps, a handful on near-duplicate graphs.

- `large_star(u, v)`: every node u with its neighbours v (both directions of every edge, all neighbours of u
  in the same partition): m = min(u, neighbours); emit edge (m, v) for every neighbour v > u.
- `small_star(u, v)`: every node u with its smaller neighbours v < u: m = min(v); emit (m, x) for every
  x in neighbours + u other than m.

A round is one large-star then one small-star. When neither changes anything (`changed == 0` for both), every
component is a star whose centre is its smallest node: edge (centre, leaf) gives leaf -> root. Node labels
are survivor ranks, so the smallest node of a component is its survivor, as with `tasks.dedup.lsh.components`.
"""

from __future__ import annotations

import numpy as np


def _segments(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (u, v) sorted by u, the first index of each run of equal u, and each run's length (a
    repeated pair, from two partitions, must not count as two neighbours)."""
    u, v = unique_edges(u, v)
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]]) if u.size else np.zeros(0, np.int64)
    return u, v, starts, np.diff(np.r_[starts, u.size])


def unique_edges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct edges (lo < hi), sorted by (lo, hi)."""
    if lo.size == 0:
        return lo.astype(np.int64), hi.astype(np.int64)
    pairs = np.unique(np.stack([lo, hi], axis=1).astype(np.int64), axis=0)
    return pairs[:, 0], pairs[:, 1]


def large_star(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Large-star over nodes u with all their neighbours v: edges (lo, hi), lo < hi, and how many edges
    moved (their new end m is not u)."""
    if u.size == 0:
        return u, v, 0
    u, v, starts, sizes = _segments(u, v)
    m = np.repeat(np.minimum(np.minimum.reduceat(v, starts), u[starts]), sizes)
    up = v > u
    lo, hi = unique_edges(m[up], v[up])
    return lo, hi, int(np.count_nonzero(m[up] != u[up]))


def small_star(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Small-star over nodes u with all their smaller neighbours v < u: edges (lo, hi), lo < hi, and how many
    nodes had two or more smaller neighbours (those that change the graph)."""
    if u.size == 0:
        return u, v, 0
    u, v, starts, sizes = _segments(u, v)
    m = np.minimum.reduceat(v, starts)
    m_of = np.repeat(m, sizes)
    other = v != m_of
    lo, hi = unique_edges(np.r_[m_of[other], m], np.r_[v[other], u[starts]])
    return lo, hi, int(np.count_nonzero(sizes >= 2))


def both_directions(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(node, neighbour) for both ends of every edge: the large-star input."""
    return np.r_[lo, hi], np.r_[hi, lo]


def star_roots(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(node, root) of every non-root node of the graph, by star rounds in one partition (the reference for
    the partitioned form, and a local union-find replacement: each local component becomes a star)."""
    lo, hi = unique_edges(np.asarray(lo, np.int64), np.asarray(hi, np.int64))
    while True:
        lo, hi, moved = large_star(*both_directions(lo, hi))
        lo, hi, split = small_star(hi, lo)
        if moved == 0 and split == 0:
            return hi, lo
