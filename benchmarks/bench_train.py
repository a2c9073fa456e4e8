"""Training throughput: Ray Train (1 worker, token shards streamed, checkpoints) vs the same loop in plain PyTorch.

Both sides run `cluster.train.loop.train` with the same model, seed, batch, sequence length, step count and
token shards, in the same process run; the only difference is what Ray adds: the controller and worker
actor, the worker reading its micro-batches from the Parquet shards (`cluster.train.token_stream`, a prefetch
thread) where the plain loop has them in memory, and `ray.train.report` with a checkpoint at the end.
Threads are equal on both sides (the Ray worker takes `--threads` CPUs, so Ray sets OMP_NUM_THREADS to it;
the plain loop calls `torch.set_num_threads`), with one extra logical CPU for the Train controller.

Reported:
- steady-state tokens/s: the loop's own timer, steps after the first 3 (data start-up and allocator warm-up
  excluded), same definition on both sides;
- the plain loop once more while the idle Ray cluster is still up: on a small machine Ray's daemons (raylet,
  GCS, the Train controller's health checks) take CPU from any process, Ray Train's worker or not;
- total tokens/s: tokens / wall time from "start" to a finished model, including model build and data loading,
  and for Ray its cluster start, actors, data start-up and the final checkpoint.

Run: `.venv/bin/python benchmarks/bench_train.py [--steps 200] [--preset mini] [--repeats 3]`
GPU: `.venv/bin/python benchmarks/bench_train.py --gpu` (GPT-2 small, bf16, seq 1024; prints MFU too).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from cluster.train.loop import train  # noqa: E402
from cluster.train.model import build_model, flops_per_token  # noqa: E402
from data_specs.pretrain import ModelSpec, ScalingSpec, TrainSpec  # noqa: E402

SPECIAL = {"pad_id": 0, "eos_id": 1}


def write_tokens(root: Path, rows: int, seq_len: int, vocab: int, shards: int = 4) -> Path:
    """Random token shards + manifest in the tokenize stage's layout (content is irrelevant to throughput)."""
    rng = np.random.default_rng(0)
    schema = pa.schema([("input_ids", pa.list_(pa.int32(), seq_len)), ("source", pa.string())])
    splits = {}
    for split, n in (("train", rows), ("val", 64)):
        (root / split).mkdir(parents=True, exist_ok=True)
        entries = []
        for i, part in enumerate(np.array_split(rng.integers(2, vocab, (n, seq_len), dtype=np.int32),
                                                shards if split == "train" else 1)):
            rel = f"{split}/shard-{i:05d}.parquet"
            ids = pa.FixedSizeListArray.from_arrays(pa.array(part.reshape(-1)), seq_len)
            pq.write_table(pa.table({"input_ids": ids, "source": ["bench"] * len(part)}, schema=schema), root / rel)
            entries.append({"path": rel, "rows": len(part)})
        splits[split] = {"shards": entries}
    manifest = {"seq_len": seq_len, "model_kind": "gpt", "splits": splits,
                "tokenizer": {"path": "tokenizer", "vocab_size": vocab, **SPECIAL}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def plain(tokens: Path, model_spec: ModelSpec, spec: TrainSpec, seq_len: int, vocab: int, device: str) -> dict:
    """The loop alone: shards read with pyarrow into memory, batches from a Python iterator, no Ray."""
    t0 = time.perf_counter()
    torch.manual_seed(spec.seed)
    model = build_model(model_spec, vocab, seq_len, SPECIAL).to(device)
    rows = np.concatenate([
        pq.read_table(p, columns=["input_ids"]).column("input_ids").combine_chunks().values.to_numpy()
        .reshape(-1, seq_len) for p in sorted((tokens / "train").glob("*.parquet"))
    ])
    batches = torch.from_numpy(rows).split(spec.micro_batch_size)
    stream = (b for _ in range(10**6) for b in batches if len(b) == spec.micro_batch_size)
    val = list(batches[: spec.eval_batches])
    state = train(model, lambda start: itertools.islice(stream, start, None), lambda: iter(val), spec, "gpt",
                  SPECIAL, vocab, device)
    wall = time.perf_counter() - t0
    return {"steady": state.tokens_per_s, "total": state.tokens_seen / wall, "wall": wall, "mfu": state.mfu}


def on_ray(tokens: Path, model_spec: ModelSpec, spec: TrainSpec, threads: int, gpu: bool, store: Path,
           seq_len: int, vocab: int, device: str) -> tuple[dict, dict]:
    """Ray Train with 1 worker; then the plain loop again while the (idle) Ray cluster is still up, which
    separates the cost of Ray's daemons merely running on this machine from Ray Train's own."""
    import ray

    from cluster.train.ray_entry import run_pretraining

    t0 = time.perf_counter()
    ray.init(num_cpus=threads + 1, include_dashboard=False, log_to_driver=False)
    t1 = time.perf_counter()
    out = run_pretraining(tokens_dir=str(tokens), model=model_spec, train=spec,
                          scaling=ScalingSpec(num_workers=1, use_gpu=gpu, cpus_per_worker=threads),
                          run_name="bench", storage_path=str(store))
    t2 = time.perf_counter()
    beside = plain(tokens, model_spec, spec, seq_len, vocab, device)
    ray.shutdown()
    seen = out.metrics["tokens_seen"]
    return {"steady": out.metrics["tokens_per_s"], "total": seen / (t2 - t0), "total_no_init": seen / (t2 - t1),
            "wall": t2 - t0, "init": t1 - t0, "mfu": out.metrics["mfu"]}, beside


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--preset", default="mini", choices=["tiny", "mini", "small"])
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads on both sides")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats of both sides (medians reported)")
    ap.add_argument("--gpu", action="store_true", help="GPT-2 small, bf16, seq 1024, vocab 50304 on CUDA")
    args = ap.parse_args()
    if args.gpu:
        if not torch.cuda.is_available():
            print("NOT RUN: no CUDA")
            return
        args.preset, args.seq_len, args.batch, args.vocab = "small", 1024, 16, 50304
        args.steps = min(args.steps, 50)
        args.threads = max(args.threads, 8)
    device = "cuda" if args.gpu else "cpu"
    torch.set_num_threads(args.threads)
    model_spec = ModelSpec(kind="gpt", preset=args.preset)
    spec = TrainSpec(max_steps=args.steps, micro_batch_size=args.batch, grad_accum=1, warmup_steps=min(10, args.steps),
                     eval_every=10**6, eval_batches=1, checkpoint_every=10**6, precision="auto")
    rows = args.steps * args.batch + 64  # one pass: no epoch boundary on either side
    with tempfile.TemporaryDirectory() as tmp:
        tokens = write_tokens(Path(tmp) / "tokens", rows, args.seq_len, args.vocab)
        model = build_model(model_spec, args.vocab, args.seq_len, SPECIAL)
        n_params = sum(p.numel() for p in model.parameters())
        fpt = flops_per_token(model, args.seq_len)
        print(f"GPT preset={args.preset} ({n_params / 1e6:.1f}M params, {fpt / 1e6:.0f} MFLOP/token), "
              f"seq_len={args.seq_len}, batch={args.batch}, steps={args.steps}, device={device}, "
              f"threads={args.threads}, torch {torch.__version__}")
        runs: list[tuple[dict, dict, dict]] = []
        for i in range(args.repeats):  # interleaved: plain, then Ray (and plain beside the idle Ray), repeated
            p = plain(tokens, model_spec, spec, args.seq_len, args.vocab, device)
            r, b = on_ray(tokens, model_spec, spec, args.threads, args.gpu, Path(tmp) / f"runs-{i}", args.seq_len,
                          args.vocab, device)
            runs.append((p, r, b))
            print(f"  repeat {i + 1}: steady tokens/s plain {p['steady']:,.0f}, Ray Train {r['steady']:,.0f}, "
                  f"plain beside idle Ray {b['steady']:,.0f}", flush=True)

    def med(values: list[float], spec_: str) -> str:
        return f"{statistics.median(values):{spec_}} [{min(values):{spec_}}–{max(values):{spec_}}]"

    ps, rs, bs = ([run[k] for run in runs] for k in range(3))
    col = (lambda side, key: [x[key] for x in side])
    print(f"\nmedians [min–max] of {len(runs)} interleaved repeats")
    print(f"{'':34}{'plain loop':>24}{'Ray Train (1 worker)':>26}{'Ray / plain':>24}")
    print(f"{'steady-state tokens/s':34}{med(col(ps, 'steady'), ',.0f'):>24}{med(col(rs, 'steady'), ',.0f'):>26}"
          f"{med([r['steady'] / p['steady'] for p, r, _ in runs], '.3f'):>24}")
    print(f"{'  plain loop, idle Ray alongside':34}{med(col(bs, 'steady'), ',.0f'):>24}{'':>26}"
          f"{med([b['steady'] / p['steady'] for p, _, b in runs], '.3f'):>24}")
    print(f"{'total tokens/s (incl. start-up)':34}{med(col(ps, 'total'), ',.0f'):>24}{med(col(rs, 'total'), ',.0f'):>26}"
          f"{med([r['total'] / p['total'] for p, r, _ in runs], '.3f'):>24}")
    print(f"{'  … excluding ray.init':34}{'':>24}{med(col(rs, 'total_no_init'), ',.0f'):>26}"
          f"{med([r['total_no_init'] / p['total'] for p, r, _ in runs], '.3f'):>24}")
    print(f"{'wall seconds':34}{med(col(ps, 'wall'), '.1f'):>24}{med(col(rs, 'wall'), '.1f'):>26}"
          f"   (ray.init {med(col(rs, 'init'), '.1f')} s)")
    if any(x["mfu"] is not None for _, x, _ in runs):
        print(f"{'MFU (steady, bf16 dense peak)':34}{med([p['mfu'] or 0 for p in ps], '.1%'):>24}"
              f"{med([r['mfu'] or 0 for r in rs], '.1%'):>26}")
    overheads = [1 - r["steady"] / p["steady"] for p, r, _ in runs]
    own = [1 - r["steady"] / b["steady"] for _, r, b in runs]
    overhead = statistics.median(overheads)
    print(f"\nRay Train steady-state overhead vs the plain loop: {med(overheads, '+.1%')} (target <= 10%): "
          f"{'MET' if overhead <= 0.10 else 'NOT MET'}")
    # An overhead below zero cannot be real (Ray Train runs the same loop plus more): below zero is noise.
    if min(own) < 0 < max(own) or statistics.median(own) <= 0:
        print(f"vs the plain loop with Ray idle alongside: no overhead measurable beyond noise (spread {med(own, '+.1%')})")
    else:
        print(f"vs the plain loop with Ray idle alongside: {med(own, '+.1%')}")

if __name__ == "__main__":
    main()
