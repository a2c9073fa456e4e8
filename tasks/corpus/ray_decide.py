"""Global dedup with the Ray engine: every step over the whole corpus is a Ray Data job, so nothing on the
driver grows with the corpus (it holds per-unit figures, per-block references and counts only).

The decisions, counts, `removed.parquet` and kept rows equal the single-node path's
(`tasks.corpus.core.deduplicate_units`, engine "local"); `tests/cluster/test_dedup_ray.py` checks it. Steps,
each a Ray Data job over the rows `(row, unit, p, id, ek, sh)` (corpus row, unit index, source priority,
id, exact key, has shingles) read from the unit files one task per unit:

1. **id clashes**: rows hash-partitioned by id; `tasks.corpus.ids.id_clashes` per partition. The units
   involved are left out of every later step and reported as failed inputs.
2. **exact**: rows hash-partitioned by exact key; per key the first row in survivor order (source priority,
   id, row) survives, the others are exact copies of it (`s_row`, `s_id`).
3. **ranking**: the exact survivors that have shingles, sorted by (p, id, row) (`Dataset.sort`); a row's
   position is its local index, as the single-node path's `local`, so near dedup's codes, bucket anchors and
   cluster roots are the same.
4. **near**: `tasks.corpus.ray_dedup.near_pair_summaries` (LSH buckets and verification).
5. **components**: a union-find per verification task, then star rounds over the edges
   (`tasks.dedup.stars`), each a groupby by a hash of the node: every non-root node gets its root.
6. **final**: joins give each row its survivor: its exact survivor's near root, else its exact survivor.
   Removed rows are sorted by (id, row) and streamed into `removed.parquet` on the driver, one row group
   at a time; the kept rows go, grouped by unit, into one small Parquet file per unit under
   `<work>/dedup/kept/` (`tasks.shards.core.KeptRowFiles`), which the shard plan reads unit by unit.

Memory per task is bounded by a partition of about `rows_per_group` rows (or one unit). Needs `ray` to be
initialised (`flows.runners.ray_session`).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash
from fsspec.core import url_to_fs

from data_specs import DedupSpec
from tasks.corpus.ids import clash_errors, id_clashes, merge_clashes
from tasks.corpus.ray_blocks import column_sums, components, find_keys, join_layout, keyed_join
from tasks.corpus.ray_dedup import near_pair_summaries
from tasks.corpus.unit_files import fixed_list_matrix
from tasks.dedup.core import EXACT, NEAR, REASON_CODES
from tasks.dedup.minhash import EMPTY, _fmix64
from tasks.dedup.stars import star_roots
from tasks.shards.core import KEPT_ROWS_SCHEMA, AtomicParquetWriter, KeptRowFiles
from tasks.units.core import UnitResult

if TYPE_CHECKING:
    import ray.data

    from tasks.corpus.core import DedupOutcome

ROWS_PER_GROUP = 1 << 20  # rows per shuffle partition: tens of MB per task
_REMOVED_GROUP = 65536  # rows per row group of removed.parquet, as the single-node writer
_NAMES = {code: name for name, code in REASON_CODES.items()}


def deduplicate_ray(ordered: Sequence[UnitResult], spec: DedupSpec, work_dir: str,
                    rows_per_group: int = ROWS_PER_GROUP) -> DedupOutcome:
    """Global exact + near dedup of the units (in corpus order) as Ray Data jobs; the `DedupOutcome` of the
    single-node path, with the survivors as per-unit files."""
    import ray.data

    from tasks.corpus.core import REMOVED_SCHEMA, DedupOutcome

    paths = [r.path for r in ordered]
    counts = [pq.read_metadata(p, filesystem=fs).num_rows for fs, p in (url_to_fs(path) for path in paths)]
    starts = np.r_[0, np.cumsum(counts, dtype=np.int64)].astype(np.int64)
    n = int(starts[-1])
    parts = max(1, math.ceil(n / rows_per_group))
    prio = {kind: i for i, kind in enumerate(spec.source_priority)}
    if n == 0:
        return DedupOutcome(kept_rows=_kept_files(paths, []), removed={}, clusters=0, cluster_sizes={},
                            candidate_pairs=0, verified_pairs=0, exact_checked=0, removed_path=None,
                            kept_by_source={}, kept_languages={}, engine="ray")
    units = ray.data.from_items([{"unit": u, "path": p, "start": int(starts[u])} for u, p in enumerate(paths)
                                 if counts[u]], override_num_blocks=sum(1 for c in counts if c))
    rows = units.map_batches(_unit_rows, batch_size=1, batch_format="pyarrow",
                             fn_kwargs={"priority": prio, "parts": parts}).materialize()

    # 1. id clashes: the units involved are left out
    clash_parts = rows.groupby("idpart", num_partitions=parts).map_groups(_clashes, batch_format="pyarrow")
    clashes = merge_clashes([{r["unit"]: (r["id"], r["other"])} for r in clash_parts.take_all()])
    failed = clash_errors(clashes, ordered)
    if clashes:
        rows = rows.map_batches(_without_units, batch_format="pyarrow",
                                fn_kwargs={"units": np.asarray(sorted(clashes), np.int64)}).materialize()

    # 2. exact copies
    if spec.exact.enabled:
        exact = rows.groupby("ekpart", num_partitions=parts).map_groups(_exact_survivors, batch_format="pyarrow")
    else:
        exact = rows.map_batches(_self_survivors, batch_format="pyarrow")
    exact = exact.materialize()

    # 3.-5. near: ranked candidates, LSH + verification, components
    near_roots, candidate_pairs, verified_pairs, exact_checked = None, 0, 0, 0
    text_bytes_read = text_bytes_wanted = 0  # what the verification tasks read, summed
    if spec.minhash.enabled:
        cand = exact.map_batches(_candidates, batch_format="pyarrow").sort(["p", "id", "row"])
        cand, m = _with_local_index(cand)
        if m:
            items = cand.groupby("unit", num_partitions=parts).map_groups(_unit_locals, batch_format="pyarrow",
                                                    fn_kwargs={"paths": paths, "starts": starts})
            edges = near_pair_summaries(items, m, paths, starts, spec.minhash, rows_per_group).map_batches(
                _summary_edges, batch_size=1, batch_format="pyarrow").materialize()
            counts = column_sums(edges, ["candidates", "exact_checked", "verified", "text_bytes_read",
                                          "text_bytes_wanted"])
            candidate_pairs, exact_checked, verified_pairs = (counts[c] for c in ("candidates", "exact_checked",
                                                                                  "verified"))
            text_bytes_read, text_bytes_wanted = counts["text_bytes_read"], counts["text_bytes_wanted"]
            if verified_pairs:
                roots = components(edges.filter(expr="lo >= 0").select_columns(["lo", "hi"]), parts)
                near_roots = _near_roots(roots, cand, parts)

    # 6. final decisions
    final = _final(exact, near_roots, parts).materialize()
    removed = final.filter(expr="reason > 0")
    by_reason = column_sums(final, [f"reason={code}" for code in _NAMES])
    removed_counts = {_NAMES[code]: by_reason[f"reason={code}"] for code in _NAMES if by_reason[f"reason={code}"]}
    removed_path = None
    if removed_counts:
        removed_path = f"{work_dir.rstrip('/')}/dedup/removed.parquet"
        writer = AtomicParquetWriter(removed_path, REMOVED_SCHEMA)
        for batch in removed.sort(["id", "row"]).iter_batches(batch_size=_REMOVED_GROUP, batch_format="pyarrow"):
            names = pa.array(np.asarray([_NAMES[1], _NAMES[2]], dtype=object)[batch["reason"].to_numpy() - 1])
            writer.write(pa.table({"id": batch["id"], "reason": names, "survivor_id": batch["final_id"]},
                                  schema=REMOVED_SCHEMA), row_group_rows=_REMOVED_GROUP)
        writer.commit()
    sizes = (removed.groupby("final_row", num_partitions=parts).count()
             .map_batches(_cluster_size, batch_format="pyarrow").groupby("size", num_partitions=1).count()
             .take_all()) if removed_counts else []
    cluster_sizes = {int(r["size"]): int(r["count()"]) for r in sorted(sizes, key=lambda r: r["size"])}

    kept_dir = f"{work_dir.rstrip('/')}/dedup/kept"
    fs, kept_path = url_to_fs(kept_dir)
    if fs.exists(kept_path):
        fs.rm(kept_path, recursive=True)  # lmpipe's own folder: the kept rows of an earlier assembly
    per_unit = (final.filter(expr="reason == 0").select_columns(["row", "unit"]).groupby("unit", num_partitions=parts)
                .map_groups(_write_kept, batch_format="pyarrow",
                            fn_kwargs={"paths": paths, "starts": starts, "kept_dir": kept_dir}).take_all())
    return DedupOutcome(
        kept_rows=_kept_files(paths, per_unit),
        removed=dict(sorted(removed_counts.items())),
        clusters=sum(cluster_sizes.values()), cluster_sizes=cluster_sizes, candidate_pairs=candidate_pairs,
        verified_pairs=verified_pairs, exact_checked=exact_checked, removed_path=removed_path,
        kept_by_source=_kept_by_source(per_unit), kept_languages=_kept_languages(per_unit), engine="ray",
        failed_units=failed, text_bytes_read=text_bytes_read, text_bytes_wanted=text_bytes_wanted,
    )


def _unit_rows(batch: pa.Table, priority: dict[str, int], parts: int) -> pa.Table:
    """One unit file -> its rows (row, unit, p, id, ek, sh, idpart, ekpart): the columns every later step needs."""
    tables = []
    for u, path, start in zip(batch["unit"].to_pylist(), batch["path"].to_pylist(), batch["start"].to_pylist()):
        fs, fpath = url_to_fs(path)
        t = pq.read_table(fpath, columns=["id", "source", "exact_key", "minhash"], filesystem=fs)
        k = t.num_rows
        source = t["source"].combine_chunks().dictionary_encode()
        codes = np.asarray([priority.get(v, len(priority)) for v in source.dictionary.to_pylist()] or [0], np.int32)
        ids, ek = t["id"].combine_chunks(), t["exact_key"].combine_chunks()
        ek8 = np.frombuffer(ek.buffers()[1], np.uint8, k * 16, ek.offset * 16).reshape(k, 16)[:, :8].copy()
        id_hash = np.fromiter((xxhash.xxh3_64_intdigest(s.encode()) for s in ids.to_pylist()), np.uint64, k)
        tables.append(pa.table({
            "row": np.arange(start, start + k, dtype=np.int64), "unit": np.full(k, u, np.int32),
            "p": codes[source.indices.to_numpy(zero_copy_only=False)], "id": ids, "ek": ek,
            "sh": ~np.all(fixed_list_matrix(t["minhash"]) == EMPTY, axis=1),
            "idpart": (id_hash % np.uint64(parts)).astype(np.int64),
            "ekpart": (_fmix64(ek8.view(np.uint64).ravel()) % np.uint64(parts)).astype(np.int64),
        }))
    return pa.concat_tables(tables) if tables else _ROWS_SCHEMA.empty_table()


_ROWS_SCHEMA = pa.schema([("row", pa.int64()), ("unit", pa.int32()), ("p", pa.int32()), ("id", pa.string()),
                          ("ek", pa.binary(16)), ("sh", pa.bool_()), ("idpart", pa.int64()), ("ekpart", pa.int64())])


def _clashes(group: pa.Table) -> pa.Table:
    """One id partition -> (unit, id, other) per unit that holds a clashing id (its smallest one)."""
    found = id_clashes(group["id"], group["unit"].to_numpy(), group["ek"])
    return pa.table({"unit": pa.array(list(found), pa.int64()), "id": pa.array([v[0] for v in found.values()], pa.string()),
                     "other": pa.array([v[1] for v in found.values()], pa.int64())})


def _without_units(batch: pa.Table, units: np.ndarray) -> pa.Table:
    return batch.filter(pa.array(~np.isin(batch["unit"].to_numpy(), units)))


def _exact_survivors(group: pa.Table) -> pa.Table:
    """One exact-key partition: per key, the first row by (p, id, row) survives; each row gets its survivor."""
    t = group.take(pc.sort_indices(group, sort_keys=[("ek", "ascending"), ("p", "ascending"), ("id", "ascending"),
                                                     ("row", "ascending")]))
    k = t.num_rows
    ek = t["ek"].combine_chunks()
    keys = np.frombuffer(ek.buffers()[1], np.uint8, k * 16, ek.offset * 16).reshape(k, 16)
    first = np.flatnonzero(np.r_[True, np.any(keys[1:] != keys[:-1], axis=1)]) if k else np.zeros(0, np.int64)
    survivor = np.repeat(first, np.diff(np.r_[first, k]))
    return _with_survivor(t, pa.array(survivor, pa.int64()))


def _self_survivors(batch: pa.Table) -> pa.Table:
    """Exact dedup disabled: every row is its own survivor."""
    return _with_survivor(batch, pa.array(np.arange(batch.num_rows), pa.int64()))


def _with_survivor(t: pa.Table, survivor: pa.Array) -> pa.Table:
    return pa.table({"row": t["row"], "unit": t["unit"], "p": t["p"], "id": t["id"], "sh": t["sh"],
                     "s_row": t["row"].take(survivor), "s_id": t["id"].take(survivor)})


def _candidates(batch: pa.Table) -> pa.Table:
    """The near-dedup rows: exact survivors with shingles."""
    keep = pc.and_(pc.equal(batch["row"], batch["s_row"]), batch["sh"])
    return batch.filter(keep).select(["row", "unit", "p", "id"])


def _with_local_index(ds: ray.data.Dataset) -> tuple[ray.data.Dataset, int]:
    """A sorted dataset with each row's position (`local`) added, and the row count. The driver holds one
    reference and one count per block."""
    import ray
    import ray.data

    refs = ds.to_arrow_refs()
    sizes = ray.get([ray.remote(_num_rows).remote(r) for r in refs])
    offsets = np.r_[0, np.cumsum(sizes, dtype=np.int64)]
    add = ray.remote(_add_local)
    ranked = [add.remote(r, int(o)) for r, o in zip(refs, offsets[:-1].tolist())]
    return ray.data.from_arrow_refs(ranked) if ranked else ds, int(offsets[-1])


def _num_rows(table: pa.Table) -> int:
    return table.num_rows


def _add_local(table: pa.Table, offset: int) -> pa.Table:
    return table.append_column("local", pa.array(np.arange(offset, offset + table.num_rows, dtype=np.int64)))


def _unit_locals(group: pa.Table, paths: Sequence[str], starts: np.ndarray) -> dict[str, np.ndarray]:
    """One unit's candidates -> the near job's input row: local index per unit row, -1 for non-candidates."""
    u = int(group["unit"][0].as_py())
    start = int(starts[u])
    local = np.full(int(starts[u + 1]) - start, -1, dtype=np.int64)
    local[group["row"].to_numpy() - start] = group["local"].to_numpy()
    return {"path": np.array([paths[u]], dtype=object), "start": np.array([start], np.int64),
            "local": np.array([local.tobytes()], dtype=object)}


def _summary_edges(batch: pa.Table) -> pa.Table:
    """One verification task's edges -> its components as stars (node, root): fewer edges, same components."""
    lo = np.frombuffer(batch["lo"][0].as_py(), np.int64)
    hi = np.frombuffer(batch["hi"][0].as_py(), np.int64)
    node, root = star_roots(lo, hi)
    # the task's counts ride on an extra row (-1, -1), dropped before the components
    stats = {"candidates": batch["candidates"][0].as_py(), "exact_checked": batch["exact_checked"][0].as_py(),
             "verified": lo.size, "text_bytes_read": batch["text_bytes_read"][0].as_py(),
             "text_bytes_wanted": batch["text_bytes_wanted"][0].as_py()}
    return pa.table({"lo": np.r_[-1, root], "hi": np.r_[-1, node],
                     **{k: np.r_[v, np.zeros(node.size, np.int64)] for k, v in stats.items()}})


