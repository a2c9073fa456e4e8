"""Pick the Prefect task runner for CPU-heavy maps (local threads + processes, or a Ray cluster) and the
engine of global dedup (this node, or a Ray Data job).

`LMPIPE_TASK_RUNNER=ray` (or `run.task_runner: ray` in the spec) runs each unit as a Ray task via
prefect-ray. The cluster is `RAY_ADDRESS` if set, else `run.ray_address`, else a local Ray started
with `run.workers` CPUs. Global near-dedup follows the runner (`run.dedup_engine: auto`) unless
`LMPIPE_DEDUP_ENGINE` or the spec says otherwise; `ray_session` connects to the same cluster.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from data_specs import CurateSpec, RunSpec


def chosen_runner(run: RunSpec) -> str:
    """'threads' or 'ray': the environment variable wins over the spec."""
    choice = os.environ.get("LMPIPE_TASK_RUNNER", run.task_runner).strip().lower()
    if choice not in ("threads", "ray"):
        raise ValueError(f"LMPIPE_TASK_RUNNER={choice!r}: use 'threads' or 'ray'")
    return choice


def chosen_dedup_engine(run: RunSpec) -> str:
    """'local' or 'ray' for global near-dedup: LMPIPE_DEDUP_ENGINE, else the spec; 'auto' follows the runner."""
    choice = os.environ.get("LMPIPE_DEDUP_ENGINE", run.dedup_engine).strip().lower()
    if choice not in ("auto", "local", "ray"):
        raise ValueError(f"LMPIPE_DEDUP_ENGINE={choice!r}: use 'auto', 'local' or 'ray'")
    if choice == "auto":
        return "ray" if chosen_runner(run) == "ray" else "local"
    return choice


@contextmanager
def ray_session(run: RunSpec) -> Iterator[None]:
    """Ray for a Ray Data job: the connection this process already has (prefect-ray's, during a Ray-run
    flow), else `RAY_ADDRESS` / `run.ray_address`, else a local Ray with `run.workers` CPUs, shut down after."""
    import ray
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = sys.stderr.isatty()
    if ray.is_initialized():
        yield
        return
    address = os.environ.get("RAY_ADDRESS") or run.ray_address
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=run.workers, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def make_task_runner(run: RunSpec) -> TaskRunner:
    """A task runner for the unit map, bounded to `run.workers` at a time."""
    if chosen_runner(run) == "ray":
        from prefect_ray import RayTaskRunner

        address = os.environ.get("RAY_ADDRESS") or run.ray_address
        init_kwargs: dict = {} if address else {"num_cpus": run.workers, "include_dashboard": False}
        if api_url := _current_api_url():
            # Point Ray's workers at this run's Prefect API (also the temporary local server), so their task
            # runs land in the same flow run instead of each starting a server of its own (on a cluster that
            # only works when the API is reachable from its nodes: set PREFECT_API_URL to a shared server).
            init_kwargs["runtime_env"] = {"env_vars": {"PREFECT_API_URL": api_url}}
        return RayTaskRunner(address=address, init_kwargs=init_kwargs) if address else RayTaskRunner(
            init_kwargs=init_kwargs)
    return ThreadPoolTaskRunner(max_workers=run.workers)


def _current_api_url() -> str | None:
    """The API URL this process talks to (the temporary server's when PREFECT_API_URL is unset)."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            return str(client.api_url).rstrip("/")
    except Exception:  # noqa: BLE001 - no API at all: Ray workers fall back to their own
        return None


def apply_run_overrides(spec: CurateSpec) -> CurateSpec:
    """Apply LMPIPE_WORKERS to `run.workers` (execution only: the fingerprint does not change)."""
    workers = os.environ.get("LMPIPE_WORKERS")
    if not workers:
        return spec
    if not workers.isdigit() or int(workers) < 1:
        raise ValueError(f"LMPIPE_WORKERS={workers!r}: use a positive integer")
    return spec.model_copy(update={"run": spec.run.model_copy(update={"workers": int(workers)})})
