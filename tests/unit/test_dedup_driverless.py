"""The pieces of the Ray engine's driverless dedup, as pure functions (no Ray here):

- components by star rounds (`tasks.dedup.stars`), whole and split over hash partitions as the Ray Data job
  runs them, equal union-find (`tasks.dedup.lsh.components`) on random graphs, paths and stars;
- exact grouping per partition picks the survivor by (source priority, id, row), ties included;
- id clashes name the smallest clashing id and the other input, the same per partition as over all rows;
- the shard plan read from per-unit kept-row files equals the plan over the whole kept-row arrays.
"""

from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa
import pytest

from tasks.corpus.ids import ID_CLASH, fail_clashing_units, id_clashes, merge_clashes
from tasks.corpus.ray_blocks import hash_part
from tasks.corpus.ray_decide import _exact_survivors
from tasks.dedup.lsh import components
from tasks.dedup.stars import both_directions, large_star, small_star, star_roots
from tasks.shards.core import KEPT_ROWS_SCHEMA, AtomicParquetWriter, KeptRowFiles, KeptRows, plan_balanced_shards
from tasks.units.core import UnitResult


def _random_graph(rng: np.random.Generator) -> tuple[int, np.ndarray, np.ndarray]:
    m = int(rng.integers(2, 400))
    e = int(rng.integers(0, 2 * m))
    a, b = rng.integers(0, m, e), rng.integers(0, m, e)
    keep = a != b
    return m, np.minimum(a, b)[keep], np.maximum(a, b)[keep]


def _roots(m: int, node: np.ndarray, root: np.ndarray) -> np.ndarray:
    out = np.arange(m)
    out[node] = root
    return out


