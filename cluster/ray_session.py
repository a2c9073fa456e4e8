"""One Ray for every stage: started or joined once with the settings every worker needs, sized for the work asked
now, and checked before Ray Train starts so that a request that can never be placed fails at once with its fix.

Ray Train V2 waits for a worker group it cannot place: it retries the start every
RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S (60 s) with no limit, unless the cluster has an autoscaler config, whose
maximum it checks. So `lmpipe glue MODEL` with `use_gpu: true` on a machine without a GPU waited for ever, and a
pipeline's later stage reused a local Ray sized for its first. `ensure_ray(request)` is the one door:

- nothing running, no address: start a local Ray sized for `request` (its CPUs plus one for the Train controller);
  a GPU request on a machine without that many GPUs is refused before anything starts;
- `RAY_ADDRESS` / the spec's address: join it, with `worker_env` as the job's runtime_env, then check the request
  against the cluster's maximum (an autoscaling cluster: its config says what it can grow to, GPU groups may scale
  from zero) or, for a fixed cluster, against the nodes alive now;
- a local Ray this module started that is too small for a later stage: restarted larger (stages run one after
  another: nothing of the earlier stage lives in it any more);
- a Ray someone else started in this process (a test, prefect-ray): used as it is, refused if it is too small.

`plan_local`, `placeable_workers` and `shortfall` are pure; `ensure_ray` only applies them.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any

from tasks.pretrain.core import PreflightError


class RayResourceError(PreflightError):
    """The Ray workers asked for can never be placed where the job would run; the message says how to fix it."""


@dataclass(frozen=True)
class RayRequest:
    """What one stage needs of Ray: `jobs` concurrent Ray Train jobs of `num_workers` workers each."""

    num_workers: int
    cpus_per_worker: float
    use_gpu: bool
    jobs: int = 1
    address: str | None = None  # the spec's cluster; RAY_ADDRESS wins
    stage: str = "training"  # names the stage and the spec field in messages, e.g. "GLUE (scaling)"
    cpu_fix: str = "set scaling.use_gpu: false in the spec"  # the CPU fallback offered when there is no GPU

    @property
    def per_worker(self) -> dict[str, float]:
        return {"CPU": self.cpus_per_worker, **({"GPU": 1.0} if self.use_gpu else {})}

    @property
    def workers(self) -> int:
        return self.num_workers * self.jobs


def request_for(scaling: Any, *, stage: str, cpu_fix: str, jobs: int = 1) -> RayRequest:
    """The request of a pretrain or GLUE `scaling` spec section."""
    return RayRequest(num_workers=scaling.num_workers, cpus_per_worker=scaling.cpus_per_worker,
                      use_gpu=scaling.use_gpu, jobs=max(1, jobs), address=scaling.ray_address, stage=stage,
                      cpu_fix=cpu_fix)


def worker_env(tracking_uri: str | None) -> dict[str, str]:
    """Environment every Ray worker of lmpipe gets, on any cluster: quiet logging, no tokenizer thread pools
    (the workers fork), no usage stats, and the MLflow store the driver logs to."""
    from cluster import ray_logging

    env = {"TOKENIZERS_PARALLELISM": "false", "RAY_USAGE_STATS_ENABLED": "0", **ray_logging.WORKER_ENV_VARS}
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env


def plan_local(request: RayRequest, machine_cpus: int) -> int:
    """Logical CPUs of a local Ray for `request`: the first job's workers plus one for the Train controller (at
    least 2); concurrent jobs get room for all of them, within the machine's cores."""
    one_job = math.ceil(request.num_workers * request.cpus_per_worker) + 1
    num_cpus = max(2, one_job)
    if request.jobs > 1:
        num_cpus = max(num_cpus, min(machine_cpus, math.ceil(request.workers * request.cpus_per_worker) + 1))
    return num_cpus


def placeable_workers(nodes: list[dict[str, float]], per_worker: dict[str, float]) -> int:
    """How many workers of `per_worker` resources the nodes (each a resource -> total dict) hold at once: a worker
    lives on one node, so 0.5 CPU left on each of two nodes is no place for a 1-CPU worker."""
    total = 0
    for node in nodes:
        fits = [math.floor(node.get(k, 0.0) / v + 1e-9) for k, v in per_worker.items() if v > 0]
        total += min(fits) if fits else 0
    return total


def shortfall(request: RayRequest, nodes: list[dict[str, float]],
              max_resources: dict[str, float] | None = None) -> str | None:
    """Why `request` can never be placed, with the fix; None when it can.

    `max_resources` (an autoscaling cluster's maximum, from its config) wins over `nodes` (those alive now): what
    the autoscaler can add is not missing. Only one job's workers must fit: concurrent jobs queue.
    """
    need = {k: v * request.num_workers for k, v in request.per_worker.items()}
    if max_resources:
        short = {k: (v, max_resources.get(k, 0.0)) for k, v in need.items() if v > max_resources.get(k, 0.0) + 1e-9}
        where = "this cluster can grow to"
    else:
        fit = placeable_workers(nodes, request.per_worker)
        if fit >= request.num_workers:
            return None
        have = {k: sum(n.get(k, 0.0) for n in nodes) for k in need}
        short = {k: (v, have[k]) for k, v in need.items() if v > have[k] + 1e-9}
        short = short or {k: (v, have[k]) for k, v in need.items()}  # enough in all, but split across nodes
        where = f"the Ray cluster places {fit} such worker(s) at most; it has"
    if not short:
        return None
    asked = ", ".join(f"{v:g} {k}" for k, (v, _) in short.items())
    has = ", ".join(f"{h:g} {k}" for k, (_, h) in short.items())
    fixes = []
    if request.use_gpu and "GPU" in short:
        fixes.append(request.cpu_fix)
    fixes += ["lower scaling.num_workers or scaling.cpus_per_worker",
              "or point RAY_ADDRESS at a cluster with more resources"]
    return (f"{request.stage}: {request.num_workers} worker(s) × {request.per_worker} need {asked}, but {where} "
            f"{has}. Fix: {'; '.join(fixes)}.")


