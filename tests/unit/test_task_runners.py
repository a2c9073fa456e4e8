"""make_task_runner: Ray workers always talk to this run's Prefect API, on a local Ray or a cluster."""

from __future__ import annotations

import pytest

from data_specs.curate import RunSpec
from flows import runners


@pytest.mark.parametrize("address", [None, "127.0.0.1:6379"])
def test_ray_workers_get_the_runs_prefect_api(monkeypatch, address):
    """Before: with RAY_ADDRESS the runner passed no PREFECT_API_URL, so every worker on a `ray start` head
    started a temporary Prefect server of its own (and timed out under load)."""
    monkeypatch.setenv("LMPIPE_TASK_RUNNER", "ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    if address:
        monkeypatch.setenv("RAY_ADDRESS", address)
    monkeypatch.setattr(runners, "_current_api_url", lambda: "http://127.0.0.1:4321/api")
    runner = runners.make_task_runner(RunSpec(workers=2))
    assert runner.address == address
    assert runner.init_kwargs["runtime_env"] == {"env_vars": {"PREFECT_API_URL": "http://127.0.0.1:4321/api"}}
    assert ("num_cpus" in runner.init_kwargs) is (address is None)  # a cluster's size is the cluster's
