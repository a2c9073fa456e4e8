"""Training ingest: lmpipe's per-rank `TokenStream` against Ray Data, for reading and for resuming.

Issue 8 moved pretraining's input from Ray Data (`get_dataset_shard` = `streaming_split`) to
`cluster/train/token_stream.py`, which reads each rank's micro-batches straight from the Parquet token shards
so that a resume reads what an uninterrupted run would have, and starts at batch k without replaying k batches.
This checks that the move costs no read speed, and measures what a resume costs on each side.

Data: synthetic token shards as the tokenize stage writes them (`input_ids`: fixed-size list<int32>), by
default 4 shards x 25,000 rows x 128 tokens (51 MB of ids), row groups of 1,024 rows.

- **lmpipe:** `TokenStream(paths, B, rank=0, world_size=1, prefetch=4)`: batches/s over `--batches` batches;
  resume = time from `TokenStream(start=k)` to its first batch.
- **baseline (Ray Data, the Ray Train examples' ingest):** `ray.data.read_parquet(paths, columns=["input_ids"])`
  with `preserve_order` and `iter_torch_batches(batch_size=B, drop_last=True)`: batches/s over the same count;
  resume = what Ray Data allows (no row offset): iterate and drop k batches, then take one.

Both sides run in this process pinned to the same `--cores` (Ray is started after the affinity is set, so its
workers inherit it); figures are per core (both use the same cores). The sides are interleaved and repeated
`--repeats` times; medians with [min–max].

Run: `.venv/bin/python benchmarks/bench_train_data.py [--rows 25000] [--batches 2000] [--skip 5000] [--repeats 3]`
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402


def write_shards(root: Path, shards: int, rows: int, seq_len: int) -> list[str]:
    """`shards` Parquet files of `rows` random token rows each (fixed-size list<int32>, 1,024-row groups)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(shards):
        ids = rng.integers(0, 32_000, size=(rows, seq_len), dtype=np.int32)
        column = pa.FixedSizeListArray.from_arrays(pa.array(ids.reshape(-1)), seq_len)
        path = root / f"shard-{i:05d}.parquet"
        pq.write_table(pa.table({"input_ids": column}), path, row_group_size=1024)
        paths.append(str(path))
    return paths


def lmpipe_read(paths: list[str], batch: int, n: int) -> float:
    from cluster.train.token_stream import TokenStream

    with TokenStream(paths, batch) as stream:
        t0 = time.perf_counter()
        for _ in range(n):
            next(stream)
        return n / (time.perf_counter() - t0)


def lmpipe_resume(paths: list[str], batch: int, k: int) -> float:
    from cluster.train.token_stream import TokenStream

    t0 = time.perf_counter()
    with TokenStream(paths, batch, start=k) as stream:
        next(stream)
        return time.perf_counter() - t0


def _ray_batches(paths: list[str], batch: int):
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = True
    ds = ray.data.read_parquet(paths).select_columns(["input_ids"])
    return ds.iter_torch_batches(batch_size=batch, drop_last=True, device="cpu")


def ray_read(paths: list[str], batch: int, n: int) -> float:
    it = iter(_ray_batches(paths, batch))
    next(it)  # start-up (planning, first read task) is not read speed: measured from the first batch on
    t0 = time.perf_counter()
    for _ in range(n):
        next(it)
    return n / (time.perf_counter() - t0)


def ray_resume(paths: list[str], batch: int, k: int) -> float:
    t0 = time.perf_counter()
    it = iter(_ray_batches(paths, batch))
    for _ in range(k + 1):  # no row offset in Ray Data: drop k batches, take one
        next(it)
    return time.perf_counter() - t0


def _fmt(values: list[float], spec: str) -> str:
    return f"{statistics.median(values):{spec}} [{min(values):{spec}}–{max(values):{spec}}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--rows", type=int, default=25_000, help="rows per shard")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=2000, help="batches timed for read speed")
    parser.add_argument("--skip", type=int, default=3000, help="resume at this micro-batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", type=int, default=1, help="CPU cores both sides are pinned to")
    args = parser.parse_args()
    total = args.shards * args.rows
    if (args.batches + 1) * args.batch > total or (args.skip + 1) * args.batch > total:
        parser.error("--batches/--skip need more rows than --shards x --rows hold (one epoch)")

    cores = sorted(os.sched_getaffinity(0))[: args.cores]
    os.sched_setaffinity(0, cores)
    import ray
    import torch

    torch.set_num_threads(len(cores))
    ray.init(num_cpus=len(cores), include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # one INFO block per dataset execution otherwise
    with tempfile.TemporaryDirectory(prefix="bench-train-data-") as tmp:
        paths = write_shards(Path(tmp), args.shards, args.rows, args.seq_len)
        print(f"{args.shards} shards x {args.rows:,} rows x {args.seq_len} tokens, micro-batch {args.batch}, "
              f"pinned to {len(cores)} core(s) {cores}; {args.repeats} interleaved repeats")
        read_l, read_r, res_l, res_r = [], [], [], []
        for i in range(args.repeats):
            read_l.append(lmpipe_read(paths, args.batch, args.batches))
            read_r.append(ray_read(paths, args.batch, args.batches))
            res_l.append(lmpipe_resume(paths, args.batch, args.skip))
            res_r.append(ray_resume(paths, args.batch, args.skip))
            print(f"  repeat {i + 1}: read {read_l[-1]:,.0f} vs {read_r[-1]:,.0f} batches/s; resume at "
                  f"{args.skip:,}: {res_l[-1]:.3f} vs {res_r[-1]:.3f} s", flush=True)
    ray.shutdown()
    n = len(cores)
    ratio_read = [a / b for a, b in zip(read_l, read_r)]
    ratio_res = [b / a for a, b in zip(res_l, res_r)]
    print()
    print(f"{'':34}{'lmpipe TokenStream':>26}{'Ray Data (baseline)':>26}{'ratio':>22}")
    print(f"{'read, batches/s per core':34}{_fmt([x / n for x in read_l], ',.0f'):>26}"
          f"{_fmt([x / n for x in read_r], ',.0f'):>26}{_fmt(ratio_read, '.2f') + 'x':>22}")
    print(f"{'resume at batch ' + format(args.skip, ',') + ', s to 1st batch':34}{_fmt(res_l, '.3f'):>26}"
          f"{_fmt(res_r, '.3f'):>26}{_fmt(ratio_res, ',.0f') + 'x faster':>22}")


if __name__ == "__main__":
    main()
