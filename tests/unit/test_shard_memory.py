"""Shard writing in bounded memory (issue 9): one shard holds about a row group, and few shards run at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pytest

from tasks.shards.core import DOC_SCHEMA, AtomicParquetWriter, bounded_in_order
from tests.conftest import REPO

ROWS = 2000
TEXT_BYTES = 100_000  # 2000 x 100 kB = 200 MB of text in the unit
UNIT_GROUP_ROWS = 16  # 1.6 MB of text per unit row group

# Runs in a fresh interpreter: VmHWM (peak RSS since exec) is then this write's peak. Not ru_maxrss: Linux
# carries it over exec from the forked copy of the (big) test process.
CHILD = """
import json, sys
from tasks.shards.core import ShardPlan, ShardSlice, write_shard
unit, small, out, rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def status_kb(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))
write_shard(ShardPlan(0, 1, out, (ShardSlice(small, (0, 1)),), 2, 0), 16, 1)  # pages in Arrow's code first
before = status_kb("VmRSS")
plan = ShardPlan(0, 1, out, (ShardSlice(unit, tuple(range(0, rows, 2))),), rows // 2, 0)
entry = write_shard(plan, 16, 1)
print(json.dumps({"before": before * 1024, "peak": status_kb("VmHWM") * 1024, "rows": entry["rows"]}))
"""


def _write_unit(path: str, rows: int) -> None:
    """`rows` documents of 100 kB each in small row groups; the text repeats a random block (compresses well)."""
    block = os.urandom(TEXT_BYTES // 2).hex()  # 100 kB of ASCII
    writer = AtomicParquetWriter(path, DOC_SCHEMA, compression_level=1)
    for start in range(0, rows, 200):
        n = min(200, rows - start)
        cols = {name: [None] * n for name in DOC_SCHEMA.names}
        cols |= {
            "id": [f"doc/{i}" for i in range(start, start + n)],
            "text": [f"{i:08d}" + block[8:] for i in range(start, start + n)],
            "source": ["books"] * n,
            "origin": ["o"] * n,
        }
        writer.write(pa.table(cols, schema=DOC_SCHEMA), UNIT_GROUP_ROWS)
    writer.commit()


@pytest.fixture(scope="module")
def units(tmp_path_factory) -> tuple[str, str]:
    """A unit with 200 MB of text, and a 2-row one the child warms up on."""
    root = tmp_path_factory.mktemp("big")
    big, small = str(root / "unit.parquet"), str(root / "small.parquet")
    _write_unit(big, ROWS)
    _write_unit(small, 2)
    return big, small


def test_shard_writing_peak_memory_is_far_below_the_unit(units, tmp_path):
    """Every other row of a 200 MB unit into one shard: RSS grows by well under 50 MB (measured ~32 MB).

    The whole-unit writer before issue 9 read all 200 MB of text, then took 100 MB of it: ~600 MB.
    """
    out = str(tmp_path / "shard-00000-of-00001.parquet")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *units, out, str(ROWS)], capture_output=True, text=True, env=env, check=True
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rows"] == ROWS // 2
    unit_text = ROWS * TEXT_BYTES
    growth = result["peak"] - result["before"]
    assert growth < unit_text / 4, f"writing one shard grew RSS by {growth / 1e6:.0f} MB"


def test_shard_tasks_run_a_bounded_window_in_plan_order():
    """At most `limit` shards in flight (the old `.map` started all of them at once), results in plan order."""
    lock = threading.Lock()
    running = peak = 0

    def work(i: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.01 * (i % 3))
        with lock:
            running -= 1
        return i * 10

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(bounded_in_order(lambda i: pool.submit(work, i), range(20), limit=3))
    assert results == [i * 10 for i in range(20)]
    assert peak == 3
    with pytest.raises(ValueError):
        next(bounded_in_order(lambda i: None, range(2), limit=0))
