"""`lmpipe pipeline`: curate → tokenize + pretrain (tiny BERT, 2 Ray workers) → GLUE (bundled SST-2/RTE sample) →
promote, as one Prefect flow with subflows. Real components: the Prefect test server, local Ray, MLflow on SQLite.

Checked: every stage ran and the champion is the registered version; tags and the summary, data card and GLUE
artifacts on the run's flow runs; a failed stage fails the run and registers/promotes nothing, and the rerun skips
the finished stages; pretrain reading another corpus than curate writes is refused before any work; two runs of one
spec started together: one runs (continuing a partial run of the curate stage alone), the other stops at once
naming it, and one version is registered; a pipeline process killed (SIGKILL, whole group) during pretraining
completes on rerun without redoing curation or tokenization, resuming pretraining from its checkpoint."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from prefect.client.schemas.filters import (
    FlowRunFilter, FlowRunFilterId, FlowRunFilterParentFlowRunId, FlowRunFilterTags,
)

from flows.pipeline import pipeline
from tasks.pretrain.core import PreflightError
from tests.conftest import FIXTURES, REPO
from tests.flows.helpers import write_spec

pytestmark = pytest.mark.ray


def write_pipeline(root: Path, name: str, glue_dir: Path, *, max_steps: int = 12, checkpoint_every: int = 6) -> Path:
    """A pipeline spec and its three stage specs, every output under `root`."""
    write_spec(root / "curate.yaml", root / "curated")
    pretrain = {
        "name": name, "data": {"curated": str(root / "curated"), "tokens": str(root / "tokens")},
        "tokenizer": {"vocab_size": 1024, "lowercase": True}, "packing": {"seq_len": 32, "validation_fraction": 0.1},
        "model": {"kind": "bert", "preset": "tiny"},
        "train": {"max_steps": max_steps, "micro_batch_size": 4, "grad_accum": 1, "lr": 0.003, "min_lr": 0.0003,
                  "warmup_steps": 2, "eval_every": checkpoint_every, "eval_batches": 2,
                  "checkpoint_every": checkpoint_every},
        "scaling": {"num_workers": 2, "cpus_per_worker": 0.5, "max_failures": 0},
        "mlflow": {"experiment": f"{name}-exp", "registered_model": name},
    }
    glue = {"name": f"{name}-glue", "tasks": ["sst2", "rte"], "data": {"dir": str(glue_dir)},
            "defaults": {"lr": 1e-3, "epochs": 1, "batch_size": 16, "max_length": 32, "max_train_examples": 64,
                         "max_eval_examples": 32},
            "scaling": {"num_workers": 1, "cpus_per_worker": 1.0, "storage_path": str(root / "glue-runs"),
                        "max_failures": 0},
            "mlflow": {"experiment": f"{name}-exp"},
            # Plumbing, not quality: a 12-step tiny BERT on 32 dev rows cannot clear the floors (tests/flows/
            # test_glue_flow.py and tests/unit/test_glue_gate.py test them).
            "gate": {"margin": 0.0, "floor": False}}
    (root / "pretrain.yaml").write_text(yaml.safe_dump(pretrain))
    (root / "glue.yaml").write_text(yaml.safe_dump(glue))
    spec = {"name": name, "curate": str(root / "curate.yaml"), "pretrain": str(root / "pretrain.yaml"),
            "glue": str(root / "glue.yaml")}
    (root / "pipeline.yaml").write_text(yaml.safe_dump(spec))
    return root / "pipeline.yaml"


@pytest.fixture()
def mlflow_uri(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("LMPIPE_STATE_DIR", str(tmp_path / "state"))
    return uri


def test_full_pipeline_then_failed_stage_resumes(tmp_path, mlflow_uri):
    from prefect.client.orchestration import get_client

    glue_dir = tmp_path / "glue"
    shutil.copytree(FIXTURES / "glue_sample", glue_dir)
    spec = write_pipeline(tmp_path, "pipe-a", glue_dir)
    out = pipeline(str(spec))
    assert out["selected"] == ["curate", "pretrain", "glue", "promote"]
    assert set(out["timings"]) == {"curate", "pretrain", "glue", "promote"}
    assert out["stages"]["promote"]["promoted"] is True
    client = MlflowClient(mlflow_uri)
    champion = client.get_model_version_by_alias("pipe-a", "champion")
    assert str(champion.version) == str(out["stages"]["pretrain"]["version"])
    assert str(client.get_model_version_by_alias("pipe-a-glue-rte", "champion").version) == "1"

    with get_client(sync_client=True) as prefect:
        (top,) = prefect.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[f"spec:{out['fingerprint']}"])))
        assert {"pipeline:pipe-a", "model:pipe-a", f"version:{champion.version}"} <= set(top.tags)
        # This run's own artifacts: the summary on the pipeline's run, the data card and GLUE table on its subflows'
        children = prefect.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[top.id])))
        ids = [top.id, *(r.id for r in children)]
        artifacts = prefect.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)))
        assert {"pipeline-summary", "curate-data-card", "glue-table"} <= {a.key for a in artifacts}
        card = next(a for a in artifacts if a.key == "curate-data-card")
        assert "no data card" not in str(card.data)  # the card itself, not the placeholder

    # Second run of the same specs, with the RTE folder gone: the GLUE stage fails before training anything.
    shutil.move(str(glue_dir / "RTE"), str(tmp_path / "RTE-away"))
    with pytest.raises(Exception, match="RTE"):
        pipeline(str(spec))
    versions = client.search_model_versions("name = 'pipe-a'")
    assert len(versions) == 2  # the run pretrained and registered v2 as candidate...
    assert str(client.get_model_version_by_alias("pipe-a", "champion").version) == "1"  # ...but promoted nothing
    assert len(client.search_model_versions("name = 'pipe-a-glue-sst2'")) == 1  # and registered no GLUE model

    shutil.move(str(tmp_path / "RTE-away"), str(glue_dir / "RTE"))
    again = pipeline(str(spec))  # the rerun continues the failed run: curate and pretrain are skipped
    assert set(again["timings"]) == {"glue", "promote"}
    assert again["stages"]["pretrain"]["version"] == "2"
    assert len(client.search_model_versions("name = 'pipe-a'")) == 2  # pretrain did not run again


def test_pretrain_reading_another_corpus_is_refused_before_any_work(tmp_path, mlflow_uri):
    spec = write_pipeline(tmp_path, "pipe-m", FIXTURES / "glue_sample")
    pre = yaml.safe_load((tmp_path / "pretrain.yaml").read_text())
    pre["data"]["curated"] = str(tmp_path / "elsewhere")
    (tmp_path / "pretrain.yaml").write_text(yaml.safe_dump(pre))
    with pytest.raises(PreflightError) as refused:
        pipeline(str(spec))
    message = str(refused.value)
    for part in (str(tmp_path / "elsewhere"), str(tmp_path / "curated"), str(tmp_path / "pretrain.yaml"),
                 str(tmp_path / "curate.yaml"), f"Set data.curated to {tmp_path / 'curated'}"):
        assert part in message, message
    assert not (tmp_path / "curated").exists() and not (tmp_path / "tokens").exists()  # nothing ran
    assert not list((tmp_path / "state").rglob("run.json"))  # no run was started either


def test_two_runs_of_one_spec_started_together_one_runs_and_the_other_stops_naming_it(tmp_path, mlflow_uri):
    """Issue 16's test: two `lmpipe pipeline SPEC` started together. One runs; the other stops at once, naming
    the first's pid, host and Prefect flow run. The completed run registered exactly one version. Before them, a
    run of the curate stage alone left the run open (partial), and the full run continued it."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    spec = write_pipeline(tmp_path, "pipe-c", FIXTURES / "glue_sample")
    glue = yaml.safe_load((tmp_path / "glue.yaml").read_text())
    (tmp_path / "glue.yaml").write_text(yaml.safe_dump({**glue, "tasks": ["sst2"]}))  # one task: plumbing only

    part = pipeline(str(spec), stages=["curate"])
    assert (part["status"], part["remaining"]) == ("partial", ["pretrain", "glue", "promote"])
    (state,) = (tmp_path / "state" / "pipeline").glob("pipe-c-*/run.json")
    assert json.loads(state.read_text())["status"] == "partial"  # not complete: the next run continues it

    # Both on the session's Prefect server (a temporary server each would only add start-up time)
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "COLUMNS": "400"}  # no wrapped messages
    cmd = [str(Path(sys.executable).parent / "lmpipe"), "pipeline", str(spec)]
    logs = [tmp_path / f"run-{i}.log" for i in range(2)]  # files, not pipes: a full pipe would stall a run
    outs = [log.open("wb") for log in logs]
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
             for out in outs]
    try:
        deadline = time.time() + 600
        while time.time() < deadline and all(p.poll() is None for p in procs):
            time.sleep(0.5)
        first_done = next(p for p in procs if p.poll() is not None)
        other = next(p for p in procs if p is not first_done)
        assert other.poll() is None, "both ended: neither waited for nor was stopped by the other"
        loser_out = logs[procs.index(first_done)].read_text(encoding="utf-8", errors="replace")
        assert first_done.returncode == 2, loser_out[-3000:]  # the one that stopped at once, refused cleanly
        assert "Output locked" in loser_out, loser_out[-3000:]
        other.wait(timeout=600)
        winner_out = logs[procs.index(other)].read_text(encoding="utf-8", errors="replace")
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        for out in outs:
            out.close()
    assert other.returncode == 0, winner_out[-4000:]
    assert f"locked by pid {other.pid} on host {socket.gethostname()} since 20" in loser_out, loser_out[-3000:]
    flow_run_id = re.search(r"Prefect flow run ([0-9a-f-]{36})", loser_out)
    assert flow_run_id, loser_out[-3000:]
    with get_client(sync_client=True) as prefect:  # the named flow run is the winner's pipeline run
        named = prefect.read_flow_run(flow_run_id.group(1))
        assert "pipeline:pipe-c" in named.tags and named.state.is_completed()

    assert re.search(r"curate\s*│\s*skipped", winner_out), winner_out[-3000:]  # continued the partial run
    run = json.loads(state.read_text())
    assert (run["status"], run["attempts"]) == ("complete", 2), run
    client = MlflowClient(mlflow_uri)
    versions = client.search_model_versions("name = 'pipe-c'")
    assert [str(v.version) for v in versions] == ["1"]  # one completed run, one registered version
    assert str(client.get_model_version_by_alias("pipe-c", "champion").version) == "1"


