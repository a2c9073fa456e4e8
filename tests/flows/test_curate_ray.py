"""The same flow with its units on a real local Ray cluster (prefect-ray) gives the same shards."""

from __future__ import annotations

import pyarrow.parquet as pq
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


@pytest.mark.slow  # the Ray engine's dozen Ray Data jobs: 1-3 min on 2 cores; run with -m slow; the Ray-runner test runs the same engine
def test_ray_data_dedup_on_thread_runner_matches_local_dedup(tmp_path, monkeypatch):
    """LMPIPE_DEDUP_ENGINE=ray with the thread runner: a local Ray is started for the dedup job alone and shut
    down after it (or, when this process is already connected to a Ray, that one is used and left running)."""
    import ray

    connected = ray.is_initialized()  # true when an earlier test's Ray is still up in this process

    local = write_spec(tmp_path / "local.yaml", tmp_path / "local", shards={"target_mb": 0.03})
    on_ray = write_spec(tmp_path / "ray.yaml", tmp_path / "ray", shards={"target_mb": 0.03})
    expected = curate(str(local))
    monkeypatch.setenv("LMPIPE_DEDUP_ENGINE", "ray")
    got = curate(str(on_ray))
    assert (expected["duplicates"]["engine"], got["duplicates"]["engine"]) == ("local", "ray")
    assert ray.is_initialized() == connected
    assert got["duplicates"]["dedup/near"] > 0
    for key in ("dedup/exact", "dedup/near", "clusters", "candidate_pairs", "verified_pairs", "exact_checked_pairs"):
        assert got["duplicates"][key] == expected["duplicates"][key], key
    assert shard_digests(tmp_path / "ray") == shard_digests(tmp_path / "local")
    removed = [pq.read_table(str(p / "_work" / "dedup" / "removed.parquet")) for p in (tmp_path / "local", tmp_path / "ray")]
    assert removed[0].equals(removed[1])
