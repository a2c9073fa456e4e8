"""Balanced shard plans, atomic writes and manifest reconciliation."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.corpus.manifest import ReconcileError, check_reconciles
from tasks.shards.core import DOC_SCHEMA, AtomicParquetWriter, plan_balanced_shards, write_bytes_atomic


def test_plan_balances_bytes_and_keeps_order():
    rows = [("u1", i, 100) for i in range(10)] + [("u2", i, 100) for i in range(10)]
    plans = plan_balanced_shards(rows, "/out/data", target_bytes=700)
    assert [p.count for p in plans] == [3, 3, 3]
    assert [p.rows for p in plans] == [7, 7, 6]
    flat = [(s.unit_path, r) for p in plans for s in p.slices for r in s.rows]
    assert flat == [(u, r) for u, r, _ in rows]
    assert plans[0].path.endswith("shard-00000-of-00003.parquet")


def test_plan_is_deterministic_and_never_more_shards_than_rows():
    rows = [("u", 0, 10_000)]
    assert len(plan_balanced_shards(rows, "/d", target_bytes=10)) == 1
    assert plan_balanced_shards([], "/d", target_bytes=10) == []
    many = [("u", i, (i * 37) % 101 + 1) for i in range(500)]
    assert plan_balanced_shards(many, "/d", 900) == plan_balanced_shards(many, "/d", 900)


def test_atomic_writer_leaves_nothing_on_abort(tmp_path):
    path = str(tmp_path / "x.parquet")
    writer = AtomicParquetWriter(path, DOC_SCHEMA)
    writer.abort()
    assert list(tmp_path.iterdir()) == []
    writer = AtomicParquetWriter(path, DOC_SCHEMA)
    empty = pa.Table.from_pylist([], schema=DOC_SCHEMA)
    writer.write(empty, 10)
    writer.commit()
    assert pq.read_table(path).schema.equals(DOC_SCHEMA)
    write_bytes_atomic(str(tmp_path / "m.json"), b"{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "x.parquet"]


def test_reconcile_check_catches_lost_documents():
    manifest = {
        "counts": {"documents_in": 10, "kept": 5, "dropped": 3, "duplicates_removed": 2},
        "drop_reasons": {"a/b": 3},
        "shards": [{"rows": 5}],
    }
    check_reconciles(manifest)
    manifest["counts"]["documents_in"] = 11
    with pytest.raises(ReconcileError, match="documents_in 11"):
        check_reconciles(manifest)
