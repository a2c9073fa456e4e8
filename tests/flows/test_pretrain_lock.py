"""Runs never interleave (issue 16): while another process holds a pretrain job's folder, `pretrain` of the same
spec is refused at once, before tokenizing, naming the holder (pid, host, Prefect flow run); `tokenize` is refused
the same way while the token folder is held. A holder killed with SIGKILL frees both.

Real components: the Prefect test server, the bundled corpus curated once; no training runs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid

import pytest
import yaml

from data_specs import load_pretrain_spec
from flows.curate import curate
from flows.pretrain import _abs, _resolve_paths, pretrain, pretrain_fingerprint, tokenize
from tasks.common.lock import WAIT_ENV, OutputLocked
from tasks.pretrain.core import job_dir
from tests.conftest import REPO
from tests.flows.helpers import write_spec

HOLD = ("import sys, time\nimport prefect.runtime\nfrom tasks.common.lock import output_lock\n"
        "with output_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(300)\n")


def _holder(folder: str, flow_run_id: str) -> subprocess.Popen:
    """A process in the flow run `flow_run_id` (as a Prefect worker starts a deployment's) that holds `folder`."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PREFECT__FLOW_RUN_ID": flow_run_id}
    child = subprocess.Popen([sys.executable, "-c", HOLD, folder], cwd=REPO, env=env, stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def _kill(child: subprocess.Popen) -> None:
    child.send_signal(signal.SIGKILL)  # dies holding the lock
    child.wait(timeout=30)


@pytest.fixture()
def spec_path(tmp_path):
    curate(str(write_spec(tmp_path / "curate.yaml", tmp_path / "curated")))
    spec = {
        "name": "lock-bert", "data": {"curated": str(tmp_path / "curated"), "tokens": str(tmp_path / "tokens")},
        "tokenizer": {"vocab_size": 1024, "lowercase": True}, "packing": {"seq_len": 32, "validation_fraction": 0.1},
        "model": {"kind": "bert", "preset": "tiny"},
        "train": {"max_steps": 4, "warmup_steps": 1, "micro_batch_size": 4, "grad_accum": 1, "eval_every": 2,
                  "eval_batches": 1, "checkpoint_every": 2},
        "scaling": {"num_workers": 1, "cpus_per_worker": 0.5, "max_failures": 0},
        "mlflow": {"tracking_uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "lock-tests",
                   "registered_model": "lock-bert"},
    }
    path = tmp_path / "pretrain.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_a_held_pretrain_job_or_token_folder_is_refused_at_once_naming_its_holder(spec_path, tmp_path, monkeypatch):
    monkeypatch.delenv(WAIT_ENV, raising=False)
    spec = _resolve_paths(load_pretrain_spec(str(spec_path)))
    jobs = job_dir(_abs(f"{spec.data.tokens}/runs"), spec.name, pretrain_fingerprint(spec))
    flow_run_id = str(uuid.uuid4())

    holder = _holder(jobs, flow_run_id)  # e.g. the pretrain deployment, still training this job
    try:
        with pytest.raises(OutputLocked) as refused:
            pretrain(str(spec_path))
    finally:
        _kill(holder)
    message = str(refused.value)
    assert f"output {jobs} is locked by pid {holder.pid} on host {socket.gethostname()} since 20" in message
    assert f"Prefect flow run {flow_run_id}" in message and f"kill {holder.pid}" in message
    assert not (tmp_path / "tokens" / "manifest.json").exists()  # refused before tokenizing

    holder = _holder(str(tmp_path / "tokens"), flow_run_id)  # another run writing the token folder
    try:
        with pytest.raises(OutputLocked, match=f"locked by pid {holder.pid} .*Prefect flow run {flow_run_id}"):
            tokenize(str(spec_path))
    finally:
        _kill(holder)
    assert not (tmp_path / "tokens" / "manifest.json").exists()
    assert tokenize(str(spec_path))["splits"]["train"]["sequences"] > 0  # the killed holder blocks nothing
