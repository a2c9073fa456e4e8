"""Text bytes that exact verification reads, against the bytes it needs, as the corpus grows (issue 14, section 3).

Generated unit files (`paired_corpus`: 256-row row groups, as the unit stage writes them): a share `--paired`
of the documents sits in scattered pairs whose signature estimate is ambiguous (about 0.81 against the 0.8
threshold, margin 0.15), so every pair is settled from the texts; the rest are unrelated. `deduplicate_units`
runs on them and every pyarrow row-group read of the `text` column is counted. Before issue 14 the pairs were
settled in blocks of 8,192 and every block re-read every row group holding one of its rows: the bytes grew as
n². `--block-pairs` forces a smaller block so that 100 k documents show the block count of 1 M at the default.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_verify_reads.py --docs 25000,50000,100000 --block-pairs 1024

Runs on any checkout (the bytes are counted at pyarrow; the manifest counters are printed where they exist).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
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


@dataclass
class PairedCorpus:
    """Generated unit files and what they hold (the dedup tests use it too: `tests/unit/test_exact_verify.py`)."""

    results: list[UnitResult]
    texts: list[str]  # by corpus row
    ids: list[str]
    pairs: np.ndarray  # (k, 2) corpus rows (lo < hi) of the planted ambiguous pairs

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.results]

    @property
    def starts(self) -> np.ndarray:
        return np.r_[0, np.cumsum([r.kept for r in self.results])].astype(np.int64)

    @property
    def wanted_bytes(self) -> int:
        """UTF-8 bytes of the paired documents' texts: what exact verification needs."""
        return sum(len(self.texts[r].encode()) for r in self.pairs.ravel().tolist())


def paired_corpus(root: Path, n: int, spec: DedupSpec, paired: float = 1.0, words: int = 40, changed: float = 0.03,
                  seed: int = 0, units: int = 4) -> PairedCorpus:
    """n documents of `words` words in `units` unit files (256-row row groups); `paired` of them in scattered
    pairs, each an LSH candidate (band 0 equal) whose estimate is ambiguous (about 80% of the other signature
    values equal); the second text of a pair changes each word of the first with probability up to 2 x
    `changed`, so the exact Jaccard falls on both sides of 0.8. Unpaired documents share nothing. Ids are
    shuffled, so survivor priority does not follow row order."""
    mh = spec.minhash
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 50_000, (n, words))
    sig = rng.integers(0, 2**32 - 1, (n, mh.num_perm), dtype=np.uint64).astype(np.uint32)
    members = rng.choice(n, int(n * paired) // 2 * 2, replace=False)
    a, b = members[0::2], members[1::2]
    same = rng.random((a.size, mh.num_perm)) < 0.8
    same[:, : mh.rows] = True  # band 0 equal: an LSH candidate
    sig[b] = np.where(same, sig[a], sig[b])
    edit = rng.random((a.size, words)) < rng.uniform(0.0, 2 * changed, (a.size, 1))
    base[b] = np.where(edit, base[b], base[a])
    texts = [" ".join(f"w{w}" for w in row) for row in base]
    ids = [f"doc/{i:08d}" for i in rng.permutation(n)]
    keys = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    schema = unit_schema(mh.num_perm)
    cuts = np.r_[0, np.sort(rng.choice(np.arange(1, n), units - 1, replace=False)), n]
    results = []
    for u, (lo, hi) in enumerate(zip(cuts[:-1].tolist(), cuts[1:].tolist())):
        k = hi - lo
        cols = {f.name: pa.nulls(k, f.type) for f in schema if f.nullable}
        cols.update(id=ids[lo:hi], text=texts[lo:hi], source=["common_crawl"] * k, origin=["g"] * k,
                    lang=["en"] * k, n_bytes=[len(t) for t in texts[lo:hi]],
                    exact_key=pa.array([bytes(x) for x in keys[lo:hi]], pa.binary(16)),
                    minhash=pa.FixedSizeListArray.from_arrays(pa.array(sig[lo:hi].ravel(), pa.uint32()), mh.num_perm))
        path = str(root / f"unit-{u}.parquet")
        writer = AtomicParquetWriter(path, schema)
        writer.write(pa.table({f.name: cols[f.name] for f in schema}, schema=schema), ROW_GROUP)
        writer.commit()
        results.append(UnitResult(key=f"u{u}", label=f"u{u}", source_index=0, kind="generated", url=f"gen://{u}",
                                  start=None, end=None, path=path, kept=k))
    return PairedCorpus(results, texts, ids, np.sort(np.stack([a, b], axis=1), axis=1))


class TextReads:
    """Text bytes returned by pyarrow row-group reads of the `text` column, counted once installed on
    `ParquetFile` with `patch` (`setattr`, or a test's `monkeypatch.setattr`, which undoes it)."""

    def __init__(self, patch: Callable[[object, str, object], None] = setattr) -> None:
        self.bytes = 0
        for name in ("read_row_group", "read_row_groups"):
            patch(pq.ParquetFile, name, self._counting(getattr(pq.ParquetFile, name)))

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
            corpus = paired_corpus(Path(tmp), n, spec, args.paired, words=200, changed=0.01, seed=args.seed, units=8)
            wanted, text_total = corpus.wanted_bytes, sum(len(t) for t in corpus.texts)
            before, t0 = reads.bytes, time.perf_counter()
            out = corpus_core.deduplicate_units(corpus.results, spec, str(Path(tmp) / "work"))
            row = {"docs": n, "exact_checked": out.exact_checked, "corpus_text_bytes": text_total,
                   "wanted_text_bytes": wanted, "text_bytes_read": reads.bytes - before,
                   "dedup_s": round(time.perf_counter() - t0, 2),
                   "counters": [getattr(out, "text_bytes_read", None), getattr(out, "text_bytes_wanted", None)]}
        rows.append(row)
        read = row["text_bytes_read"]
        print(f"{row['docs']:>9,} docs: {row['exact_checked']:,} pairs checked exactly; text read "
              f"{read / 1e6:,.1f} MB = {read / wanted:.2f}x the {wanted / 1e6:,.1f} MB "
              f"needed, {read / text_total:.2f}x the corpus text; dedup {row['dedup_s']} s; "
              f"manifest counters (read, wanted): {row['counters']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