def _partitioned_star_roots(lo: np.ndarray, hi: np.ndarray, parts: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The Ray Data loop of `tasks.corpus.ray_blocks.components`, partitions as plain array slices."""
    rounds = 0
    while True:
        rounds += 1
        changed = []
        for step in (large_star, small_star):
            u, v = both_directions(lo, hi) if step is large_star else (hi, lo)
            p = hash_part(u, parts)
            results = [step(u[p == k], v[p == k]) for k in range(parts)]
            lo = np.concatenate([r[0] for r in results])
            hi = np.concatenate([r[1] for r in results])
            changed.append(sum(r[2] for r in results))
        if changed == [0, 0]:
            return hi, lo, rounds


@pytest.mark.parametrize("parts", [1, 3, 8])
def test_star_rounds_equal_union_find_on_random_graphs(parts):
    rng = np.random.default_rng(parts)
    for _ in range(60):
        m, lo, hi = _random_graph(rng)
        want = components(m, lo, hi)
        node, root, _ = _partitioned_star_roots(lo, hi, parts)
        assert np.array_equal(_roots(m, node, root), want)
        assert np.unique(node).size == node.size  # one root per node: a lookup table
        assert np.array_equal(_roots(m, *star_roots(lo, hi)), want)


def test_star_rounds_on_a_long_path_and_a_big_star_converge():
    m = 3000
    path = np.random.default_rng(0).permutation(m)  # a path through the nodes in random order
    lo, hi = np.minimum(path[:-1], path[1:]), np.maximum(path[:-1], path[1:])
    node, root, rounds = _partitioned_star_roots(lo, hi, 4)
    assert np.array_equal(_roots(m, node, root), np.zeros(m, np.int64)) and rounds < 40
    star_lo, star_hi = np.full(m - 1, 7), np.r_[np.arange(7), np.arange(8, m)]  # centre 7, smaller leaves too
    node, root, _ = _partitioned_star_roots(np.minimum(star_lo, star_hi), np.maximum(star_lo, star_hi), 4)
    assert np.array_equal(_roots(m, node, root), np.zeros(m, np.int64))


def test_exact_survivor_is_the_first_by_priority_then_id_then_row():
    key = lambda b: bytes([b]) * 16  # noqa: E731
    group = pa.table({
        "row": np.array([10, 11, 12, 13, 14, 15], np.int64), "unit": np.zeros(6, np.int32),
        "p": np.array([1, 0, 0, 0, 2, 0], np.int32),
        "id": ["a", "z", "m", "m", "b", "q"],  # "m" twice: the same document read twice
        "ek": pa.array([key(1), key(1), key(1), key(1), key(2), key(2)], pa.binary(16)),
        "sh": np.ones(6, bool),
    })
    out = _exact_survivors(group.take(pa.array([5, 3, 0, 4, 2, 1])))  # rows arrive in any order
    survivor = dict(zip(out["row"].to_pylist(), out["s_row"].to_pylist()))
    # key 1: priority 0 beats "a" (priority 1); among priority 0, id "m" beats "z"; of the two "m", row 12
    assert survivor == {10: 12, 11: 12, 12: 12, 13: 12, 14: 15, 15: 15}
    assert dict(zip(out["row"].to_pylist(), out["s_id"].to_pylist()))[10] == "m"


def test_id_clashes_per_partition_equal_all_rows():
    rng = np.random.default_rng(4)
    n = 3000
    ids = np.array([f"doc/{i}" for i in rng.integers(0, 2000, n)], dtype=object)
    units = np.sort(rng.integers(0, 40, n))
    keys = [bytes([int(i[4:]) % 256]) * 16 for i in ids]  # same id, same text ...
    for k in rng.choice(n, 3, replace=False):  # ... except a few rows: those ids clash
        keys[k] = b"\xff" * 16
    keys = pa.array(keys, pa.binary(16))
    want = id_clashes(pa.array(ids.tolist()), units, keys)
    assert 0 < len(want) < 40
    hashed = np.array([zlib.crc32(i.encode()) % 5 for i in ids])
    parts = [id_clashes(pa.array(ids[hashed == p].tolist()), units[hashed == p], keys.filter(pa.array(hashed == p)))
             for p in range(5)]
    assert merge_clashes(parts) == dict(sorted(want.items()))
    for unit, (doc_id, other) in want.items():
        held = {int(u) for u in units[ids == doc_id]}
        assert unit in held and other in held


def test_a_clashing_unit_becomes_a_failed_input_and_counts_still_add_up():
    a = UnitResult(key="a", label="a", source_index=0, kind="books", url="/a", start=None, end=None, path="/w/a",
                   docs_in=5, kept=3, drops={"books/too_short": 2}, complete=True)
    b = UnitResult(key="b", label="b", source_index=0, kind="books", url="/b", start=None, end=None, path="/w/b",
                   docs_in=1, kept=1, complete=True)
    out = fail_clashing_units([a, b], {"/w/a": "DuplicateDocumentId: x"})
    assert out[1] == b
    assert out[0].error == "DuplicateDocumentId: x" and out[0].kept == 0
    assert out[0].drops == {"books/too_short": 2, ID_CLASH: 3} and sum(out[0].drops.values()) == a.docs_in


def test_plan_from_kept_row_files_equals_the_plan_from_arrays(tmp_path):
    rng = np.random.default_rng(9)
    paths, files, rows_all, units_all, bytes_all = [], [], [], [], []
    for u in range(7):
        paths.append(f"/units/u{u}.parquet")
        k = int(rng.integers(0, 40)) if u != 3 else 0  # unit 3 keeps nothing
        rows = np.sort(rng.choice(100, k, replace=False)).astype(np.int64)
        n_bytes = rng.integers(0, 500, k).astype(np.int64)
        file = None
        if k:
            file = str(tmp_path / f"kept-{u}.parquet")
            writer = AtomicParquetWriter(file, KEPT_ROWS_SCHEMA)
            writer.write(pa.table({"row": rows, "n_bytes": n_bytes}, schema=KEPT_ROWS_SCHEMA), 1000)
            writer.commit()
        files.append(file)
        rows_all.append(rows)
        units_all.append(np.full(k, u, np.int32))
        bytes_all.append(n_bytes)
    arrays = KeptRows(tuple(paths), np.concatenate(units_all), np.concatenate(rows_all), np.concatenate(bytes_all))
    kept = KeptRowFiles(tuple(paths), tuple(files), tuple(len(r) for r in rows_all),
                        tuple(int(b.sum()) for b in bytes_all))
    assert list(kept) == list(arrays) and len(kept) == len(arrays)
    for target in (1, 900, 5000, 10**9):
        want = plan_balanced_shards(arrays, "/out/data", target)
        got = plan_balanced_shards(kept, "/out/data", target)
        assert [(p.path, p.rows, p.text_bytes) for p in got] == [(p.path, p.rows, p.text_bytes) for p in want]
        for g, w in zip(got, want):
            assert [(s.unit_path, tuple(s.unit_rows())) for s in g.slices] == [(s.unit_path, s.rows) for s in w.slices]
