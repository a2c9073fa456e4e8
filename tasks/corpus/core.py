"""Assemble the curated corpus from finished units: global dedup, balanced shard plan, manifest, data card.

Dedup runs over all units at once (all sources), reading only the small dedup columns (`id`,
`source`, `exact_key`, `minhash`, `n_bytes`), never the text. Its decisions depend only on the
documents, so the corpus is the same for any worker count.

Ids must be unique across the whole corpus (every source, wiki and folder): `removed.parquet` maps
an id to its survivor, and shards are keyed by id. Dedup checks this while it reads the ids (one set of
the id strings it already holds) and raises `DuplicateDocumentId`, naming the id and both inputs, before
anything is written: two different documents under one id is a spec or reader problem, never a duplicate
to drop. The one exception is the same document read twice (same id, same text: two overlapping slices of
one crawl file, one book listed under two patterns): that is a true exact duplicate, and exact dedup keeps
its first copy (`removed.parquet` then maps the id to itself).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from data_specs import DedupSpec
from tasks.dedup.core import ExactJaccard, find_duplicates
from tasks.shards.core import AtomicParquetWriter, ShardPlan, plan_balanced_shards
from tasks.units.core import UnitResult

REMOVED_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("survivor_id", pa.string(), nullable=False),
    ]
)


class DuplicateDocumentId(ValueError):
    """Two kept documents share an id; the message names the id and the input of each."""


@dataclass(frozen=True)
class DedupOutcome:
    """Global dedup decisions: which unit rows survive, and counts for the manifest."""

    kept_rows: tuple[tuple[str, int, int], ...]  # (unit path, row, text bytes) in corpus order
    removed: dict[str, int]                      # reason -> documents removed
    clusters: int
    cluster_sizes: dict[int, int]
    candidate_pairs: int
    verified_pairs: int
    exact_checked: int                           # ambiguous pairs settled by exact Jaccard from the text
    removed_path: str | None
    kept_by_source: dict[str, int]
    kept_languages: dict[str, int]


def unit_order(results: Sequence[UnitResult]) -> list[UnitResult]:
    """Corpus order: source order in the spec, then input URL, then byte range."""
    return sorted(results, key=lambda r: (r.source_index, r.url, r.start or 0))


def deduplicate_units(results: Sequence[UnitResult], spec: DedupSpec, work_dir: str) -> DedupOutcome:
    """Global exact + near dedup over every unit's rows; writes the removed ids with their survivors."""
    ordered = [r for r in unit_order(results) if r.kept]
    ids: list[str] = []
    sources: list[str] = []
    keys: list[bytes] = []
    langs: list[str | None] = []
    sigs: list[np.ndarray] = []
    locations: list[tuple[str, int, int]] = []
    rows_per_unit: list[int] = []
    for result in ordered:
        fs, path = url_to_fs(result.path)
        table = pq.read_table(path, columns=["id", "source", "lang", "exact_key", "minhash", "n_bytes"], filesystem=fs)
        rows_per_unit.append(table.num_rows)
        ids.extend(table["id"].to_pylist())
        sources.extend(table["source"].to_pylist())
        keys.extend(table["exact_key"].to_pylist())
        langs.extend(table["lang"].to_pylist())
        minhash = table["minhash"].combine_chunks()
        sigs.append(minhash.values.to_numpy().reshape(len(minhash), minhash.type.list_size))
        locations.extend((result.path, row, n) for row, n in enumerate(table["n_bytes"].to_pylist()))
    check_unique_ids(ids, ordered, rows_per_unit, keys)
    num_perm = spec.minhash.num_perm
    signatures = np.concatenate(sigs) if sigs else np.zeros((0, num_perm), np.uint32)
    exact = ExactJaccard(lambda rows: _load_texts(locations, rows), spec.minhash.ngram)
    decision = find_duplicates(ids, sources, keys, signatures, spec, exact_jaccard=exact)

    removed_counts = Counter(reason for reason, _ in decision.removed.values())
    removed_path = None
    if decision.removed:
        order = sorted(decision.removed, key=lambda i: ids[i])
        removed_path = f"{work_dir.rstrip('/')}/dedup/removed.parquet"
        writer = AtomicParquetWriter(removed_path, REMOVED_SCHEMA)
        writer.write(
            pa.table(
                {
                    "id": [ids[i] for i in order],
                    "reason": [decision.removed[i][0] for i in order],
                    "survivor_id": [ids[decision.removed[i][1]] for i in order],
                },
                schema=REMOVED_SCHEMA,
            ),
            row_group_rows=65536,
        )
        writer.commit()
    survivors = [i for i in range(len(ids)) if i not in decision.removed]
    kept = tuple(locations[i] for i in survivors)
    return DedupOutcome(
        kept_rows=kept,
        removed=dict(sorted(removed_counts.items())),
        clusters=decision.clusters,
        cluster_sizes=dict(sorted(decision.cluster_sizes.items())),
        candidate_pairs=decision.candidate_pairs,
        verified_pairs=decision.verified_pairs,
        exact_checked=decision.exact_checked,
        removed_path=removed_path,
        kept_by_source=dict(sorted(Counter(sources[i] for i in survivors).items())),
        kept_languages=dict(Counter(langs[i] or "unknown" for i in survivors).most_common()),
    )


