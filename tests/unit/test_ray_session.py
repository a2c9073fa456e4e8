"""`cluster.ray_session`: the pure sizing and placement rules, then `ensure_ray` on a real local Ray (started,
restarted larger for a bigger stage, a foreign Ray refused rather than waited on, a GPU request refused at once)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cluster import ray_session
from cluster.ray_session import RayRequest, RayResourceError, placeable_workers, plan_local, shortfall
from tasks.pretrain.core import PreflightError

ROOT = Path(__file__).resolve().parents[2]


def _req(**kw) -> RayRequest:
    base = {"num_workers": 2, "cpus_per_worker": 1.0, "use_gpu": False, "stage": "GLUE (scaling)",
            "cpu_fix": "rerun with `--cpu`"}
    return RayRequest(**{**base, **kw})


def test_plan_local_gives_the_workers_and_one_cpu_for_the_controller():
    assert plan_local(_req(), machine_cpus=16) == 3
    assert plan_local(_req(num_workers=1, cpus_per_worker=0.5), machine_cpus=16) == 2  # at least 2
    # concurrent jobs: room for all of them, within the machine's cores
    assert plan_local(_req(jobs=4), machine_cpus=16) == 9
    assert plan_local(_req(jobs=4), machine_cpus=4) == 4


def test_a_worker_lives_on_one_node():
    nodes = [{"CPU": 1.5, "GPU": 0.0}, {"CPU": 1.5}]
    assert placeable_workers(nodes, {"CPU": 1.0}) == 2
    assert placeable_workers(nodes, {"CPU": 2.0}) == 0  # 3 CPUs in all, but no node has 2
    assert placeable_workers([{"CPU": 8, "GPU": 2}], {"CPU": 1.0, "GPU": 1.0}) == 2


def test_no_gpu_is_refused_with_the_cpu_fallback_named():
    problem = shortfall(_req(use_gpu=True, num_workers=1), [{"CPU": 2.0}])
    assert problem and "1 GPU" in problem and "0 GPU" in problem and "--cpu" in problem
    assert "CPU" not in problem.split("need", 1)[1].split("but")[0]  # only what is short is named


def test_split_resources_are_named_when_no_single_resource_is_short():
    problem = shortfall(_req(cpus_per_worker=2.0), [{"CPU": 2.0}, {"CPU": 1.0}, {"CPU": 1.0}])
    assert problem and "places 1 such worker(s) at most" in problem and "4 CPU" in problem
    assert shortfall(_req(), [{"CPU": 2.0}]) is None


def test_an_autoscaling_clusters_maximum_wins_over_the_nodes_up_now():
    gpu = _req(use_gpu=True, num_workers=2)
    assert shortfall(gpu, [{"CPU": 2.0}], max_resources={"CPU": 64.0, "GPU": 8.0}) is None  # scales from zero
    problem = shortfall(gpu, [{"CPU": 2.0}], max_resources={"CPU": 64.0, "GPU": 1.0})
    assert problem and "can grow to 1 GPU" in problem


def test_refusals_are_preflight_errors():
    assert issubclass(RayResourceError, PreflightError) and issubclass(RayResourceError, ValueError)


def _scenario(name: str) -> dict:
    """Run a scenario below in a fresh Python (this process may hold another test's Ray session); its report."""
    done = subprocess.run([sys.executable, "-m", "tests.unit.test_ray_session", name], capture_output=True,
                          text=True, timeout=180, cwd=ROOT, env={**os.environ, "RAY_ADDRESS": ""})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.ray
def test_ensure_ray_starts_then_restarts_larger_then_refuses_a_gpu_request():
    seen = _scenario("resize")
    assert seen["first_cpus"] == 2 and seen["worker_env"] == ["sqlite:////tmp/x.db", "false"]  # workers' settings
    assert seen["smaller_reused_same_node"] is True
    assert seen["train_env_same"] is None  # the job already carries it: Train workers get no extra runtime_env
    assert seen["train_env_other"]["env_vars"]["MLFLOW_TRACKING_URI"] == "sqlite:////tmp/y.db"
    assert seen["bigger_cpus"] == 4 and seen["bigger_new_node"] is True  # a bigger stage: restarted larger
    assert seen["gpu_refused"] and "--cpu" in seen["gpu_refused"]
    assert seen["gpu_refused_started_ray"] is False and seen["gpu_refused_s"] < 5  # before anything started


@pytest.mark.ray
def test_a_ray_started_by_someone_else_is_refused_not_waited_on():
    seen = _scenario("foreign")
    assert seen["refused"] and "places 1 such worker(s) at most" in seen["refused"]
    assert seen["cpus_after"] == 1  # not ours: left as it was
    assert seen["train_env"]["env_vars"]["TOKENIZERS_PARALLELISM"] == "false"  # its Train workers get the env


def _resize() -> dict:
    import ray

    ray_session._machine_gpus = lambda: 0  # this scenario is about a machine without GPUs, whatever runs it
    out: dict = {}
    ray_session.ensure_ray(_req(num_workers=1), tracking_uri="sqlite:////tmp/x.db")
    out["first_cpus"] = ray.cluster_resources()["CPU"]
    first = ray.get_runtime_context().get_node_id()

    @ray.remote
    def env() -> list:
        return [os.environ.get("MLFLOW_TRACKING_URI"), os.environ.get("TOKENIZERS_PARALLELISM")]

    out["worker_env"] = ray.get(env.remote())
    out["train_env_same"] = ray_session.train_worker_runtime_env("sqlite:////tmp/x.db")
    out["train_env_other"] = ray_session.train_worker_runtime_env("sqlite:////tmp/y.db")
    ray_session.ensure_ray(_req(num_workers=1, cpus_per_worker=0.5), tracking_uri=None)  # fits: reused
    out["smaller_reused_same_node"] = ray.get_runtime_context().get_node_id() == first
    ray_session.ensure_ray(_req(num_workers=3), tracking_uri=None)
    out["bigger_cpus"] = ray.cluster_resources()["CPU"]
    out["bigger_new_node"] = ray.get_runtime_context().get_node_id() != first
    ray.shutdown()
    ray_session._STARTED_CPUS = None
    started = time.monotonic()
    try:
        ray_session.ensure_ray(_req(num_workers=1, use_gpu=True), tracking_uri=None)
        out["gpu_refused"] = None
    except RayResourceError as exc:
        out["gpu_refused"] = str(exc)
    out["gpu_refused_s"] = time.monotonic() - started
    out["gpu_refused_started_ray"] = ray.is_initialized()
    return out


def _foreign() -> dict:
    import ray

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        ray_session.ensure_ray(_req(num_workers=2), tracking_uri=None)
        refused = None
    except RayResourceError as exc:
        refused = str(exc)
    return {"refused": refused, "cpus_after": ray.cluster_resources()["CPU"],
            "train_env": ray_session.train_worker_runtime_env(None)}


if __name__ == "__main__":
    os.environ.pop("RAY_ADDRESS", None)
    print(json.dumps({"resize": _resize, "foreign": _foreign}[sys.argv[1]]()))
