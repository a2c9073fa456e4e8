"""The same flow with its units on a real local Ray cluster (prefect-ray) gives the same shards, and the units
really ran as Ray tasks in Ray worker processes (a runner that fell back to threads would give the same shards)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flows.curate import curate
from tests.flows.helpers import shard_digests, write_spec

pytestmark = [pytest.mark.ray]


UNIT_TASK = ":task_name:process_unit_task"  # what a Ray worker writes to its log as it starts a task of that name


def _unit_task_starts(logs: list[Path]) -> dict[int, int]:
    """pid of each Ray worker (the last part of `worker-<id>-<job>-<pid>.out`) -> unit tasks it started."""
    starts: dict[int, int] = {}
    for log in (f for folder in logs for f in folder.glob("worker-*.out")):
        count = log.read_text(errors="replace").count(UNIT_TASK)
        if count:
            pid = int(re.search(r"-(\d+)\.out$", log.name).group(1))
            starts[pid] = starts.get(pid, 0) + count
    return starts


def test_ray_runner_matches_thread_runner(tmp_path, monkeypatch):
    import ray

    threads = write_spec(tmp_path / "threads.yaml", tmp_path / "threads", shards={"target_mb": 0.03})
    on_ray = write_spec(tmp_path / "ray.yaml", tmp_path / "ray", shards={"target_mb": 0.03})
    expected = curate(str(threads))
    monkeypatch.setenv("LMPIPE_TASK_RUNNER", "ray")
    if ray.is_initialized():  # an earlier test's Ray, which the runner reuses: its logs, minus what ran before
        logs = [Path(ray._private.worker._global_node.get_logs_dir_path())]
        ray_tmp = None
    else:  # the Ray the runner starts writes its session here (short: Ray's socket paths must stay < 108 bytes)
        ray_tmp = tempfile.mkdtemp(prefix="lmr", dir="/tmp")
        monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    before = _unit_task_starts(logs) if ray_tmp is None else {}
    try:
        got = curate(str(on_ray))
        if ray_tmp is not None:  # the sessions started by this process (their names end in our pid): the
            # runner's for the units, then the dedup engine's
            logs = [session / "logs" for session in Path(ray_tmp, "ray").glob(f"session_*_{os.getpid()}")]
        starts = {pid: n - before.get(pid, 0) for pid, n in _unit_task_starts(logs).items()}
    finally:
        if ray_tmp is not None:
            shutil.rmtree(ray_tmp, ignore_errors=True)
    assert got["counts"] == expected["counts"]
    assert shard_digests(tmp_path / "ray") == shard_digests(tmp_path / "threads")
    # Every unit ran as a Ray task, in Ray worker processes, none in this driver
    assert sum(starts.values()) >= len(got["inputs"]) > 0, starts
    assert os.getpid() not in starts


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