def check_unique_ids(ids: Sequence[str], units: Sequence[UnitResult], rows_per_unit: Sequence[int],
                     exact_keys: Sequence[bytes]) -> None:
    """Raise `DuplicateDocumentId` for the first id held by two different documents (`exact_keys` differ);
    `ids` are the rows of `units` in order. The same id with the same text is one document read twice: allowed.

    O(n): one set over `ids` (it references the strings already held: a few tens of bytes per id); the
    slower pass that finds both rows runs only when an id repeats.
    """
    if len(set(ids)) == len(ids):
        return
    ends = np.cumsum(rows_per_unit)
    first_row: dict[str, int] = {}
    for row, doc_id in enumerate(ids):
        if doc_id in first_row and exact_keys[first_row[doc_id]] != exact_keys[row]:
            a, b = (units[int(np.searchsorted(ends, r, side="right"))] for r in (first_row[doc_id], row))
            raise DuplicateDocumentId(
                f"document id {doc_id!r} is held by two different documents: {_describe(a)} and {_describe(b)}; "
                "ids must be unique across sources (see the id scheme in the reader's module docstring)"
            )
        first_row.setdefault(doc_id, row)


def _describe(unit: UnitResult) -> str:
    """`source #i (kind) label <url>`: enough to find the input in the spec and on disk."""
    return f"source #{unit.source_index} ({unit.kind}) {unit.label} <{unit.url}>"


def _load_texts(locations: Sequence[tuple[str, int, int]], rows: np.ndarray) -> list[str]:
    """Texts of the given corpus rows, reading each unit file once (only for ambiguous LSH pairs)."""
    by_unit: dict[str, list[int]] = {}
    for row in rows.tolist():
        by_unit.setdefault(locations[row][0], []).append(row)
    texts: dict[int, str] = {}
    for unit_path, unit_rows in by_unit.items():
        fs, path = url_to_fs(unit_path)
        column = pq.read_table(path, columns=["text"], filesystem=fs)["text"]
        picked = column.take(pa.array([locations[r][1] for r in unit_rows], pa.int64())).to_pylist()
        texts.update(zip(unit_rows, picked))
    return [texts[r] for r in rows.tolist()]


def plan_shards(outcome: DedupOutcome, output: str, target_mb: float) -> list[ShardPlan]:
    """Balanced shard plan for the surviving rows under `output/data/`."""
    return plan_balanced_shards(outcome.kept_rows, f"{output.rstrip('/')}/data", int(target_mb * 1_000_000))


def read_manifest(output: str) -> dict | None:
    """The manifest at an output root, or None."""
    fs, path = url_to_fs(f"{output.rstrip('/')}/manifest.json")
    if not fs.exists(path):
        return None
    with fs.open(path, "r") as f:
        return json.load(f)


def remove_stale_shards(output: str, keep: set[str]) -> list[str]:
    """Delete shard files under `output/data/` that the current plan does not name (a changed spec)."""
    fs, data = url_to_fs(f"{output.rstrip('/')}/data")
    if not fs.exists(data):
        return []
    stale = [p for p in fs.ls(data, detail=False) if p.rsplit("/", 1)[-1] not in keep]
    for path in stale:
        fs.rm(path)
    return stale
