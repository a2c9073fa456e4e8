"""Planning's input hashing: one file at a time (main before issue 14) against the parallel planner.

Planning fingerprints every local input (sha256 of the whole file) before any unit runs; on a first run of
10 TB that was about 3 h, one file after another on the driver. This times `plan_units` over N large local
files, which is the whole of planning for a books source (glob, one unit per file, fingerprint each):

- **serial (main):** `plan_units(source, 0, serial_map)`: the files hashed one after the other, as
  `with_content` did before;
- **parallel:** `plan_units(source, 0)`: the default `ThreadMap` (threads = max(4, cores)); reading and
  sha256 release the GIL, so the threads hash several files at once.

Both sides hash the same files in this process, pinned to the same `--cores`; the remembered fingerprints
(`LMPIPE_STATE_DIR`) are wiped before every timing, so each one hashes every byte. The files are written just
before and sit in the page cache: this measures hashing, not a disk (on cold disks the gain is what the
storage gives to parallel reads). Both sides must produce the same units and fingerprints (checked). The
sides are interleaved and repeated `--repeats` times; medians with [min–max]; per core = MB/s divided by
the cores both sides were given. "Cores busy" (this process's CPU seconds per wall second) shows whether the
threads really hash at once: on a machine whose cores other work already fills, it is all they can get.

Run: `.venv/bin/python benchmarks/bench_plan_hashing.py [--files 8] [--mb 128] [--repeats 3] [--cores N]`
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_specs.sources import BooksSource  # noqa: E402
from tasks.sources.core import plan_units  # noqa: E402
from tasks.sources.planning import default_workers, serial_map  # noqa: E402


def write_files(folder: Path, n: int, mib: int) -> None:
    """`n` files of `mib` MiB each, distinct content (random blocks: nothing to shortcut)."""
    block = os.urandom(1 << 20)
    for i in range(n):
        with open(folder / f"book-{i:03d}.txt", "wb") as f:
            for j in range(mib):
                f.write(i.to_bytes(4, "little") + j.to_bytes(4, "little") + block[8:])


def timed(source: BooksSource, state: Path, mapper) -> tuple[float, float, list]:  # noqa: ANN001
    """(wall s, CPU s of this process, the units' (url, fingerprint)) for one planning."""
    shutil.rmtree(state, ignore_errors=True)  # nothing remembered: every byte is hashed
    t0, c0 = time.perf_counter(), time.process_time()
    units, problems = plan_units(source, 0, mapper) if mapper else plan_units(source, 0)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert not problems and all(u.content for u in units), problems
    return elapsed, cpu, [(u.url, u.content) for u in units]


def _fmt(values: list[float], spec: str) -> str:
    return f"{statistics.median(values):{spec}} [{min(values):{spec}}–{max(values):{spec}}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--mb", type=int, default=128, help="MiB per file")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)), help="cores both sides get")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))[: args.cores]
    os.sched_setaffinity(0, cores)
    with tempfile.TemporaryDirectory(prefix="bench-plan-hashing-") as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        write_files(root / "data", args.files, args.mb)
        os.environ["LMPIPE_STATE_DIR"] = str(root / "state")
        source = BooksSource(kind="books", paths=[str(root / "data" / "*.txt")])
        total_mb = args.files * args.mb * (1 << 20) / 1e6
        print(f"{args.files} files x {args.mb} MiB ({total_mb:,.0f} MB), pinned to {len(cores)} core(s) {cores}, "
              f"{default_workers()} hashing threads; {args.repeats} interleaved repeats")
        serial, parallel, busy_s, busy_p = [], [], [], []
        for i in range(args.repeats):
            t_s, cpu_s, got_s = timed(source, root / "state", serial_map)
            t_p, cpu_p, got_p = timed(source, root / "state", None)
            assert got_s == got_p, "parallel planning gave other units or fingerprints than serial"
            serial.append(total_mb / t_s)
            parallel.append(total_mb / t_p)
            busy_s.append(cpu_s / t_s)
            busy_p.append(cpu_p / t_p)
            print(f"  repeat {i + 1}: serial {t_s:.2f} s ({serial[-1]:,.0f} MB/s, {busy_s[-1]:.2f} cores busy), "
                  f"parallel {t_p:.2f} s ({parallel[-1]:,.0f} MB/s, {busy_p[-1]:.2f} cores busy)", flush=True)
    n = len(cores)
    ratio = [p / s for s, p in zip(serial, parallel, strict=True)]
    print()
    print(f"{'':28}{'serial (main)':>24}{'parallel (threads)':>24}{'ratio':>20}")
    print(f"{'hashing, MB/s':28}{_fmt(serial, ',.0f'):>24}{_fmt(parallel, ',.0f'):>24}{_fmt(ratio, '.2f') + 'x':>20}")
    print(f"{'hashing, MB/s per core':28}{_fmt([x / n for x in serial], ',.0f'):>24}"
          f"{_fmt([x / n for x in parallel], ',.0f'):>24}{_fmt(ratio, '.2f') + 'x':>20}")
    print(f"{'cores busy (CPU s / wall s)':28}{_fmt(busy_s, '.2f'):>24}{_fmt(busy_p, '.2f'):>24}")
    print(f"{'speed-up per core':28}{'':24}{'':24}{_fmt([r / n for r in ratio], '.2f') + 'x':>20}")
    print(f"{'10 TB at this rate, h':28}{_fmt([1e7 / x / 3600 for x in serial], '.1f'):>24}"
          f"{_fmt([1e7 / x / 3600 for x in parallel], '.1f'):>24}")


if __name__ == "__main__":
    main()
