"""`lmpipe validate` on every kind of spec, and the run summary's hint naming the servers that really run.
In-process through the real Typer app; seconds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from flows.cli import app, spec_kind

REPO = Path(__file__).resolve().parents[2]
SPECS = REPO / "data_specs"


def _validate(*args: str):
    return CliRunner().invoke(app, ["validate", *args])


@pytest.mark.parametrize("path,kind,words", [
    ("curate/sample.yaml", "curate", "valid; fingerprint"),
    ("pretrain/sample_bert.yaml", "pretrain", "valid pretrain spec"),
    ("glue/sample.yaml", "glue", "valid GLUE spec; tasks sst2, rte"),
    ("glue/default.yaml", "glue", "valid GLUE spec"),
    ("pipeline/sample.yaml", "pipeline", "valid pipeline spec"),
])
def test_validate_accepts_every_kind_of_spec(path, kind, words):
    assert spec_kind(str(SPECS / path)) == kind
    result = _validate(str(SPECS / path))
    assert result.exit_code == 0, result.output
    assert words in " ".join(result.output.split())


def test_validate_a_pipeline_checks_its_stage_specs(tmp_path: Path):
    good = yaml.safe_load((SPECS / "pipeline" / "sample.yaml").read_text())
    base = SPECS / "pipeline"
    stages = {k: str((base / good[k]).resolve()) if isinstance(good[k], str) and (base / good[k]).is_file()
              else good[k] for k in ("curate", "pretrain", "glue")}
    bad_glue = tmp_path / "glue.yaml"
    bad_glue.write_text(yaml.safe_dump({"name": "g", "tasks": ["sst2"], "defaults": {"epochs": "many"}}))
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(yaml.safe_dump({"name": "p", **stages, "glue": str(bad_glue)}))
    result = _validate(str(spec))
    assert result.exit_code == 2, result.output
    assert "defaults.epochs" in result.output

    spec.write_text(yaml.safe_dump({"name": "p", **stages, "glue": "missing.yaml"}))
    result = _validate(str(spec))
    assert result.exit_code == 2 and "glue spec 'missing.yaml' not found" in " ".join(result.output.split())

    embedded = {**stages, "glue": {"name": "g", "tasks": ["rte"]}}  # embedded mappings validate too
    spec.write_text(yaml.safe_dump({"name": "p", **embedded}))
    result = _validate(str(spec))
    assert result.exit_code == 0, result.output


def test_validate_a_glue_spec_reports_its_errors(tmp_path: Path):
    spec = tmp_path / "glue.yaml"
    spec.write_text(yaml.safe_dump({"name": "g", "tasks": ["sst2", "sst2"]}))
    result = _validate(str(spec))
    assert result.exit_code == 2 and "repeats a task" in result.output
    assert _validate(str(spec), "--kind", "nope").exit_code == 2


def test_the_summary_hint_names_the_ports_the_services_use(tmp_path: Path, monkeypatch):
    """A run without PREFECT_API_URL while `lmpipe services` runs on other ports: the hint names those ports,
    not :4200 / :5000."""
    from flows.cli import _where_to_look

    state = tmp_path / "services"
    state.mkdir()
    for name, port in (("prefect", 4311), ("mlflow", 5311)):
        (state / f"{name}.pid").write_text(f"{os.getpid()}\n")  # a live process group: this test's own
        (state / f"{name}.json").write_text(json.dumps({"port": port, "ui_url": f"http://127.0.0.1:{port}"}))
    monkeypatch.setenv("LMPIPE_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setattr("tasks.services.processes.is_alive", lambda pid: pid == os.getpid())
    printed: list[str] = []
    monkeypatch.setattr("flows.cli.console.print", lambda *a, **k: printed.append(" ".join(map(str, a))))
    _where_to_look({"name": "p", "fingerprint": "f", "stages": {}, "timings": {}, "tracking_uri": "sqlite:////x.db",
                    "champion_uri": "models:/m@champion", "model_kind": "bert"})
    text = "\n".join(printed)
    assert "http://127.0.0.1:4311" in text and "PREFECT_API_URL=http://127.0.0.1:4311/api" in text
    assert "http://127.0.0.1:5311" in text and f"source {state / 'env.sh'}" in text
    assert "4200" not in text and "--port 5000" not in text
