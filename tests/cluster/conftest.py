"""One local Ray for the whole session (start-up costs seconds), shared by every Ray test in tests/cluster."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def ray_local():
    """2 logical CPUs (this box's cores); training workers take 0.5 CPU each."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
                                           "RAY_USAGE_STATS_ENABLED": "0"}})
    yield ray
    ray.shutdown()
