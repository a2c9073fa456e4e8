"""Ray Data building blocks of the driverless dedup (`tasks.corpus.ray_decide`): column sums by block,
connected components by star rounds, and keyed joins built on groupby.

Each works on datasets of any size with memory per task bounded by one hash partition; none collects rows on
the driver (the sums return one integer per column).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.dedup.minhash import _fmix64
from tasks.dedup.stars import both_directions, large_star, small_star

if TYPE_CHECKING:
    import ray.data


def column_sums(ds: ray.data.Dataset, columns: Sequence[str]) -> dict[str, int]:
    """Sums of a materialized dataset's columns, one small task per block (cheaper than a Ray Data job)."""
    import ray

    task = ray.remote(_block_sums)
    totals = ray.get([task.remote(ref, list(columns)) for ref in ds.get_internal_block_refs()])
    return {c: int(sum(t[c] for t in totals)) for c in columns}


def _block_sums(block, columns: list[str]) -> dict[str, int]:
    from ray.data.block import BlockAccessor

    table = BlockAccessor.for_block(block).to_arrow()
    out = {}
    for c in columns:  # "col" sums the column, "col=v" counts the rows where it equals v
        name, _, value = c.partition("=")
        column = table[name].to_numpy() if table.num_rows else np.zeros(0, np.int64)
        out[c] = int(np.count_nonzero(column == int(value)) if value else column.sum())
    return out


def components(edges: ray.data.Dataset, parts: int) -> ray.data.Dataset:
    """Star rounds until nothing moves: (lo = root, hi = node) for every non-root node."""
    while True:
        ls = (edges.map_batches(_large_star_input, batch_format="pyarrow", fn_kwargs={"parts": parts})
              .groupby("part", num_partitions=parts).map_groups(_large_star, batch_format="pyarrow").materialize())
        ss = (ls.map_batches(_small_star_input, batch_format="pyarrow", fn_kwargs={"parts": parts})
              .groupby("part", num_partitions=parts).map_groups(_small_star, batch_format="pyarrow").materialize())
        moved, split = column_sums(ls, ["changed"])["changed"], column_sums(ss, ["changed"])["changed"]
        edges = ss.select_columns(["lo", "hi"])
        if moved == 0 and split == 0:
            return edges


def hash_part(nodes: np.ndarray, parts: int) -> np.ndarray:
    """The hash partition (0..parts-1) of each int64 key: the same key lands in the same partition everywhere."""
    return (_fmix64(nodes.astype(np.uint64)) % np.uint64(parts)).astype(np.int64)


def _large_star_input(batch: pa.Table, parts: int) -> pa.Table:
    u, v = both_directions(batch["lo"].to_numpy(), batch["hi"].to_numpy())
    return pa.table({"u": u, "v": v, "part": hash_part(u, parts)})


def _small_star_input(batch: pa.Table, parts: int) -> pa.Table:
    hi = batch["hi"].to_numpy()
    return pa.table({"u": hi, "v": batch["lo"].to_numpy(), "part": hash_part(hi, parts)})


def _star_output(lo: np.ndarray, hi: np.ndarray, changed: int) -> pa.Table:
    flag = np.zeros(lo.size, np.int64)
    if lo.size:
        flag[0] = changed
    return pa.table({"lo": lo.astype(np.int64), "hi": hi.astype(np.int64), "changed": flag})


def _large_star(group: pa.Table) -> pa.Table:
    return _star_output(*large_star(group["u"].to_numpy(), group["v"].to_numpy()))


def _small_star(group: pa.Table) -> pa.Table:
    return _star_output(*small_star(group["u"].to_numpy(), group["v"].to_numpy()))


# Keyed joins without Ray Data's `Dataset.join` (it needs polars, which lmpipe does not install): both sides in
# one layout, `side` 0 = the lookup table (unique keys), 1 = the queries, grouped by a hash of the key `k`.
JOIN_SCHEMA = pa.schema([("k", pa.int64()), ("part", pa.int64()), ("side", pa.int8()), ("a", pa.int64()),
                          ("unit", pa.int32()), ("id", pa.string()), ("s_id", pa.string())])


def join_layout(k: np.ndarray, a: pa.Array | np.ndarray, side: int, parts: int, unit=None, id=None, s_id=None) -> pa.Table:
    n = len(k)
    return pa.table({"k": k, "part": hash_part(k, parts), "side": np.full(n, side, np.int8), "a": a,
                     "unit": unit if unit is not None else pa.nulls(n, pa.int32()),
                     "id": id if id is not None else pa.nulls(n, pa.string()),
                     "s_id": s_id if s_id is not None else pa.nulls(n, pa.string())}, schema=JOIN_SCHEMA)


def keyed_join(queries: ray.data.Dataset, lookup: ray.data.Dataset, parts: int, fn) -> ray.data.Dataset:
    """`fn(queries, lookup, parts)` per partition of the key space, `lookup` sorted by key."""
    return queries.union(lookup).groupby("part", num_partitions=parts).map_groups(
        _join_partition, batch_format="pyarrow", fn_kwargs={"fn": fn, "parts": parts})


def _join_partition(group: pa.Table, fn, parts: int) -> pa.Table:
    side = group["side"].to_numpy()
    lookup = group.filter(pa.array(side == 0))
    lookup = lookup.take(pc.sort_indices(lookup, sort_keys=[("k", "ascending")]))
    return fn(group.filter(pa.array(side == 1)), lookup, parts)


def find_keys(lookup: pa.Table, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of `keys` in the sorted `lookup`, and which of them are there."""
    k = lookup["k"].to_numpy()
    if k.size == 0:
        return np.zeros(keys.size, np.int64), np.zeros(keys.size, bool)
    at = np.minimum(np.searchsorted(k, keys), k.size - 1)
    return at, k[at] == keys
