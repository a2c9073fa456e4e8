"""GLUE hyperparameter search (issue 15): the BERT paper's grid on one task, against the fixed recipe.

The task is bench_glue.py's: the 872 real SST-2 dev rows shuffled with `random.Random(0)`, all-MiniLM-L6-v2
fine-tuned on the first 436 and scored on the other 436, max length 64, weight decay 0.01, warmup 10%, seed 0.

1. **Fixed recipe** (the baseline, what a user runs without a search): `lmpipe glue` with lr 5e-5, batch 16,
   3 epochs on all 436 train rows, the last checkpoint scored.
2. **Search:** `search: {lr: [5e-5, 3e-5, 2e-5], batch_size: [16, 32], epochs: [2, 3, 4]}` with `select: best`:
   10% of the train rows carved off (seeded), every trial scored on them each epoch, the best checkpoint of the
   best trial chosen, then dev scored once. Trials run as concurrent Ray Train jobs (1 CPU each, as many as the
   cores hold). Reported: wall time, the chosen trial, its dev accuracy beside the fixed recipe's with paired
   bootstrap intervals (1,000 resamples over the held-out rows).
3. **Concurrency:** a 2-trial grid (lr {5e-5, 3e-5}, batch 32, 2 epochs), sequential trials that each get every
   core (`max_concurrent: 1`, `cpus_per_worker` = the cores) against concurrent 1-core trials, interleaved,
   `--repeats` times, each in a fresh storage folder (nothing reused). Both sides use the same cores: the wall
   ratio is the per-core ratio.

Run: `.venv/bin/python benchmarks/bench_glue_search.py [--threads 2] [--repeats 3] [--skip-grid]`
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_glue import HP, bench_root, minilm_dir, print_bootstrap, split_rows, write_glue_dir  # noqa: E402 (sets the offline env first)

BERT_GRID = {"lr": [5e-5, 3e-5, 2e-5], "batch_size": [16, 32], "epochs": [2, 3, 4]}
SMALL_GRID = {"lr": [5e-5, 3e-5], "batch_size": [32], "epochs": [2]}


def glue_run(glue_dir: Path, root: Path, name: str, *, cpus: float, search: dict | None = None,
             max_concurrent: int | None = None) -> dict:
    """One `lmpipe glue` flow run on the split, its jobs under a storage folder of its own (nothing reused)."""
    import yaml

    from flows.glue import glue

    defaults = {**HP, "seed": 0}
    if search is not None:
        defaults.update(select="best", selection_fraction=0.1)
    spec = {"name": f"bench-{name}", "tasks": ["sst2"], "defaults": defaults,
            "scaling": {"num_workers": 1, "cpus_per_worker": cpus, "storage_path": str(root / name / "runs")},
            "contamination": {"enabled": False}}
    if search is not None:
        spec["search"] = {**search, **({"max_concurrent": max_concurrent} if max_concurrent else {})}
    (root / name).mkdir(parents=True)
    (root / name / "spec.yaml").write_text(yaml.safe_dump(spec))
    t0 = time.perf_counter()
    summary = glue(minilm_dir(), tasks=["sst2"], spec_path=str(root / name / "spec.yaml"), data_dir=str(glue_dir),
                   name=f"minilm-{name}")
    return {"wall_s": time.perf_counter() - t0, "accuracy": summary["tasks"]["sst2"]["accuracy"],
            "run_id": summary["run_id"]}


def chosen_trial(run_id: str) -> dict:
    import json

    from mlflow import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    (task_run,) = client.search_runs([client.get_run(run_id).info.experiment_id],
                                     filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'")
    return json.loads(task_run.data.tags["lmpipe.glue.chosen_trial"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-grid", action="store_true", help="only the concurrency comparison")
    args = ap.parse_args()
    root = bench_root("lmpipe-bench-search-")
    if root is None:
        return
    from cluster.train.ray_entry import _ensure_ray
    from data_specs.glue import GlueScalingSpec

    # One local Ray of exactly the cores, before any job sizes it: both sides see the same cluster.
    _ensure_ray(GlueScalingSpec(num_workers=1, cpus_per_worker=1.0), os.environ["MLFLOW_TRACKING_URI"],
                jobs=args.threads)
    train, dev = split_rows()
    glue_dir = write_glue_dir(root / "glue", train, dev)

    def med(xs):
        return f"{statistics.median(xs):.1f} s [{min(xs):.1f}–{max(xs):.1f}]"

    seq, conc = [], []
    for r in range(args.repeats):  # interleaved: sequential all-core trials, then concurrent 1-core trials
        seq.append(glue_run(glue_dir, root, f"seq{r}", cpus=float(args.threads), search=SMALL_GRID,
                            max_concurrent=1)["wall_s"])
        conc.append(glue_run(glue_dir, root, f"conc{r}", cpus=1.0, search=SMALL_GRID)["wall_s"])
        print(f"repeat {r}: 2-trial grid sequential {seq[-1]:.1f} s, concurrent {conc[-1]:.1f} s", flush=True)
    ratios = [s / c for s, c in zip(seq, conc)]
    print(f"\n2-trial grid {SMALL_GRID}, {args.repeats} interleaved repeats on {args.threads} cores:")
    print(f"  sequential, each trial on {args.threads} cores (max_concurrent: 1): {med(seq)}")
    print(f"  concurrent, {args.threads} trials at once on 1 core each (auto):       {med(conc)}")
    print(f"  speed-up concurrent / sequential (same cores: per core too): median {statistics.median(ratios):.2f}× "
          f"[{min(ratios):.2f}–{max(ratios):.2f}]")
    if args.skip_grid:
        print("\nBERT grid: NOT RUN (--skip-grid)")
        return

    fixed = glue_run(glue_dir, root, "fixed", cpus=float(args.threads))
    print(f"\nfixed recipe (lr {HP['lr']}, batch {HP['batch_size']}, {HP['epochs']} epochs, 436 rows): "
          f"dev {fixed['accuracy']:.1%} in {fixed['wall_s']:.0f} s", flush=True)
    grid = glue_run(glue_dir, root, "grid", cpus=1.0, search=BERT_GRID)
    chosen = chosen_trial(grid["run_id"])
    print(f"BERT grid ({chosen['n_trials']} trials, {chosen['concurrent']} at a time, 1 core each): "
          f"{grid['wall_s']:.0f} s; chosen trial {chosen['trial']} lr {chosen['lr']} batch {chosen['batch_size']} "
          f"epochs {chosen['epochs']:g} (selection accuracy {chosen['selection_score']:.1%} on the 44 carved rows); "
          f"dev {grid['accuracy']:.1%}")

    from tasks.registry.evaluations import load_predictions

    uri = os.environ["MLFLOW_TRACKING_URI"]
    labels, searched = load_predictions(grid["run_id"], ["sst2"], uri)["sst2"]
    labels_fixed, fixed_pred = load_predictions(fixed["run_id"], ["sst2"], uri)["sst2"]
    assert labels.tolist() == labels_fixed.tolist(), "the two runs scored different dev rows"
    print_bootstrap(labels, {"search": searched, "fixed": fixed_pred}, "436 held-out rows (1,000 resamples)")


if __name__ == "__main__":
    main()
