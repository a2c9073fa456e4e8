"""The same flow with its units on a real local Ray cluster (prefect-ray) gives the same shards."""

from __future__ import annotations

import pytest

from flows.curate import curate
from tests.flows.helpers import shard_digests, write_spec

pytestmark = [pytest.mark.ray]


def test_ray_runner_matches_thread_runner(tmp_path, monkeypatch):
    threads = write_spec(tmp_path / "threads.yaml", tmp_path / "threads", shards={"target_mb": 0.03})
    on_ray = write_spec(tmp_path / "ray.yaml", tmp_path / "ray", shards={"target_mb": 0.03})
    expected = curate(str(threads))
    monkeypatch.setenv("LMPIPE_TASK_RUNNER", "ray")
    got = curate(str(on_ray))
    assert got["counts"] == expected["counts"]
    assert shard_digests(tmp_path / "ray") == shard_digests(tmp_path / "threads")
