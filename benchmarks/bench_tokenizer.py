"""Tokenizer throughput: the batched, Rust-parallel encode path of `build_token_shards` vs a plain
single-threaded Python loop over `tokenizer.encode(text)`, same documents, same tokenizer, same run.

Documents are real text: ~2 KB chunks (whole paragraphs) of the Project Gutenberg books in
../shared/data/books plus the 319 Common Crawl WET conversion records (read with fastwarc). Falls
back to synthetic text, and says so, when the folder is absent.

First a byte-level BPE tokenizer (vocab 8192, as `train_tokenizer` builds it for gpt) is trained on
the same documents, and its training time is reported. Then, timed from a list of str to token ids:
- `encode_texts` (lmpipe): `backend.encode_batch_fast` in batches of `PackingSpec.encode_batch_size`,
  Rayon threads over the texts of a batch (one per core), ids into int32 numpy arrays;
- the same with TOKENIZERS_PARALLELISM=false (batching without threads: what the batching alone buys);
- loop `tok.encode(text)`: the transformers tokenizer, one call per document;
- loop `backend.encode(text).ids`: the Rust tokenizer, one call per document (no transformers layer).

Run: `.venv/bin/python benchmarks/bench_tokenizer.py [--quick]`
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ["TOKENIZERS_PARALLELISM"] = "true"  # before tokenizers starts its thread pool


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_specs.pretrain import PackingSpec, TokenizerSpec  # noqa: E402
from tasks.tokenize.core import encode_texts, train_tokenizer  # noqa: E402

from benchmarks._real_text import real_docs  # noqa: E402


def load_docs(chunk_bytes: int = 2000) -> tuple[list[str], str]:
    return real_docs(chunk_bytes, lambda p: len(p.encode("utf-8")), keep_tail=True, unit="~2 KB")


def best_of(fn, reps: int) -> tuple[float, int]:
    best, n_tokens = float("inf"), 0
    for _ in range(reps):
        t0 = time.perf_counter()
        n_tokens = fn()
        best = min(best, time.perf_counter() - t0)
    return best, n_tokens


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a tenth of the documents, one repetition")
    ap.add_argument("--vocab-size", type=int, default=8192)
    args = ap.parse_args()
    docs, what = load_docs()
    if args.quick:
        docs = docs[::10]
    reps = 1 if args.quick else 3
    mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6
    batch = PackingSpec().encode_batch_size
    print(f"# {what}; {len(docs)} docs, {mb:.1f} MB; {os.cpu_count()} CPU cores; batch={batch}")

    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        tok = train_tokenizer(docs, TokenizerSpec(vocab_size=args.vocab_size), "gpt", out)
        t_train = time.perf_counter() - t0
    print(f"# train byte-level BPE, vocab {len(tok)}, on all {len(docs)} docs ({mb:.1f} MB): {t_train:.2f} s "
          f"({mb / t_train:.2f} MB/s)")
    backend = tok.backend_tokenizer

    def batched() -> int:
        return sum(len(ids) for ids in encode_texts(backend, docs, batch))

    def batched_serial() -> int:
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        try:
            return batched()
        finally:
            os.environ["TOKENIZERS_PARALLELISM"] = "true"

    def hf_loop() -> int:
        return sum(len(tok.encode(d, add_special_tokens=False)) for d in docs)

    def rust_loop() -> int:
        return sum(len(backend.encode(d, add_special_tokens=False).ids) for d in docs)

    batched()  # warm-up: thread pool, caches
    rows = []
    for name, fn, r in [
        ("lmpipe encode_texts (batched, Rust-parallel)", batched, reps),
        ("encode_texts, TOKENIZERS_PARALLELISM=false", batched_serial, reps),
        ("loop: transformers tok.encode(text)", hf_loop, reps),
        ("loop: tokenizers backend.encode(text)", rust_loop, reps),
    ]:
        t, n = best_of(fn, r)
        rows.append((name, n, t))
    n_tokens = {n for _, n, _ in rows}
    assert len(n_tokens) == 1, f"methods disagree on the token count: {rows}"
    ours = rows[0][1] / rows[0][2]
    base = rows[2][1] / rows[2][2]
    print(f"{'method':46s} {'tokens':>9s} {'seconds':>8s} {'tokens/s':>11s} {'MB/s':>7s} {'lmpipe x':>9s}")
    for name, n, t in rows:
        print(f"{name:46s} {n:9d} {t:8.2f} {n / t:11.0f} {mb / t:7.2f} {ours / (n / t):9.2f}")
    print(f"ratio batched-parallel / plain tok.encode loop: {ours / base:.2f}x "
          f"(best of {reps} runs each; {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
