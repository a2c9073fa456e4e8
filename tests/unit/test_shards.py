"""Balanced shard plans, atomic writes, streamed shard writing, data card examples and manifest reconciliation."""

from __future__ import annotations

import random
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.clean.core import SIGNAL_NAMES
from tasks.corpus.manifest import ReconcileError, check_reconciles, sample_examples
from tasks.shards.core import (
    DOC_COLUMNS,
    DOC_SCHEMA,
    AtomicParquetWriter,
    ShardPlan,
    bounded_in_order,
    file_sha256,
    plan_balanced_shards,
    row_group_runs,
    unit_schema,
    write_bytes_atomic,
    write_shard,
)


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


# ---- streamed shard writing ------------------------------------------------------------------------------------


def _write_shard_whole_units(plan: ShardPlan, row_group_rows: int, compression_level: int) -> str:
    """The shard writer before issue 9 (whole unit read, then `take`): the byte-identity reference."""
    writer = AtomicParquetWriter(plan.path, DOC_SCHEMA, compression_level)
    for piece in plan.slices:
        table = pq.read_table(piece.unit_path, columns=DOC_COLUMNS)
        writer.write(table.take(pa.array(piece.rows, pa.int64())), row_group_rows)
    writer.commit()
    return file_sha256(plan.path)[0]


def _unit_rows(n: int, seed: int, source: str) -> dict[str, list]:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(300)]
    texts = [" ".join(rng.choices(words, k=rng.choice([3, 50, 400, 4000]))) for _ in range(n)]
    cols: dict[str, list] = {
        "id": [f"{source}/{seed}/{i}" for i in range(n)],
        "text": texts,
        "source": [source] * n,
        "url": [None if i % 3 else f"http://x/{i}" for i in range(n)],
        "title": [None if i % 4 == 1 else f"T{i}" for i in range(n)],
        "date": [None] * n,
        "origin": ["o"] * n,
        "lang": ["en"] * n,
        "lang_score": [rng.random() for _ in range(n)],
        **{name: [None if i % 5 == 0 else rng.random() for i in range(n)] for name in SIGNAL_NAMES},
        "n_bytes": [len(t.encode()) for t in texts],
        "exact_key": [rng.randbytes(16) for _ in range(n)],
        "minhash": [[rng.getrandbits(32) for _ in range(4)] for _ in range(n)],
    }
    return cols


@pytest.fixture(scope="module")
def units(tmp_path_factory) -> list[str]:
    """Three unit files written as units are (uneven row groups from several batches), ~2 MB of text."""
    root = tmp_path_factory.mktemp("units")
    paths = []
    for k, (n, batches) in enumerate([(150, [64, 50, 7, 29]), (20, [20]), (200, [100, 100])]):
        path = str(root / f"u{k}.parquet")
        writer = AtomicParquetWriter(path, unit_schema(4))
        table = pa.table(_unit_rows(n, k, ["books", "wikipedia", "common_crawl"][k]), schema=writer.schema)
        start = 0
        for size in batches:
            writer.write(table.slice(start, size), row_group_rows=64)
            start += size
        writer.commit()
        paths.append(path)
    return paths


def test_row_group_runs_split_rows_by_group():
    starts = [0, 3, 5, 9]
    assert list(row_group_runs([0, 2, 3, 4, 8], starts)) == [(0, [0, 2]), (1, [0, 1]), (2, [3])]
    assert list(row_group_runs([4, 0, 1], starts)) == [(1, [1]), (0, [0, 1])]
    with pytest.raises(IndexError):
        list(row_group_runs([9], starts))


@pytest.mark.parametrize("row_group_rows, target_bytes", [(1024, 3_000_000), (7, 300_000), (2, 1_000_000)])
def test_streamed_shards_are_byte_identical_to_whole_unit_shards(units, tmp_path, row_group_rows, target_bytes):
    rng = random.Random(row_group_rows)
    kept = []
    for path in units:
        sizes = pq.read_table(path, columns=["n_bytes"])["n_bytes"].to_pylist()
        kept += [(path, row, n) for row, n in enumerate(sizes) if rng.random() < 0.7]  # scattered survivors
    plans = plan_balanced_shards(kept, str(tmp_path / "new"), target_bytes)
    assert plans and plans[-1].count == len(plans)
    for plan in plans:
        entry = write_shard(plan, row_group_rows, 3)
        old = ShardPlan(plan.index, plan.count, str(tmp_path / "old" / plan.name), plan.slices, plan.rows,
                        plan.text_bytes)
        assert entry["sha256"] == _write_shard_whole_units(old, row_group_rows, 3)
        assert entry["rows"] == plan.rows == pq.ParquetFile(plan.path).metadata.num_rows