def _near_roots(roots: ray.data.Dataset, cand: ray.data.Dataset, parts: int) -> ray.data.Dataset:
    """Every near-removed candidate, as a lookup row keyed by its corpus row: (k = s_row, a = root_row,
    id = root_id); two joins with the ranked candidates (on the node, then on the root)."""
    table = cand.map_batches(_candidate_lookup, batch_format="pyarrow", fn_kwargs={"parts": parts})
    nodes = roots.map_batches(_node_queries, batch_format="pyarrow", fn_kwargs={"parts": parts})
    with_rows = keyed_join(nodes, table, parts, _node_rows)  # queries keyed by the root, a = the node's row
    return keyed_join(with_rows, table, parts, _root_rows)


def _candidate_lookup(batch: pa.Table, parts: int) -> pa.Table:
    return join_layout(batch["local"].to_numpy(), batch["row"], 0, parts, id=batch["id"])


def _node_queries(batch: pa.Table, parts: int) -> pa.Table:
    return join_layout(batch["hi"].to_numpy(), batch["lo"], 1, parts)


def _node_rows(queries: pa.Table, lookup: pa.Table, parts: int) -> pa.Table:
    at, _ = find_keys(lookup, queries["k"].to_numpy())  # every node is a candidate
    return join_layout(queries["a"].to_numpy(), lookup["a"].take(pa.array(at)), 1, parts)


