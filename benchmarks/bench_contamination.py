"""The contamination scan: one process over every shard (main before issue 15) against the parallel scan, and a
rerun that hits the cache.

The dev sets are the real SST-2 and RTE dev files in ../shared/data/glue (872 + 277 examples; generated
sentences when the folder is absent, which the output says). The corpus is `--shards` Parquet shards of
`--mb` MB of text each, made of the real books in ../shared/data/books repeated (generated words without them),
with a few dev sentences planted, so both sides must find the same examples (checked).

- **serial (main):** `EvalNgramIndex(...).scan()` over every shard in this process, as the flow did;
- **parallel:** `scan_parallel(..., workers=--workers)`: the shards split over spawned processes;
- **cached:** `scan_dev_sets` a second time on the same corpus and dev rows: the stored result is read.

Sides interleaved, `--repeats` times; medians with [min–max]; MB/s counts the corpus text; "per core" divides
by the cores each side uses (serial 1, parallel `--workers`).

Run: `.venv/bin/python benchmarks/bench_contamination.py [--shards 4] [--mb 25] [--workers 2] [--repeats 3]`

Measured 2026-12-03 on the 2-core box (idle), defaults: real SST-2 + RTE dev (1,149 examples), 100 MB of text
from the real books in 4 shards; serial 6.0 [5.9–7.2] MB/s, parallel (2 processes) 10.3 [8.7–10.9] MB/s: 1.52x
[1.45–1.74] wall, 0.76x [0.73–0.87] per core (each process builds the dev index and starts fresh); a rerun on the
same corpus and dev rows reads the cache in 2.6 ms (38,418 MB/s equivalent, 6,251x). Both sides found the same
examples (4 SST-2, 1 RTE: the planted ones and real overlaps with the books).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tasks.glue.contamination import EvalNgramIndex, iter_shard_documents  # noqa: E402
from tasks.glue.contamination_scan import _read, _write, scan_key, scan_parallel  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def dev_examples() -> tuple[dict[str, list[tuple[str, ...]]], str]:
    from tasks.glue.data import load_glue_split

    glue = SHARED / "glue"
    if (glue / "SST-2" / "dev.tsv").is_file() and (glue / "RTE" / "dev.tsv").is_file():
        sst2 = load_glue_split("sst2", "validation", glue)
        rte = load_glue_split("rte", "validation", glue)
        return {"sst2": list(zip(*sst2.texts)), "rte": list(zip(*rte.texts))}, "real SST-2 + RTE dev"
    rng = random.Random(0)
    words = [f"w{i}" for i in range(5000)]
    make = lambda n: " ".join(rng.choice(words) for _ in range(n))  # noqa: E731
    return {"sst2": [(make(20),) for _ in range(872)], "rte": [(make(40), make(8)) for _ in range(277)]}, \
        "GENERATED dev sets (../shared/data/glue absent)"


def corpus_text() -> tuple[str, str]:
    books = sorted((SHARED / "books").glob("**/*.txt")) if (SHARED / "books").is_dir() else []
    if books:
        return "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in books), "real books"
    rng = random.Random(1)
    return " ".join(f"w{rng.randrange(20000)}" for _ in range(2_000_000)), "GENERATED words (no books)"


def write_shards(folder: Path, text: str, shards: int, mb: int, plant: list[str]) -> list[str]:
    docs = [text[i:i + 4000] for i in range(0, len(text), 4000)]
    paths = []
    for s in range(shards):
        rows, size, i = [], 0, s * 7
        while size < mb * 1_000_000:
            doc = docs[i % len(docs)]
            rows.append(doc)
            size += len(doc.encode())
            i += 1
        rows[len(rows) // 2] += " " + plant[s % len(plant)]
        path = folder / "data" / f"shard-{s:05d}-of-{shards:05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"text": rows}), path)
        paths.append(str(path))
    return paths


def _fmt(values: list[float], spec: str) -> str:
    return f"{statistics.median(values):{spec}} [{min(values):{spec}}–{max(values):{spec}}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--mb", type=int, default=25, help="MB of text per shard")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    examples, dev_what = dev_examples()
    text, corpus_what = corpus_text()
    plant = [" ".join(examples["sst2"][3]), " ".join(examples["rte"][5])]
    rules = {"n": 13, "short_fields": "whole", "pairs": "whole_example"}
    with tempfile.TemporaryDirectory(prefix="bench-contamination-") as tmp:
        root = Path(tmp)
        shards = write_shards(root, text, args.shards, args.mb, plant)
        total_mb = sum(Path(p).stat().st_size for p in shards) / 1e6  # Parquet bytes, for the record
        text_mb = sum(len(d.encode()) for d in iter_shard_documents(shards)) / 1e6
        print(f"dev: {dev_what}; corpus: {corpus_what}, {args.shards} shards, {text_mb:,.0f} MB of text "
              f"({total_mb:,.0f} MB Parquet); {args.repeats} interleaved repeats; parallel = {args.workers} processes")
        serial, parallel, cached = [], [], []
        for i in range(args.repeats):
            t0 = time.perf_counter()
            index = EvalNgramIndex(examples, **rules)
            index.scan(iter_shard_documents(shards))
            want = index.results()
            t_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            got = scan_parallel(examples, shards, rules, workers=args.workers)
            t_p = time.perf_counter() - t0
            assert got == want, "the parallel scan found other examples than the serial one"
            assert want["sst2"].n_contaminated >= 1 and want["rte"].n_contaminated >= 1, "planted rows not found"
            cache = root / f"cache-{i}"
            key = scan_key(str(root), shards, examples, rules)
            _write(str(cache), key, {k: {"contaminated": list(r.contaminated)} for k, r in got.items()})
            t0 = time.perf_counter()
            hit = _read(str(cache), scan_key(str(root), shards, examples, rules))
            t_c = time.perf_counter() - t0
            assert hit is not None and hit["sst2"]["contaminated"] == list(want["sst2"].contaminated)
            serial.append(text_mb / t_s)
            parallel.append(text_mb / t_p)
            cached.append(text_mb / t_c)
            print(f"  repeat {i + 1}: serial {t_s:.1f} s, parallel {t_p:.1f} s, cache hit {t_c * 1000:.1f} ms "
                  f"(found sst2 {want['sst2'].n_contaminated}, rte {want['rte'].n_contaminated})", flush=True)
    ratio = [p / s for s, p in zip(serial, parallel, strict=True)]
    print()
    print(f"{'':26}{'serial (main)':>22}{'parallel':>22}{'ratio':>20}")
    print(f"{'scan, MB/s of text':26}{_fmt(serial, ',.1f'):>22}{_fmt(parallel, ',.1f'):>22}"
          f"{_fmt(ratio, '.2f') + 'x':>20}")
    print(f"{'scan, MB/s per core':26}{_fmt(serial, ',.1f'):>22}{_fmt([p / args.workers for p in parallel], ',.1f'):>22}"
          f"{_fmt([r / args.workers for r in ratio], '.2f') + 'x':>20}")
    print(f"{'rerun (cache hit), MB/s':26}{'':22}{_fmt(cached, ',.0f'):>26}"
          f"  {_fmt([c / s for s, c in zip(serial, cached, strict=True)], ',.0f') + 'x'}")


if __name__ == "__main__":
    main()