@pytest.mark.slow  # 252 s on the 2-core CI box; pretraining resume stays in the default suite through
# tests/flows/test_pretrain_flow.py::test_interrupted_job_resumes_from_its_checkpoint and tests/faults
def test_killed_during_pretraining_resumes_without_redoing_curation(tmp_path, mlflow_uri):
    spec = write_pipeline(tmp_path, "pipe-k", FIXTURES / "glue_sample", max_steps=60, checkpoint_every=10)
    env = os.environ.copy()  # no PREFECT_API_URL here: the command starts its own temporary server, as a user's
    cmd = [str(Path(sys.executable).parent / "lmpipe"), "pipeline", str(spec)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    runs = tmp_path / "tokens" / "runs"
    deadline = time.time() + 400
    while time.time() < deadline and not any(runs.glob("*/checkpoint_*/train_state.json")):
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        time.sleep(1)
    assert any(runs.glob("*/checkpoint_*/train_state.json")), "pretraining never wrote a checkpoint"
    family = psutil.Process(proc.pid).children(recursive=True)  # Ray's daemons start sessions of their own
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: driver, Ray workers, Prefect's server
    proc.wait(timeout=60)
    for p in family:  # what escaped the group (raylet, GCS) dies too, as on a machine that lost power
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    shards = {p: p.stat().st_mtime_ns for p in (tmp_path / "tokens").rglob("*.parquet")}
    curated = {p: p.stat().st_mtime_ns for p in (tmp_path / "curated" / "data").glob("*.parquet")}
    assert shards and curated

    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert re.search(r"curate\s*│\s*skipped", done.stdout), done.stdout[-3000:]  # the stage table
    (state,) = (tmp_path / "state" / "pipeline").glob("pipe-k-*/run.json")
    run = json.loads(state.read_text())
    assert run["attempts"] == 2 and run["status"] == "complete"
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "tokens").rglob("*.parquet")} == shards  # not re-tokenized
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "curated" / "data").glob("*.parquet")} == curated
    client = MlflowClient(mlflow_uri)
    assert str(client.get_model_version_by_alias("pipe-k", "champion").version) == "1"
    assert run["stages"]["pretrain"]["output"]["final_step"] == 60
    resumed = run["stages"]["pretrain"]["output"]["resumed_from_step"]
    assert resumed is not None and 10 <= resumed < 60  # from a checkpoint of the killed run, not from step 0
    with pytest.raises(MlflowException):
        client.get_model_version("pipe-k", "2")  # one model, trained once across the kill
