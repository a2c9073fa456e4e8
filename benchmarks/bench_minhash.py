"""MinHash signature throughput: lmpipe's batch MinHasher vs datasketch, same docs, same num_perm.

Documents are real text: ~300-word chunks of the Project Gutenberg books in ../shared/data/books
plus the 318 Common Crawl WET conversion records (read with fastwarc). Falls back to synthetic
text, and says so, when the folder is absent.

Baselines (each timed from raw text to signatures, shingling included, on the same documents):
- `update` loop: `m = MinHash(num_perm); for sh in shingles: m.update(sh.encode())`, default sha1
  hashfunc, as a user would write it;
- `MinHash.bulk`: datasketch's bulk helper (shared permutations, `update_batch` per document).

Run: `.venv/bin/python benchmarks/bench_minhash.py [--quick] [--num-perm 128]`
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from pathlib import Path

import datasketch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_specs.dedup import MinHashSpec  # noqa: E402
from tasks.dedup.core import MinHasher  # noqa: E402
from tasks.dedup.minhash import words  # noqa: E402

from benchmarks._real_text import real_docs  # noqa: E402


def load_docs(words_per_doc: int = 300) -> tuple[list[str], str]:
    return real_docs(words_per_doc, lambda p: len(p.split()), keep_tail=False, unit=f"~{words_per_doc}-word")


def shingle_strings(text: str, n: int) -> list[str]:
    toks = words(text)
    if len(toks) < n:
        return [" ".join(toks)] if toks else []
    return [" ".join(toks[k : k + n]) for k in range(len(toks) - n + 1)]


def bench(fn, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a few hundred docs, one repetition")
    ap.add_argument("--num-perm", type=int, default=MinHashSpec().num_perm)
    args = ap.parse_args()
    spec = MinHashSpec(num_perm=args.num_perm, bands=1, rows=1)
    docs, what = load_docs()
    if args.quick:
        docs = docs[::10]
    reps = 1 if args.quick else 3
    mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    n_words = sum(len(words(d)) for d in docs)
    print(f"# {what}; {len(docs)} docs, {mb:.1f} MB, {n_words / len(docs):.0f} words/doc, "
          f"num_perm={spec.num_perm}, ngram={spec.ngram}")

    hasher = MinHasher(spec)
    hasher.signatures(docs[:50])  # warm-up (pyarrow kernels, allocations)
    t_ours = bench(lambda: hasher.signatures(docs), reps)

    def update_loop() -> None:
        for d in docs:
            m = datasketch.MinHash(num_perm=spec.num_perm)
            for sh in shingle_strings(d, spec.ngram):
                m.update(sh.encode("utf-8"))

    def bulk() -> None:
        datasketch.MinHash.bulk(
            ([s.encode("utf-8") for s in shingle_strings(d, spec.ngram)] for d in docs), num_perm=spec.num_perm
        )

    base_docs = docs  # the same documents for every method
    n_base = len(base_docs)
    mb_base = sum(len(d.encode("utf-8")) for d in base_docs) / 1e6
    full_docs, docs = docs, base_docs
    t_loop = bench(update_loop, 1)
    t_bulk = bench(bulk, 1)
    docs = full_docs

    rows = [
        ("lmpipe MinHasher.signatures (batch)", len(docs) / t_ours, mb / t_ours, len(docs)),
        ("datasketch MinHash.update loop (sha1)", n_base / t_loop, mb_base / t_loop, n_base),
        ("datasketch MinHash.bulk (sha1)", n_base / t_bulk, mb_base / t_bulk, n_base),
    ]
    ours = rows[0][1]
    print(f"{'method':42s} {'docs':>6s} {'docs/s':>10s} {'MB/s':>8s} {'lmpipe x':>9s}")
    for name, dps, mbs, n in rows:
        print(f"{name:42s} {n:6d} {dps:10.0f} {mbs:8.2f} {ours / dps:9.1f}")
    print("(lmpipe x = lmpipe docs/s divided by that row's docs/s; best of "
          f"{reps} run(s) for lmpipe, 1 for the baselines, single process)")


if __name__ == "__main__":
    main()
