"""The sample pipeline end to end (what `make demo` runs): wall time per stage and in total, and the share of it
spent in orchestration rather than work, on this machine's cores.

Each repeat runs `flows.pipeline.pipeline` on the bundled sample corpus and GLUE sample with fresh outputs, a
fresh MLflow store and fresh pipeline state, in a new Python process (so every repeat pays the same start-up:
imports, Prefect's temporary server, Ray's start), like `make demo` does.

Orchestration, measured where it happens, as wall-clock windows:
- `prefect_start`: from the process start to the flow's first line (imports + Prefect's temporary server);
- `ray_start`: `ray.init` of the local cluster (once per run unless a later stage needs a larger one:
  `cluster.ray_session` restarts it);
- `train_start`: for each Ray Train job, from `TorchTrainer.fit()` to the end of its first optimizer step
  (controller and worker actors, imports in the workers, model build, data start-up).
Orchestration is the union of those windows: GLUE tasks fine-tuned at once start together, and their
overlapping start-ups are counted once. "While no job trains" leaves out the parts of it during which another
Ray Train job takes optimizer steps (from its first step to `fit()` returning): with concurrent GLUE tasks, one
task's start-up runs while the other trains. The rest is the stages' work (reading, cleaning, tokenizing, training
steps, evaluation, registry writes). Median and spread over `--repeats` runs.

Comparisons, each against its baseline in the same repeat, interleaved run by run:
- `--servers`: Prefect's temporary server (what a plain `lmpipe pipeline` starts without `lmpipe services`)
  against a Prefect server that is already running (what `lmpipe services up` gives every later command);
- `--glue-concurrency`: GLUE tasks one after another (`scaling.max_concurrent_tasks: 1`, every run before
  this option) against the default, as many at once as the local Ray holds.

Run: `.venv/bin/python benchmarks/bench_pipeline.py [--repeats 3] [--servers | --glue-concurrency]`
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, sys, time
t0 = float(sys.argv[2])
from flows.pipeline import pipeline
out = pipeline(sys.argv[1])
from cluster import ray_session
from cluster.train import ray_entry
json.dump({"t0": t0, "end": time.time(), "started_at": out["started_at"], "timings": out["timings"],
           "ray_starts": ray_session.RAY_STARTS, "train_starts": ray_entry.TRAIN_STARTS,
           "glue_score": out["stages"]["glue"]["glue_score"]}, open(sys.argv[3], "w"))
"""


def write_specs(root: Path, glue_scaling: dict | None = None) -> Path:
    """The sample pipeline's specs (the stages data_specs/pipeline/sample.yaml names) with every output under
    `root`, and `glue_scaling` over the GLUE spec's scaling."""
    stages = yaml.safe_load((REPO / "data_specs/pipeline/sample.yaml").read_text())
    curate = yaml.safe_load((REPO / stages["curate"]).read_text())
    curate["output"] = str(root / "curated")
    curate = json.loads(json.dumps(curate).replace('"tests/', f'"{REPO}/tests/'))  # absolute input paths
    pretrain = yaml.safe_load((REPO / stages["pretrain"]).read_text())
    pretrain["data"] = {"curated": str(root / "curated"), "tokens": str(root / "tokens")}
    glue = yaml.safe_load((REPO / stages["glue"]).read_text())
    glue["data"] = {"dir": str(REPO / "tests/fixtures/glue_sample")}
    glue["scaling"] = {**glue.get("scaling", {}), **(glue_scaling or {}), "storage_path": str(root / "glue-runs")}
    spec = {"name": "bench", "curate": curate, "pretrain": pretrain, "glue": glue}
    path = root / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def covered_s(windows: list[tuple[float, float]], minus: list[tuple[float, float]] = ()) -> float:
    """Seconds covered by at least one of the (start, end) wall-clock `windows` and by none of `minus`."""
    points = sorted({t for w in (*windows, *minus) for t in w})
    total = 0.0
    for a, b in zip(points, points[1:]):
        mid = (a + b) / 2
        if any(s <= mid < e for s, e in windows) and not any(s <= mid < e for s, e in minus):
            total += b - a
    return total


