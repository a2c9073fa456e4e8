"""Text bytes that exact verification reads, against the bytes it needs, as the corpus grows (issue 14, section 3).

Generated unit files (256-row row groups, as the unit stage writes them): a share `--paired` of the documents
sits in scattered pairs whose signature estimate is ambiguous (about 0.81 against the 0.8 threshold, margin
0.15), so every pair is settled from the texts; the rest are unrelated. `deduplicate_units` runs on them and
every pyarrow row-group read of the `text` column is counted. Before issue 14 the pairs were settled in blocks
of 8,192 and every block re-read every row group holding one of its rows: the bytes grew as n². `--block-pairs`
forces a smaller block so that 100 k documents show the block count of 1 M at the default.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_verify_reads.py --docs 25000,50000,100000 --block-pairs 1024

Runs on any checkout (the bytes are counted at pyarrow; the manifest counters are printed where they exist).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import tasks.corpus.core as corpus_core  # noqa: E402
from data_specs import DedupSpec  # noqa: E402
from tasks.shards.core import AtomicParquetWriter, unit_schema  # noqa: E402
from tasks.units.core import UnitResult  # noqa: E402

ROW_GROUP = 256


def paired_units(root: Path, n: int, paired: float, seed: int, spec: DedupSpec) -> tuple[list[UnitResult], int]:
    """Unit files of n documents (8 units), `paired` of them in scattered ambiguous pairs; returns the units and
    the text bytes of the paired documents (what verification needs)."""
    mh = spec.minhash
    rng = np.random.default_rng(seed)
    words = rng.integers(0, 50_000, (n, 200))  # 200 words, about 1.3 KB of text per document
    sig = rng.integers(0, 2**32 - 1, (n, mh.num_perm), dtype=np.uint64).astype(np.uint32)
    members = rng.choice(n, int(n * paired) // 2 * 2, replace=False)
    a, b = members[0::2], members[1::2]
    same = rng.random((a.size, mh.num_perm)) < 0.8
    same[:, : mh.rows] = True  # band 0 equal: an LSH candidate
    sig[b] = np.where(same, sig[a], sig[b])
    changed = rng.random((a.size, 200)) < 0.01
    words[b] = np.where(changed, words[b], words[a])
    texts = [" ".join(f"w{w}" for w in row) for row in words]
    schema = unit_schema(mh.num_perm)
    cuts = np.linspace(0, n, 9).astype(int)
    results = []
    for u, (lo, hi) in enumerate(zip(cuts[:-1], cuts[1:])):
        k = int(hi - lo)
        cols = {f.name: pa.nulls(k, f.type) for f in schema if f.nullable}
        cols.update(id=[f"doc/{i:08d}" for i in range(lo, hi)], text=texts[lo:hi], source=["common_crawl"] * k,
                    origin=["g"] * k, lang=["en"] * k, n_bytes=[len(t) for t in texts[lo:hi]],
                    exact_key=pa.array([bytes(x) for x in rng.integers(0, 256, (k, 16), dtype=np.uint8)], pa.binary(16)),
                    minhash=pa.FixedSizeListArray.from_arrays(pa.array(sig[lo:hi].ravel(), pa.uint32()), mh.num_perm))
        path = str(root / f"unit-{u}.parquet")
        writer = AtomicParquetWriter(path, schema)
        writer.write(pa.table({f.name: cols[f.name] for f in schema}, schema=schema), ROW_GROUP)
        writer.commit()
        results.append(UnitResult(key=f"u{u}", label=f"u{u}", source_index=0, kind="generated", url=f"gen://{u}",
                                  start=None, end=None, path=path, kept=k))
    return results, sum(len(texts[i]) for i in members.tolist())


class TextReads:
    """Text bytes returned by pyarrow row-group reads of the `text` column (patched on `ParquetFile`)."""

    def __init__(self) -> None:
        self.bytes = 0
        for name in ("read_row_group", "read_row_groups"):
            setattr(pq.ParquetFile, name, self._counting(getattr(pq.ParquetFile, name)))

    def _counting(self, real):  # noqa: ANN001, ANN202
        def read(pf: pq.ParquetFile, *args, **kwargs) -> pa.Table:
            table = real(pf, *args, **kwargs)
            if "text" in table.column_names:
                self.bytes += int(pc.sum(pc.binary_length(table["text"])).as_py() or 0)
            return table
        return read


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", default="25000,50000,100000")
    ap.add_argument("--paired", type=float, default=0.25, help="Share of documents in ambiguous pairs.")
    ap.add_argument("--block-pairs", type=int, default=0, help="Force ExactJaccard's block (0: its default).")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="Also write the figures here.")
    args = ap.parse_args(argv)
    spec = DedupSpec()
    if args.block_pairs:
        corpus_core.ExactJaccard = partial(corpus_core.ExactJaccard, block_pairs=args.block_pairs)
    reads = TextReads()
    rows = []
    for n in sorted(int(s) for s in args.docs.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            results, wanted = paired_units(Path(tmp), n, args.paired, args.seed, spec)
            total = sum(pq.read_metadata(r.path).num_rows for r in results)
            text_total = sum(pc.sum(pc.binary_length(pq.read_table(r.path, columns=["text"])["text"])).as_py()
                             for r in results)
            before, t0 = reads.bytes, time.perf_counter()
            out = corpus_core.deduplicate_units(results, spec, str(Path(tmp) / "work"))
            row = {"docs": total, "exact_checked": out.exact_checked, "corpus_text_bytes": text_total,
                   "wanted_text_bytes": wanted, "text_bytes_read": reads.bytes - before,
                   "dedup_s": round(time.perf_counter() - t0, 2),
                   "counters": [getattr(out, "text_bytes_read", None), getattr(out, "text_bytes_wanted", None)]}
        rows.append(row)
        print(f"{row['docs']:>9,} docs: {row['exact_checked']:,} pairs checked exactly; text read "
              f"{row['text_bytes_read'] / 1e6:,.1f} MB = {row['text_bytes_read'] / wanted:.2f}x the {wanted / 1e6:,.1f} MB "
              f"needed, {row['text_bytes_read'] / text_total:.2f}x the corpus text; dedup {row['dedup_s']} s; "
              f"manifest counters (read, wanted): {row['counters']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
