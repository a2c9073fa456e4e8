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

Run: `.venv/bin/python benchmarks/bench_train.py [--steps 200] [--preset mini]`
GPU: `.venv/bin/python benchmarks/bench_train.py --gpu` (GPT-2 small, bf16, seq 1024; prints MFU too).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
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
        p = plain(tokens, model_spec, spec, args.seq_len, args.vocab, device)
        r, b = on_ray(tokens, model_spec, spec, args.threads, args.gpu, Path(tmp) / "runs", args.seq_len,
                      args.vocab, device)

    print(f"\n{'':34}{'plain loop':>14}{'Ray Train (1 worker)':>24}{'Ray / plain':>14}")
    print(f"{'steady-state tokens/s':34}{p['steady']:>14,.0f}{r['steady']:>24,.0f}{r['steady'] / p['steady']:>14.3f}")
    print(f"{'  plain loop, idle Ray alongside':34}{b['steady']:>14,.0f}{'':>24}{b['steady'] / p['steady']:>14.3f}"
          f"   (Ray Train / this: {r['steady'] / b['steady']:.3f})")
    print(f"{'total tokens/s (incl. start-up)':34}{p['total']:>14,.0f}{r['total']:>24,.0f}"
          f"{r['total'] / p['total']:>14.3f}")
    print(f"{'  … excluding ray.init':34}{p['total']:>14,.0f}{r['total_no_init']:>24,.0f}"
          f"{r['total_no_init'] / p['total']:>14.3f}")
    print(f"{'wall seconds':34}{p['wall']:>14.1f}{r['wall']:>24.1f}   (ray.init {r['init']:.1f} s)")
    if p["mfu"] is not None or r["mfu"] is not None:
        print(f"{'MFU (steady, bf16 dense peak)':34}{p['mfu'] or 0:>14.1%}{r['mfu'] or 0:>24.1%}")
    overhead, own = 1 - r["steady"] / p["steady"], 1 - r["steady"] / b["steady"]
    print(f"\nRay Train steady-state overhead vs the plain loop: {overhead:+.1%} (target <= 10%): "
          f"{'MET' if overhead <= 0.10 else 'NOT MET'}; vs the plain loop with Ray idle alongside: {own:+.1%}")


if __name__ == "__main__":
    main()