def _root_rows(queries: pa.Table, lookup: pa.Table, parts: int) -> pa.Table:
    at, _ = find_keys(lookup, queries["k"].to_numpy())
    idx = pa.array(at)
    return join_layout(queries["a"].to_numpy(), lookup["a"].take(idx), 0, parts, id=lookup["id"].take(idx))


def _final(exact: ray.data.Dataset, near_roots: ray.data.Dataset | None, parts: int) -> ray.data.Dataset:
    """Every row with its reason and final survivor (row, id): its exact survivor's near root, else its exact
    survivor (`tasks.dedup.core.decide`'s `final[final]`)."""
    if near_roots is None:
        return exact.map_batches(_decision, batch_format="pyarrow")
    rows = exact.map_batches(_row_queries, batch_format="pyarrow", fn_kwargs={"parts": parts})
    return keyed_join(rows, near_roots, parts, _near_decision)


def _row_queries(batch: pa.Table, parts: int) -> pa.Table:
    return join_layout(batch["s_row"].to_numpy(), batch["row"], 1, parts, unit=batch["unit"], id=batch["id"],
                   s_id=batch["s_id"])


def _near_decision(queries: pa.Table, lookup: pa.Table, parts: int) -> pa.Table:
    at, near = find_keys(lookup, queries["k"].to_numpy())
    n = len(at)
    root_row, root_id = pa.nulls(n, pa.int64()), pa.nulls(n, pa.string())
    if lookup.num_rows:  # else no row of this partition was removed as a near duplicate
        idx = pa.array(at)
        root_row = pc.if_else(pa.array(near), lookup["a"].take(idx), root_row)
        root_id = pc.if_else(pa.array(near), lookup["id"].take(idx), root_id)
    batch = pa.table({"row": queries["a"], "unit": queries["unit"], "id": queries["id"], "s_row": queries["k"],
                      "s_id": queries["s_id"], "root_row": root_row, "root_id": root_id})
    return _decision(batch)


