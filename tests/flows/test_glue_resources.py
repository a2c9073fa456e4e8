"""`lmpipe glue` on a machine without a GPU, tried as the README's command: the default spec (`use_gpu: true`)
used to wait for ever for a GPU worker Ray Train could never place. Now it exits 2 at once, naming the spec field
and the `--cpu` fallback; with `--cpu` the same spec trains and scores on CPUs."""

from __future__ import annotations

import time

import pytest
import torch
import yaml
from typer.testing import CliRunner

from flows.cli import app
from tests.flows.test_glue_flow import write_glue_dir
from tests.unit._registry_helpers import tiny_bert

pytestmark = [pytest.mark.ray,
              pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without GPU")]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("glue-resources")
    spec = yaml.safe_load(open("data_specs/glue/default.yaml"))  # use_gpu: true, as shipped
    assert spec["scaling"]["use_gpu"] is True
    spec["tasks"] = ["rte"]
    spec["defaults"] = {"lr": 1e-3, "epochs": 1, "batch_size": 16, "max_length": 16}
    spec["scaling"]["storage_path"] = str(root / "runs")
    spec["mlflow"] = {"tracking_uri": f"sqlite:///{root}/mlflow.db"}
    (root / "glue.yaml").write_text(yaml.safe_dump(spec))
    return {"root": root, "model": str(tiny_bert(root / "tiny-bert")), "glue_dir": str(write_glue_dir(root / "glue")),
            "spec": str(root / "glue.yaml")}


def test_the_default_spec_without_a_gpu_exits_at_once_with_the_fix(setup, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{setup['root']}/refused.db")
    monkeypatch.setenv("LMPIPE_STATE_DIR", str(setup["root"] / "state"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    started = time.monotonic()
    result = CliRunner().invoke(app, ["glue", setup["model"], "--tasks", "rte", "--data-dir", setup["glue_dir"]])
    took = time.monotonic() - started
    assert result.exit_code == 2, result.output + repr(result.exception)
    text = " ".join(result.output.split())
    assert "GPU" in text and "scaling.use_gpu" in text and "--cpu" in text, text
    assert took < 120, f"refused after {took:.0f} s"  # Ray Train retried every 60 s, without end, before
    assert not list((setup["root"] / "state").rglob("model-*"))  # refused before the model was even copied


def test_cpu_runs_the_gpu_spec_on_cpus(setup, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{setup['root']}/mlflow.db")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    result = CliRunner().invoke(app, ["glue", setup["model"], "--tasks", "rte", "--data-dir", setup["glue_dir"],
                                      "--spec", setup["spec"], "--cpu"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "GLUE score" in result.output
