"""Id clashes: one id held by two different documents fails the inputs involved, never the run.

Ids must be unique across the corpus (`removed.parquet` maps an id to its survivor, shards are keyed by id).
Two rows under one id with different exact keys are two different documents: a spec or reader problem,
not a duplicate to drop. Every unit holding such an id is reported as a failed input (error
`DuplicateDocumentId: ...` naming the id and both inputs) and its rows stay out of dedup and the shards; the
rest of the corpus ships. The same id with the same text is one document read twice (overlapping slices of a
crawl file): exact dedup keeps its first copy, no error.

`id_clashes` is pure: the single-node path calls it on all rows at once, the Ray engine on each hash
partition of the ids (all rows of an id are in one partition), then keeps the smallest id per unit; both
give the same failed units and messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.units.core import UnitResult

ID_CLASH = "corpus/id_clash"  # drop reason of a failed unit's documents: they were read, then left out


class DuplicateDocumentId(ValueError):
    """Two different documents share an id; the message names the id and the input of each."""


def id_clashes(ids: pa.Array | pa.ChunkedArray, units: np.ndarray, exact_keys: pa.Array | pa.ChunkedArray,
               ) -> dict[int, tuple[str, int]]:
    """unit -> (smallest clashing id it holds, the other unit: the first, in unit order, holding that id with
    another text; the unit itself when it holds both). An id clashes when its rows have two exact keys."""
    table = pa.table({"id": ids, "unit": np.asarray(units, np.int64), "ek": exact_keys})
    counts = table.group_by("id").aggregate([("ek", "count_distinct")])
    bad = counts.filter(pc.greater(counts["ek_count_distinct"], 1))["id"]
    if len(bad) == 0:
        return {}
    rows = table.filter(pc.is_in(table["id"], value_set=bad.combine_chunks()))
    rows = rows.take(pc.sort_indices(rows, sort_keys=[("id", "ascending"), ("unit", "ascending")]))
    out: dict[int, tuple[str, int]] = {}
    held: dict[str, list[tuple[int, bytes]]] = {}
    for doc_id, unit, key in zip(rows["id"].to_pylist(), rows["unit"].to_pylist(), rows["ek"].to_pylist()):
        held.setdefault(doc_id, []).append((unit, key))
    for doc_id in sorted(held):
        holders = held[doc_id]
        for unit, key in holders:
            if unit in out:
                continue
            other = next(u for u, k in holders if k != key)
            out[unit] = (doc_id, other)
    return out


def merge_clashes(parts: Sequence[dict[int, tuple[str, int]]]) -> dict[int, tuple[str, int]]:
    """The clashes of several id partitions: per unit, the smallest id (as `id_clashes` over all rows)."""
    out: dict[int, tuple[str, int]] = {}
    for part in parts:
        for unit, (doc_id, other) in part.items():
            if unit not in out or doc_id < out[unit][0]:
                out[unit] = (doc_id, other)
    return dict(sorted(out.items()))


def clash_errors(clashes: dict[int, tuple[str, int]], units: Sequence[UnitResult]) -> dict[str, str]:
    """unit path -> the error the manifest shows for it."""
    errors = {}
    for u, (doc_id, other) in clashes.items():
        a, b = sorted((u, other))
        errors[units[u].path] = (
            f"DuplicateDocumentId: document id {doc_id!r} is held by two different documents: {describe(units[a])} "
            f"and {describe(units[b])}; ids must be unique across sources (see the id scheme in the reader's "
            "module docstring). This input was left out of the corpus: fix the ids (or the sources) and rerun"
        )
    return errors


def describe(unit: UnitResult) -> str:
    """`source #i (kind) label <url>`: enough to find the input in the spec and on disk."""
    return f"source #{unit.source_index} ({unit.kind}) {unit.label} <{unit.url}>"


def fail_clashing_units(results: Sequence[UnitResult], failed: dict[str, str]) -> list[UnitResult]:
    """The unit results as the manifest reports them: a unit left out for an id clash is a failed input, its
    kept documents counted as dropped (`corpus/id_clash`), so the counts still reconcile."""
    out = []
    for r in results:
        if r.kept and r.path in failed:
            drops = {**r.drops, ID_CLASH: r.drops.get(ID_CLASH, 0) + r.kept}
            error = failed[r.path] if r.error is None else f"{r.error}; {failed[r.path]}"
            r = replace(r, error=error, kept=0, text_bytes=0, drops=drops)
        out.append(r)
    return out
