"""Tracking URIs, experiments with absolute artifact roots, and the git commit tag."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from data_specs.pretrain import MLflowSpec
from tasks.registry.tracking import (
    default_tracking_uri,
    ensure_experiment,
    git_commit,
    repo_root,
    resolve_tracking_uri,
    sqlite_db_path,
)

REPO = Path(__file__).resolve().parents[2]


def test_default_uri_is_absolute_project_local_and_cwd_independent(tmp_path, monkeypatch):
    monkeypatch.delenv("LMPIPE_STATE_DIR", raising=False)  # tests/conftest.py sets it; the default is the checkout's
    uri = default_tracking_uri()
    assert uri == f"sqlite:///{REPO}/.lmpipe/mlflow/mlflow.db"
    assert uri.startswith("sqlite:////")
    assert (REPO / ".lmpipe" / "mlflow").is_dir()
    monkeypatch.chdir(tmp_path)
    assert default_tracking_uri() == uri
    # A process started elsewhere agrees (nothing cached from this one).
    out = subprocess.run(
        [sys.executable, "-c", "from tasks.registry.tracking import default_tracking_uri as d; print(d())"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == uri
    assert repo_root() == REPO


def test_resolve_precedence_env_then_spec_then_default(monkeypatch):
    spec = MLflowSpec(registered_model="m", tracking_uri="sqlite:////spec/mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri(spec) == "http://127.0.0.1:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert resolve_tracking_uri(spec) == "sqlite:////spec/mlflow.db"
    assert resolve_tracking_uri(MLflowSpec(registered_model="m")) == default_tracking_uri()


def test_sqlite_db_path():
    assert sqlite_db_path("sqlite:////a/b/mlflow.db") == Path("/a/b/mlflow.db")
    assert sqlite_db_path("sqlite:////a/b/mlflow.db?timeout=5") == Path("/a/b/mlflow.db")
    assert sqlite_db_path("sqlite:///rel.db") == Path("rel.db").resolve()
    assert sqlite_db_path("http://host:5000") is None


def test_ensure_experiment_puts_artifacts_next_to_the_db(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path}/db/mlflow.db"
    (tmp_path / "db").mkdir()
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    exp_id = ensure_experiment("lmpipe/pretrain test", uri)
    assert ensure_experiment("lmpipe/pretrain test", uri) == exp_id  # idempotent
    exp = MlflowClient(uri).get_experiment(exp_id)
    assert exp.artifact_location == (tmp_path / "db" / "artifacts" / "lmpipe_pretrain_test").as_uri()

    client = MlflowClient(uri)
    run = client.create_run(exp_id)
    client.log_text(run.info.run_id, "hello", "note.txt")
    assert not (cwd / "mlruns").exists()
    assert list((tmp_path / "db" / "artifacts").rglob("note.txt"))

    client.delete_experiment(exp_id)
    assert ensure_experiment("lmpipe/pretrain test", uri) == exp_id
    assert client.get_experiment(exp_id).lifecycle_stage == "active"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
    )


@pytest.mark.skipif(subprocess.run(["which", "git"], capture_output=True).returncode != 0, reason="no git")
def test_git_commit_clean_dirty_and_outside(tmp_path):
    repo = tmp_path / "r"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.txt").write_text("a")
    _git(repo, "add", "a.txt")
    _git(repo, "commit", "-q", "-m", "a")
    sha = git_commit(str(repo))
    assert sha is not None and len(sha) == 40
    (repo / "a.txt").write_text("b")
    assert git_commit(str(repo)) == f"{sha}-dirty"
    outside = tmp_path / "plain"
    outside.mkdir()
    assert git_commit(str(outside)) is None
