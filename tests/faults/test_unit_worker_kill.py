"""Fault: one curate unit's worker process is SIGKILLed mid-unit (an OOM kill) while run.workers is 2.

Must survive: the run, the pool, and every other unit, including the one running beside it on the other
worker: they finish once and are not redone. Only the killed unit is retried (one Prefect retry), and its
retry log names the unit and the signal. Output must equal: the shards (sha256) of a fault-free run.
"""

from __future__ import annotations

import logging

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId

from flows.curate import curate
from tasks.units.task import process_unit_task
from tests.conftest import SAMPLE_CORPUS
from tests.flows.helpers import shard_digests, write_spec

BOOKS = [{"kind": "books", "paths": [str(SAMPLE_CORPUS / "books" / "*.txt")]}]
KILLED = "letters-from-the-north.txt"


@pytest.fixture(scope="module")
def fault_free_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("fault-free")
    curate(str(write_spec(root / "spec.yaml", root / "out", sources=BOOKS, run={"workers": 1})))
    return shard_digests(root / "out")


@pytest.fixture
def retry_log():
    """Messages of Prefect's task-run logger at INFO, where it reports a retry (the suite runs at WARNING)."""
    logger, messages = logging.getLogger("prefect.task_runs"), []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: messages.append(record.getMessage())
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield messages
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def _unit_attempts(flow_run_id) -> dict[str, int]:
    """{task run name: attempts} for the unit tasks of the curate run's `curate-units` subflow."""
    with get_client(sync_client=True) as client:
        subflows = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id]))
        )
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[f.id for f in subflows]))
        )
        return {r.name: r.run_count for r in runs if r.name.startswith("unit-")}


def test_a_killed_unit_worker_costs_one_retry_not_the_run(fault_free_shards, retry_log, tmp_path, monkeypatch):
    monkeypatch.setenv("LMPIPE_FAULTS", f"curate.unit_worker@{KILLED}=kill")
    monkeypatch.setenv("LMPIPE_FAULTS_DIR", str(tmp_path / "faults-fired"))
    monkeypatch.setattr(process_unit_task, "retry_delay_seconds", [0])  # production waits 5 s first
    spec = write_spec(tmp_path / "spec.yaml", tmp_path / "out", sources=BOOKS, run={"workers": 2, "retries": 1})

    state = curate(str(spec), return_state=True)

    assert state.is_completed(), state.message
    manifest = state.result()
    assert manifest["counts"]["failed_inputs"] == 0
    assert shard_digests(tmp_path / "out") == fault_free_shards
    assert len(list((tmp_path / "faults-fired").iterdir())) == 1  # the kill did fire
    attempts = _unit_attempts(state.state_details.flow_run_id)
    assert attempts == {name: 2 if name == f"unit-{KILLED}" else 1 for name in attempts} and len(attempts) == 3
    retries = [m for m in retry_log if "Retry 1/1" in m]
    assert len(retries) == 1 and f"unit {KILLED}: its worker process died (SIGKILL, exit -9)" in retries[0], retry_log