# ---- data card examples ----------------------------------------------------------------------------------------


def _reads_of(monkeypatch) -> list[tuple[int, tuple[str, ...]]]:
    """Record every (row group, columns) read through ParquetFile.read_row_group."""
    reads: list[tuple[int, tuple[str, ...]]] = []
    original = pq.ParquetFile.read_row_group

    def spy(self, i, columns=None, **kwargs):
        reads.append((i, tuple(columns or ())))
        return original(self, i, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy)
    return reads


def test_sample_examples_quote_first_rows_and_read_text_of_few_row_groups(units, tmp_path, monkeypatch):
    kept = [(path, row, 1) for path in units for row in range(pq.ParquetFile(path).metadata.num_rows)]
    plans = plan_balanced_shards(kept, str(tmp_path / "data"), target_bytes=200)
    shards = [write_shard(plan, 16, 1) for plan in plans]
    table = pq.read_table(tmp_path / "data")
    expected: dict[str, list] = {}
    for row in table.to_pylist():  # the first 2 rows of every source in corpus order
        bucket = expected.setdefault(row["source"], [])
        if len(bucket) < 2:
            where = row["title"] or row["url"] or ""
            bucket.append({"id": row["id"], "where": where, "text": row["text"][:30].replace("\n", " ")})
    counts = table.group_by("source").aggregate([("id", "count")]).to_pylist()
    kept_by_source = {r["source"]: r["id_count"] for r in counts}
    reads = _reads_of(monkeypatch)
    assert sample_examples(str(tmp_path), shards, 2, 30, kept_by_source) == expected
    text_reads = [r for r in reads if "text" in r[1]]
    assert len(text_reads) == 3  # one row group per source holds its first two rows
    assert reads[-1] == text_reads[-1]  # it stopped as soon as every source was quoted
    total_groups = sum(pq.ParquetFile(tmp_path / "data" / s["path"]).metadata.num_row_groups for s in shards)
    assert len(reads) - 3 < total_groups
    reads.clear()  # without the per-source counts it scans the source column to the end, text still of 3 groups
    assert sample_examples(str(tmp_path), shards, 2, 30) == expected
    assert len([r for r in reads if "text" in r[1]]) == 3 and len(reads) == total_groups + 3


# ---- bounded_in_order: nothing in flight outlives it -------------------------------------------------------------


class _SlowWrites:
    """Fake shard tasks: item 0 fails once items 1 and 2 are running; those "write" only when `gate` opens,
    which a timer does 0.5 s later. `written` records every write; a snapshot of it, taken as soon as
    `bounded_in_order` gives control back, shows whether a write could still happen after that moment."""

    def __init__(self) -> None:
        self.submitted: list[int] = []
        self.written: list[int] = []
        self.started = {1: threading.Event(), 2: threading.Event()}
        self.gate = threading.Event()
        threading.Timer(0.5, self.gate.set).start()

    def __call__(self, i: int) -> int:
        if i == 0:
            for event in self.started.values():
                assert event.wait(timeout=30)
            raise RuntimeError("shard 0 failed")
        if i in self.started:
            self.started[i].set()
        assert self.gate.wait(timeout=30)
        self.written.append(i)
        return i


def test_bounded_in_order_waits_for_tasks_in_flight_before_raising():
    work = _SlowWrites()
    with ThreadPoolExecutor(max_workers=4) as pool:
        def submit(i: int) -> Future:
            work.submitted.append(i)
            return pool.submit(work, i)

        with pytest.raises(RuntimeError, match="shard 0 failed"):
            list(bounded_in_order(submit, range(6), limit=3))
        written_when_raised = sorted(work.written)
    assert written_when_raised == [1, 2]  # both in-flight writes ended before the error left (the lock is held)
    assert work.submitted == [0, 1, 2]  # and nothing was submitted after the failure


def test_bounded_in_order_closed_early_waits_for_tasks_in_flight():
    work = _SlowWrites()
    work.started[1].set()  # item 0 succeeds at once here: the caller stops after its first result
    work.started[2].set()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = bounded_in_order(lambda i: pool.submit(lambda: i if i == 0 else work(i)), range(6), limit=3)
        assert next(results) == 0
        results.close()  # what the flow's `closing()` does when its loop raises
        written_when_closed = sorted(work.written)
    assert written_when_closed == [1, 2]  # the two still in flight finished before close() returned