def _decision(batch: pa.Table) -> pa.Table:
    row, s_row = batch["row"].to_numpy(), batch["s_row"].to_numpy()
    final_row, final_id = batch["s_row"], batch["s_id"]
    near = np.zeros(batch.num_rows, bool)
    if "root_row" in batch.column_names:
        near = pc.is_valid(batch["root_row"]).to_numpy(zero_copy_only=False)
        final_row = pc.if_else(near, batch["root_row"], final_row)
        final_id = pc.if_else(near, batch["root_id"], final_id)
    reason = np.where(row != s_row, REASON_CODES[EXACT], np.where(near, REASON_CODES[NEAR], 0)).astype(np.int8)
    return pa.table({"row": row, "unit": batch["unit"], "id": batch["id"], "reason": reason,
                     "final_row": final_row, "final_id": final_id})


def _cluster_size(batch: pa.Table) -> pa.Table:
    return pa.table({"size": pc.add(batch["count()"], 1)})


def _write_kept(group: pa.Table, paths: Sequence[str], starts: np.ndarray, kept_dir: str) -> pa.Table:
    """One unit's kept rows -> its kept-row file, and one summary row (kept, text bytes, sources, languages)."""
    u = int(group["unit"][0].as_py())
    rows = np.sort(group["row"].to_numpy()) - int(starts[u])
    fs, path = url_to_fs(paths[u])
    t = pq.read_table(path, columns=["n_bytes", "source", "lang"], filesystem=fs).take(pa.array(rows))
    file = f"{kept_dir}/unit-{u:07d}.parquet"
    writer = AtomicParquetWriter(file, KEPT_ROWS_SCHEMA)
    writer.write(pa.table({"row": rows, "n_bytes": t["n_bytes"]}, schema=KEPT_ROWS_SCHEMA), row_group_rows=1 << 20)
    writer.commit()
    lang = pc.if_else(pc.equal(t["lang"], ""), pa.scalar(None, pa.string()), t["lang"]).fill_null("unknown")
    first: dict[str, int] = {}
    for k, value in enumerate(lang.to_pylist()):
        first.setdefault(value, int(starts[u]) + int(rows[k]))
    langs = Counter(lang.to_pylist())
    return pa.table({"unit": [u], "file": [file], "kept": [len(rows)], "text_bytes": [int(pc.sum(t["n_bytes"]).as_py())],
                     "sources": [json.dumps(Counter(t["source"].to_pylist()))],
                     "langs": [json.dumps({v: [c, first[v]] for v, c in langs.items()})]})


def _kept_files(paths: Sequence[str], per_unit: list[dict]) -> KeptRowFiles:
    by_unit = {int(r["unit"]): r for r in per_unit}
    rows = [by_unit.get(u) for u in range(len(paths))]
    return KeptRowFiles(paths=tuple(paths), files=tuple(r["file"] if r else None for r in rows),
                        counts=tuple(int(r["kept"]) if r else 0 for r in rows),
                        text_bytes=tuple(int(r["text_bytes"]) if r else 0 for r in rows))


def _kept_by_source(per_unit: list[dict]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for r in per_unit:
        total.update(json.loads(r["sources"]))
    return dict(sorted(total.items()))


def _kept_languages(per_unit: list[dict]) -> dict[str, int]:
    """As `Counter(values).most_common()` over the survivors in corpus order: ties in order of first appearance."""
    count: Counter[str] = Counter()
    first: dict[str, int] = {}
    for r in per_unit:
        for value, (c, row) in json.loads(r["langs"]).items():
            count[value] += c
            first[value] = min(first.get(value, row), row)
    return dict(sorted(count.items(), key=lambda kv: (-kv[1], first[kv[0]])))
