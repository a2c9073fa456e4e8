"""Runs never interleave: a GLUE fine-tuning job's folder is locked while it trains (as curate locks its output,
and pretrain its job folder); a second run fails at once naming the holder (pid, host, start, Prefect flow run),
or waits a bounded time; a holder killed with SIGKILL leaves nothing that blocks the next run.

The holder is a real second process; its Prefect flow run id comes the way a Prefect worker hands it to a
deployment's process (`PREFECT__FLOW_RUN_ID`, read by `prefect.runtime.flow_run.id`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import pytest

from data_specs.glue import FinetuneSpec
from tasks.common.lock import WAIT_ENV, OutputLocked, describe_holder, output_lock
from tasks.glue import job
from tests.conftest import REPO

HOLD = ("import sys, time\nimport prefect.runtime\nfrom tasks.common.lock import output_lock\n"
        "with output_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(float(sys.argv[2]))\n")


def _holder(folder: str, seconds: float = 120, flow_run_id: str | None = None) -> subprocess.Popen:
    """A process that takes `folder`'s lock (inside the flow run `flow_run_id`) and keeps it `seconds`."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if flow_run_id:
        env["PREFECT__FLOW_RUN_ID"] = flow_run_id
    child = subprocess.Popen([sys.executable, "-c", HOLD, folder, str(seconds)], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


class _Outcome:  # what run_finetuning returns, as far as run_seed reads it
    def __init__(self, model_dir: str):
        self.model_dir, self.final_step, self.resumed_from_step = model_dir, 3, None
        self.predictions, self.scores, self.metrics = {"validation": [1, 0]}, {}, {"train_loss": 0.5}


def _seed(tmp_path, calls: list, **kwargs) -> job.SeedOutcome:
    def train(run_name: str) -> _Outcome:
        calls.append(run_name)
        model = tmp_path / run_name / "final_model"
        model.mkdir(parents=True, exist_ok=True)
        return _Outcome(str(model))

    return job.run_seed(task_name="rte", seed=1, hp=FinetuneSpec(), job_fp="fp1", eval_fp="e1",
                        jobs_root=str(tmp_path / "jobs"), train_fn=train,
                        predict_fn=lambda d: ({"validation": [0, 0]}, {}), **kwargs)


def test_a_held_glue_job_fails_fast_naming_its_holder_and_a_killed_holder_is_taken_over(tmp_path, monkeypatch):
    monkeypatch.delenv(WAIT_ENV, raising=False)
    flow_run_id = str(uuid.uuid4())
    holder = _holder(str(tmp_path / "jobs" / "fp1"), flow_run_id=flow_run_id)
    calls: list = []
    try:
        t0 = time.monotonic()
        with pytest.raises(OutputLocked) as refused:
            _seed(tmp_path, calls)
        assert time.monotonic() - t0 < 5  # at once, not after a wait
        message = str(refused.value)
        assert f"locked by pid {holder.pid} on host {socket.gethostname()} since 20" in message
        assert f"Prefect flow run {flow_run_id}" in message
        assert f"kill {holder.pid}" in message and f"prefect flow-run cancel {flow_run_id}" in message
        assert WAIT_ENV in message  # and how to wait instead
        assert refused.value.holder["flow_run_id"] == flow_run_id
        assert calls == [] and not (tmp_path / "jobs" / "fp1" / "LATEST.json").exists()  # nothing touched
    finally:
        holder.send_signal(signal.SIGKILL)  # dies holding the lock, as a machine losing power
        holder.wait(timeout=30)
    done = _seed(tmp_path, calls)  # the kernel dropped the dead holder's lock: the job trains
    assert calls == [done.run_name] and not done.reused
    again = _seed(tmp_path, calls)
    assert again.reused and len(calls) == 1


def test_a_finished_glue_job_is_reused_while_another_run_holds_its_lock(tmp_path):
    calls: list = []
    first = _seed(tmp_path, calls)
    holder = _holder(str(tmp_path / "jobs" / "fp1"))
    try:
        again = _seed(tmp_path, calls)  # reusing only reads: no lock needed, no refusal
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert again.reused and again.run_name == first.run_name and len(calls) == 1


def test_a_second_run_waits_for_the_holder_when_asked(tmp_path, monkeypatch):
    holder = _holder(str(tmp_path / "jobs" / "fp1"), seconds=2)
    calls: list = []
    try:
        monkeypatch.setenv(WAIT_ENV, "60")
        t0 = time.monotonic()
        done = _seed(tmp_path, calls)  # waits for the holder to let go, then trains
        waited = time.monotonic() - t0
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert calls == [done.run_name] and 0.5 < waited < 30


def test_a_bounded_wait_ends_with_the_holder_named(tmp_path):
    out = str(tmp_path / "out")
    with output_lock(out) as owner:
        t0 = time.monotonic()
        with pytest.raises(OutputLocked, match=r"\(waited 1\.5 s\)") as refused:
            with output_lock(out, wait_s=1.5):
                pass
        assert 1.4 < time.monotonic() - t0 < 10
        assert f"pid {owner['pid']}" in str(refused.value)


def test_the_wait_variable_is_checked(monkeypatch, tmp_path):
    monkeypatch.setenv(WAIT_ENV, "soon")
    with pytest.raises(ValueError, match=WAIT_ENV), output_lock(str(tmp_path / "out")):
        pass


def test_holder_description_names_the_flow_run_or_leaves_it_out():
    base = {"pid": 7, "host": "h", "since": "2026-12-04T02:00:00Z", "command": "lmpipe pipeline p.yaml"}
    assert describe_holder({**base, "flow_run_id": "abc"}) == \
        "pid 7 on host h since 2026-12-04T02:00:00Z (lmpipe pipeline p.yaml; Prefect flow run abc)"
    assert describe_holder({**base, "flow_run_id": None}) == \
        "pid 7 on host h since 2026-12-04T02:00:00Z (lmpipe pipeline p.yaml)"


def test_outside_a_flow_run_the_record_has_no_flow_run(tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT__FLOW_RUN_ID", raising=False)
    with output_lock(str(tmp_path / "out")) as owner:
        assert owner["flow_run_id"] is None