_STARTED_CPUS: float | None = None  # logical CPUs of the local Ray this module started (None: not ours)
_STOPPED = False  # stop_ray_jobs ran: this process is ending its flow, no Ray is started or joined again
RAY_STARTS: list[tuple[float, float]] = []  # wall clock of each local start of this process and of its end (bench)


def ensure_ray(request: RayRequest, tracking_uri: str | None) -> None:
    """Start, join, restart or reuse Ray so that `request` can be placed; raise RayResourceError when it never
    can (before Ray Train starts, so nothing waits)."""
    import ray

    global _STARTED_CPUS
    if _STOPPED:
        raise RayResourceError("Ray was stopped in this process (stop_ray_jobs: the flow timed out or was "
                               "interrupted); start a new run")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = os.environ.get("RAY_ADDRESS") or request.address
    if ray.is_initialized():
        if _STARTED_CPUS is not None and not address and _STARTED_CPUS < plan_local(request, os.cpu_count() or 1):
            ray.shutdown()  # ours and too small for this stage: start it again, larger
            _STARTED_CPUS = None
        else:
            _raise_if_unplaceable(request)
            return
    if address:
        ray.init(address=address, runtime_env={"env_vars": worker_env(tracking_uri)})
        _raise_if_unplaceable(request)
        return
    if request.use_gpu and (gpus := _machine_gpus()) < request.num_workers:
        raise RayResourceError(shortfall(request, [{"CPU": float(os.cpu_count() or 1), "GPU": float(gpus)}]) or "")
    _start_local(request, tracking_uri)


def _start_local(request: RayRequest, tracking_uri: str | None) -> None:
    import ray

    from cluster import ray_logging

    global _STARTED_CPUS
    num_cpus = plan_local(request, os.cpu_count() or 1)
    # Ray renices its workers to 15 by default; in a local training job the workers *are* the job, and at nice 15
    # every idle-time blip of the driver, the Prefect server or the raylet preempts them (measured: about 5% of
    # fine-tuning throughput on 2 cores). The local raylet reads this when it starts.
    os.environ.setdefault("RAY_worker_niceness", "0")
    started = time.time()
    context = ray.init(num_cpus=num_cpus, include_dashboard=False,
                       runtime_env={"env_vars": worker_env(tracking_uri),
                                    "worker_process_setup_hook": ray_logging.quiet_local_workers})
    RAY_STARTS.append((started, time.time()))
    _STARTED_CPUS = float(num_cpus)
    print(f"[lmpipe] Ray started locally ({num_cpus} CPUs); full logs in "
          f"{context.address_info['session_dir']}/logs", flush=True)


def stop_ray_jobs() -> None:
    """End every Ray Train job this process started, now: disconnect from Ray (a local Ray this module started
    stops with it), so the jobs' controllers and workers, actors of this driver, go too, and the threads blocked
    in their `fit()` raise. For a flow timeout or Ctrl-C while jobs run in task threads, which Python cannot
    interrupt and the task runner would otherwise wait for."""
    import ray

    global _STARTED_CPUS, _STOPPED
    _STOPPED = True  # a task thread that had not reached `fit()` yet must not start a new Ray
    os.environ["RAY_ENABLE_AUTO_CONNECT"] = "0"  # nor its first `ray.put`
    if ray.is_initialized():
        print("[lmpipe] stopping the Ray Train jobs in flight", flush=True)
        ray.shutdown()
    _STARTED_CPUS = None


def train_worker_runtime_env(tracking_uri: str | None) -> dict[str, Any] | None:
    """`RunConfig.worker_runtime_env` for a Ray Train job: None when this process's Ray connection already
    carries the workers' env (ensure_ray made it), else the env, for a Ray someone else connected (prefect-ray,
    a notebook)."""
    import ray

    env = worker_env(tracking_uri)
    job_env = dict(ray.get_runtime_context().runtime_env or {}).get("env_vars") or {} if ray.is_initialized() else {}
    if all(job_env.get(k) == v for k, v in env.items()):
        return None
    return {"env_vars": env}


def alive_nodes() -> list[dict[str, float]]:
    """Each live node's resource totals ({"CPU": 2.0, "GPU": 1.0, ...}) of the Ray this process is connected to."""
    import ray

    return [{k: float(v) for k, v in n["Resources"].items()} for n in ray.nodes() if n.get("Alive")]


def _raise_if_unplaceable(request: RayRequest) -> None:
    problem = shortfall(request, alive_nodes(), _autoscaler_max())
    if problem:
        raise RayResourceError(problem)


def _autoscaler_max() -> dict[str, float] | None:
    """The cluster's maximum resources from its autoscaler config (None on a fixed cluster): the number Ray Train
    V2 itself checks requests against."""
    try:
        from ray._private.state import state

        found = state.get_max_resources_from_cluster_config()
    except Exception:  # noqa: BLE001 - private API; a cluster without it is judged by its live nodes
        return None
    return {k: float(v) for k, v in found.items()} if found else None


def _machine_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
