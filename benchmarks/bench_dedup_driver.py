"""The Ray engine's dedup job alone at growing sizes: the driver's peak RSS must not grow with the corpus.

    .venv/bin/python benchmarks/bench_dedup_driver.py --docs 1000000,10000000 --workdir out/bench-dedup-driver

For each N, unit files of `--unit-rows` documents with synthetic signatures are written once under `--workdir`
(random 128-value signatures; an eighth of the documents are variants of an earlier one with 70-100% of the
values shared, so the signature estimate lands on both sides of the 0.8 threshold; 2% exact copies; short
texts, since `verify: signature` never reads them), then `deduplicate_units(engine="ray")` runs on a local Ray
(`--cpus`, 2 by default). Measured every `--sample-s` seconds from a thread: the driver's RSS (this process)
and the summed RSS of Ray's worker processes (`ray::` / `default_worker.py`; their shared object-store pages
count in each). Printed per N: wall seconds, driver peak RSS, driver peak minus its RSS before the job, workers'
peak sum, and the dedup figures (exact, near, clusters) so runs can be compared.

Measured 2026-12-02 on the 2-core box under heavy load from other jobs (load average 10-20, so the times are
not throughput figures), `--docs 100000,1000000 --workdir /tmp/h6-bench`, one run:

         docs   wall s  driver peak MB  driver +MB  workers peak MB
       100000    542.6             462          28             5119   (exact 20, near 341: one unit, few bases)
      1000000    750.3             479           4             6808   (exact 1,959, near 90,091, 78,385 clusters)

The driver's peak is flat (+17 MB for 10x the documents, within sampling noise; its base is Ray, Ray Data and
pyarrow).

Measured 2026-12-03 on the same 2-core box, quiet at the start (load 0.3; about 6 minutes of GLUE tests of
another session overlapped the 10 M run, so its time is an upper bound), `--docs 1000000,10000000 --workdir
out/bench-dedup-driver`, one run:

         docs   wall s  driver peak MB  driver +MB  workers peak MB
      1000000    151.4             486          25             3869   (exact 1,959, near 90,091, 78,385 clusters)
     10000000    907.1             466           3             9102   (exact 113,749, near 900,787, 783,802 clusters)

The driver's peak stays flat at 10x again (486 -> 466 MB); the workers' summed RSS grows 2.4x for 10x the
documents (the shuffles' object store; spilled to disk past its share of memory). The exact count grows faster
than 10x by construction: an exact copy's key is its base row's index in the previous unit, the same 100 k
indices in every unit, so copies from different units share keys more often as units add up (near: 10.0x).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa

from data_specs import DedupSpec
from tasks.corpus.core import deduplicate_units
from tasks.shards.core import AtomicParquetWriter, unit_schema
from tasks.units.core import UnitResult

NUM_PERM = 128


def write_units(root: Path, n: int, unit_rows: int, seed: int = 0) -> list[UnitResult]:
    """Unit files with synthetic signatures (see the module docstring); reused when `done.json` exists."""
    done = root / "done.json"
    units = [(u, lo, min(lo + unit_rows, n)) for u, lo in enumerate(range(0, n, unit_rows))]
    results = [UnitResult(key=f"u{u}", label=f"u{u}", source_index=0, kind="synthetic", url=f"syn://{u}",
                          start=None, end=None, path=str(root / f"unit-{u:05d}.parquet"), kept=hi - lo)
               for u, lo, hi in units]
    if done.exists():
        return results
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    schema = unit_schema(NUM_PERM)
    previous = rng.integers(0, 2**32 - 1, (unit_rows, NUM_PERM), dtype=np.uint64).astype(np.uint32)
    for (u, lo, hi), result in zip(units, results):
        k = hi - lo
        sig = rng.integers(0, 2**32 - 2, (k, NUM_PERM), dtype=np.uint64).astype(np.uint32)
        keys = rng.integers(0, 256, (k, 16), dtype=np.uint8)
        near = rng.random(k) < 1 / 8
        base = rng.integers(0, previous.shape[0], k)
        shared = rng.random((k, NUM_PERM)) < rng.uniform(0.7, 1.0, (k, 1))
        sig[near] = np.where(shared[near], previous[base[near]], sig[near])
        exact = rng.random(k) < 0.02
        sig[exact], keys[exact] = previous[base[exact]], 0  # exact copies of one another (key 0)
        keys[exact, :8] = base[exact, None].view(np.uint8).reshape(-1, 8)
        texts = [f"t{lo + i}" for i in range(k)]
        cols = {f.name: pa.nulls(k, f.type) for f in schema if f.nullable}
        cols.update(id=[f"syn/{lo + i:010d}" for i in range(k)], text=texts, source=["synthetic"] * k,
                    origin=["bench"] * k, n_bytes=np.full(k, 1000, np.int64),
                    exact_key=pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), k, [None, pa.py_buffer(keys.tobytes())]),
                    minhash=pa.FixedSizeListArray.from_arrays(pa.array(sig.ravel(), pa.uint32()), NUM_PERM))
        writer = AtomicParquetWriter(result.path, schema)
        writer.write(pa.table({f.name: cols[f.name] for f in schema}, schema=schema), 1 << 16)
        writer.commit()
        previous = sig
    done.write_text(json.dumps({"docs": n}))
    return results


class RssSampler:
    """Peak RSS of this process, and of the summed Ray worker processes, sampled from a thread."""

    def __init__(self, every_s: float):
        self.every_s, self.driver, self.workers = every_s, 0, 0
        self._stop = threading.Event()
        self._me = psutil.Process()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.driver = max(self.driver, self._me.memory_info().rss)
            total = 0
            for p in psutil.process_iter(["cmdline"]):
                cmd = " ".join(p.info["cmdline"] or [])
                if cmd.startswith("ray::") or "default_worker.py" in cmd:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
            self.workers = max(self.workers, total)
            self._stop.wait(self.every_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", default="1000000,10000000")
    parser.add_argument("--workdir", default="out/bench-dedup-driver")
    parser.add_argument("--unit-rows", type=int, default=100_000)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--sample-s", type=float, default=0.5)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    import ray.data

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    spec = DedupSpec(minhash={"verify": "signature"})
    print(f"{'docs':>10} {'wall s':>8} {'driver peak MB':>15} {'driver +MB':>11} {'workers peak MB':>16}  dedup")
    for n in [int(x) for x in args.docs.split(",")]:
        root = Path(args.workdir) / f"units-{n}"
        results = write_units(root, n, args.unit_rows)
        work = Path(args.workdir) / f"work-{n}"
        shutil.rmtree(work, ignore_errors=True)
        before = psutil.Process().memory_info().rss
        start = time.time()
        with RssSampler(args.sample_s) as rss:
            out = deduplicate_units(results, spec, str(work), engine="ray")
        wall = time.time() - start
        figures = {**out.removed, "clusters": out.clusters, "kept": len(out.kept_rows)}
        print(f"{n:>10} {wall:>8.1f} {rss.driver / 1e6:>15.0f} {(rss.driver - before) / 1e6:>11.0f} "
              f"{rss.workers / 1e6:>16.0f}  {json.dumps(figures)}", flush=True)
    print(f"ru_maxrss of the driver over the whole run: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:.0f} MB")
    ray.shutdown()


if __name__ == "__main__":
    main()
