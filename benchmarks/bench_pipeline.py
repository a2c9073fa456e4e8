"""The sample pipeline end to end (what `make demo` runs): wall time per stage and in total, and the share of it
spent in orchestration rather than work, on this machine's cores.

Each repeat runs `flows.pipeline.pipeline` on the bundled sample corpus and GLUE sample with fresh outputs, a
fresh MLflow store and fresh pipeline state, in a new Python process (so every repeat pays the same start-up:
imports, Prefect's temporary server, Ray's start), like `make demo` does.

Orchestration, measured where it happens:
- `prefect_start_s`: from the process start to the flow's first line (imports + Prefect's temporary server);
- `ray_start_s`: `ray.init` of the local cluster, summed (once per run unless a later stage needs a larger
  one: `cluster.ray_session` restarts it);
- `train_start_s`: for each Ray Train job, from `TorchTrainer.fit()` to the first optimizer step
  (controller and worker actors, imports in the workers, model build, data start-up), summed over the jobs.
The rest is the stages' work (reading, cleaning, tokenizing, training steps, evaluation, registry writes).
Median and spread over `--repeats` runs.

Baseline and candidate (`--servers`): the same runs with Prefect's temporary server (what a plain
`lmpipe pipeline` started before 599bfa7, and still does without `lmpipe services`) against a Prefect server that
is already running (what `lmpipe services up` gives every later command), interleaved run by run.

Run: `.venv/bin/python benchmarks/bench_pipeline.py [--repeats 3] [--servers]`
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
           "ray_start_s": ray_entry.RAY_START_S, "train_start_s": ray_entry.TRAIN_START_S,
           "ray_starts": len(ray_session.RAY_STARTS_S),
           "glue_score": out["stages"]["glue"]["glue_score"]}, open(sys.argv[3], "w"))
"""


def write_specs(root: Path) -> Path:
    """The sample pipeline's specs (the stages data_specs/pipeline/sample.yaml names) with every output under
    `root`."""
    stages = yaml.safe_load((REPO / "data_specs/pipeline/sample.yaml").read_text())
    curate = yaml.safe_load((REPO / stages["curate"]).read_text())
    curate["output"] = str(root / "curated")
    curate = json.loads(json.dumps(curate).replace('"tests/', f'"{REPO}/tests/'))  # absolute input paths
    pretrain = yaml.safe_load((REPO / stages["pretrain"]).read_text())
    pretrain["data"] = {"curated": str(root / "curated"), "tokens": str(root / "tokens")}
    glue = yaml.safe_load((REPO / stages["glue"]).read_text())
    glue["data"] = {"dir": str(REPO / "tests/fixtures/glue_sample")}
    glue["scaling"] = {**glue.get("scaling", {}), "storage_path": str(root / "glue-runs")}
    spec = {"name": "bench", "curate": curate, "pretrain": pretrain, "glue": glue}
    path = root / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def one_run(prefect_api: str | None = None) -> dict:
    root = Path(tempfile.mkdtemp(prefix="lmpipe-bench-pipeline-"))
    env = {**{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"},
           **({"PREFECT_API_URL": prefect_api} if prefect_api else {}), "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db", "LMPIPE_STATE_DIR": str(root / "state"),
           "PREFECT_HOME": str(root / "prefect"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "RAY_USAGE_STATS_ENABLED": "0",
           "PREFECT_LOGGING_LEVEL": "WARNING"}
    spec = write_specs(root)
    out = root / "timing.json"
    t0 = time.time()
    done = subprocess.run([sys.executable, "-c", CHILD, str(spec), str(t0), str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:])
        raise SystemExit("the pipeline failed")
    r = json.loads(out.read_text())
    total = time.time() - t0
    prefect_start = r["started_at"] - r["t0"]
    orchestration = prefect_start + (r["ray_start_s"] or 0) + sum(r["train_start_s"])
    return {"total": total, "stages": r["timings"], "prefect_start": prefect_start, "ray_start": r["ray_start_s"] or 0,
            "train_start": sum(r["train_start_s"]), "jobs": len(r["train_start_s"]), "orchestration": orchestration,
            "ray_starts": r.get("ray_starts", 1),
            "glue_score": r["glue_score"]}


def running_prefect_server(root: Path) -> tuple[subprocess.Popen, str]:
    """A Prefect server on a free loopback port with its own PREFECT_HOME, up and healthy: what `lmpipe services`
    runs (the bench does not touch the user's services)."""
    import socket
    import urllib.request

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
        try:
            urllib.request.urlopen(f"{api}/health", timeout=2)
            return proc, api
        except OSError:
            time.sleep(1)
    proc.kill()
    raise SystemExit("the Prefect server did not come up")


def report(label: str, runs: list[dict]) -> None:
    def med(xs: list[float]) -> str:
        return f"{statistics.median(xs):6.1f} [{min(xs):.1f}–{max(xs):.1f}]"

    print(f"\nsample pipeline on {os.cpu_count()} cores, {len(runs)} runs, {label}; seconds: median [min–max]")
    print(f"{'total wall (new process)':34}{med([r['total'] for r in runs])}")
    for stage in runs[0]["stages"]:
        print(f"{'  stage ' + stage:34}{med([r['stages'][stage] for r in runs])}")
    print(f"{'orchestration':34}{med([r['orchestration'] for r in runs])}  "
          f"= {statistics.median(r['orchestration'] / r['total'] for r in runs):.0%} of the total")
    print(f"{'  imports + Prefect server start':34}{med([r['prefect_start'] for r in runs])}")
    print(f"{'  Ray start(s)':34}{med([r['ray_start'] for r in runs])}  ({runs[0]['ray_starts']} per run)")
    print(f"{'  Ray Train jobs to first step':34}{med([r['train_start'] for r in runs])}  ({runs[0]['jobs']} jobs)")
    print(f"{'work (the rest)':34}{med([r['total'] - r['orchestration'] for r in runs])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--servers", action="store_true", help="also run each repeat against a running Prefect "
                    "server, interleaved with the temporary-server runs")
    args = ap.parse_args()
    sides = {"temporary Prefect server (baseline)": None}
    server = None
    if args.servers:
        server, api = running_prefect_server(Path(tempfile.mkdtemp(prefix="lmpipe-bench-prefect-")))
        sides["running Prefect server (lmpipe services)"] = api
    runs: dict[str, list[dict]] = {label: [] for label in sides}
    try:
        for i in range(args.repeats):
            for label, api in sides.items():
                r = one_run(api)
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
    if args.servers:
        base, cand = runs.values()
        ratios = [c["total"] / b["total"] for b, c in zip(base, cand)]
        print(f"\nwall time, running server / temporary server (same repeat): median {statistics.median(ratios):.3f} "
              f"[{min(ratios):.3f}–{max(ratios):.3f}] (same cores on both sides)")


if __name__ == "__main__":
    main()