def one_run(prefect_api: str | None = None, glue_scaling: dict | None = None) -> dict:
    root = Path(tempfile.mkdtemp(prefix="lmpipe-bench-pipeline-"))
    env = {**{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"},
           **({"PREFECT_API_URL": prefect_api} if prefect_api else {}),
           "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db", "LMPIPE_STATE_DIR": str(root / "state"),
           "PREFECT_HOME": str(root / "prefect"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "RAY_USAGE_STATS_ENABLED": "0",
           "PREFECT_LOGGING_LEVEL": "WARNING"}
    spec = write_specs(root, glue_scaling)
    out = root / "timing.json"
    t0 = time.time()
    done = subprocess.run([sys.executable, "-c", CHILD, str(spec), str(t0), str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:])
        raise SystemExit("the pipeline failed")
    r = json.loads(out.read_text())
    total = time.time() - t0
    prefect = (r["t0"], r["started_at"])
    ray_starts = [tuple(w) for w in r["ray_starts"]]
    train_starts = [(fit, first) for fit, first, _ in r["train_starts"]]
    training = [(first, end) for _, first, end in r["train_starts"]]  # some job takes optimizer steps
    windows = [prefect, *ray_starts, *train_starts]
    return {"total": total, "stages": r["timings"], "prefect_start": prefect[1] - prefect[0],
            "ray_start": sum(b - a for a, b in ray_starts), "ray_starts": len(ray_starts),
            "train_start": covered_s(train_starts), "train_start_sum": sum(b - a for a, b in train_starts),
            "jobs": len(train_starts), "orchestration": covered_s(windows),
            "orchestration_idle": covered_s(windows, minus=training), "glue_score": r["glue_score"]}


def running_prefect_server(root: Path) -> tuple[subprocess.Popen, str]:
    """A Prefect server on a free loopback port with its own PREFECT_HOME, up and healthy: what `lmpipe services`
    runs (the bench does not touch the user's services)."""
    import socket

    from tasks.services.processes import is_healthy

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PREFECT_HOME": str(root / "prefect-server"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([str(Path(sys.executable).with_name("prefect")), "server", "start", "--host",
                             "127.0.0.1", "--port", str(port), "--no-ui"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    deadline = time.time() + 180
    while time.time() < deadline:
        if is_healthy(f"{api}/health"):
            return proc, api
        time.sleep(1)
    proc.kill()
    raise SystemExit("the Prefect server did not come up")


NOOP_FLOW = r"""
import sys, time
t0 = float(sys.argv[1])
from prefect import flow
print(flow(lambda: time.time(), name="noop")() - t0)
"""


def prefect_database_creation_s() -> float:
    """Seconds a fresh PREFECT_HOME adds to a temporary server's start (its SQLite database is created and migrated
    once, then reused): a no-op flow in a new process on a new home, minus the same on that home again. Every
    pipeline repeat above runs on a new home, so it pays this each time; a user's nightly runs pay it once."""
    home = tempfile.mkdtemp(prefix="lmpipe-bench-prefect-home-")
    env = {**{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}, "PREFECT_HOME": home,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"}
    took = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", NOOP_FLOW, str(time.time())], env=env, capture_output=True,
                              text=True, check=True)
        took.append(float(done.stdout.strip().splitlines()[-1]))
    return took[0] - took[1]


def report(label: str, runs: list[dict]) -> None:
    def med(xs: list[float]) -> str:
        return f"{statistics.median(xs):6.1f} [{min(xs):.1f}–{max(xs):.1f}]"

    print(f"\nsample pipeline on {os.cpu_count()} cores, {len(runs)} runs, {label}; seconds: median [min–max]")
    print(f"{'total wall (new process)':34}{med([r['total'] for r in runs])}")
    for stage in runs[0]["stages"]:
        print(f"{'  stage ' + stage:34}{med([r['stages'][stage] for r in runs])}")
    print(f"{'orchestration':34}{med([r['orchestration'] for r in runs])}  "
          f"= {statistics.median(r['orchestration'] / r['total'] for r in runs):.0%} of the total")
    print(f"{'  of it while no job trains':34}{med([r['orchestration_idle'] for r in runs])}  "
          f"= {statistics.median(r['orchestration_idle'] / r['total'] for r in runs):.0%} of the total")
    print(f"{'  imports + Prefect server start':34}{med([r['prefect_start'] for r in runs])}")
    print(f"{'  Ray start(s)':34}{med([r['ray_start'] for r in runs])}  ({runs[0]['ray_starts']} per run)")
    print(f"{'  Ray Train jobs to first step':34}{med([r['train_start'] for r in runs])}  ({runs[0]['jobs']} jobs; "
          f"summed over jobs {statistics.median(r['train_start_sum'] for r in runs):.1f})")
    print(f"{'GLUE score':34}{med([100 * r['glue_score'] for r in runs])}")
    print(f"{'work (the rest)':34}{med([r['total'] - r['orchestration'] for r in runs])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--servers", action="store_true", help="also run each repeat against a running Prefect "
                    "server, interleaved with the temporary-server runs")
    ap.add_argument("--glue-concurrency", action="store_true", help="also run each repeat with the GLUE tasks one "
                    "after another (scaling.max_concurrent_tasks: 1), interleaved with the default runs")
    args = ap.parse_args()
    if args.servers and args.glue_concurrency:
        ap.error("one comparison at a time: --servers or --glue-concurrency")
    sides: dict[str, tuple[str | None, dict | None]] = {"temporary Prefect server (baseline)": (None, None)}
    server = None
    if args.servers:
        server, api = running_prefect_server(Path(tempfile.mkdtemp(prefix="lmpipe-bench-prefect-")))
        sides["running Prefect server (lmpipe services)"] = (api, None)
    if args.glue_concurrency:
        sides = {"GLUE tasks one after another (baseline)": (None, {"max_concurrent_tasks": 1}),
                 "GLUE tasks at once (default)": (None, None)}
    runs: dict[str, list[dict]] = {label: [] for label in sides}
    database_s: list[float] = []
    try:
        for i in range(args.repeats):
            database_s.append(prefect_database_creation_s())
            for label, (api, glue_scaling) in sides.items():
                r = one_run(api, glue_scaling)
                runs[label].append(r)
                print(f"run {i + 1}, {label}: total {r['total']:.1f} s; "
                      + ", ".join(f"{k} {v:.1f} s" for k, v in r["stages"].items())
                      + f"; orchestration {r['orchestration']:.1f} s ({r['orchestration'] / r['total']:.0%})",
                      flush=True)
    finally:
        if server is not None:
            os.killpg(server.pid, 15)
    for label, rs in runs.items():
        report(label, rs)
    print(f"\nof the Prefect start, creating the database of a fresh PREFECT_HOME (every repeat here; once per home "
          f"for a user): {statistics.median(database_s):.1f} s [{min(database_s):.1f}–{max(database_s):.1f}]")
    for label, rs in runs.items():
        if rs[0]["prefect_start"] > 5:  # a temporary server: its share once the database exists
            shares = [(r["orchestration"] - d) / (r["total"] - d) for r, d in zip(rs, database_s)]
            print(f"  {label}: orchestration without it {statistics.median(shares):.0%} "
                  f"[{min(shares):.0%}–{max(shares):.0%}] of the total")
    if len(runs) == 2:
        (base_label, base), (cand_label, cand) = runs.items()
        ratios = [c["total"] / b["total"] for b, c in zip(base, cand)]
        print(f"\nwall time, {cand_label} / {base_label} (same repeat): median {statistics.median(ratios):.3f} "
              f"[{min(ratios):.3f}–{max(ratios):.3f}] (same {os.cpu_count()} cores on both sides)")


if __name__ == "__main__":
    main()
