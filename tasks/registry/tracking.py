"""Where MLflow tracks: an absolute, project-local SQLite store, experiments with absolute artifact roots.

MLflow 3.17 defaults to `sqlite:///mlflow.db` relative to the current directory, and a client writing to a
SQLite store puts artifacts in `./mlruns` of the current directory (facts §0.6, §C1). Both depend on where
a process happens to start, so every URI and artifact root here is absolute:

    <state>/mlflow/mlflow.db                  tracking + registry (sqlite:////<state>/mlflow/mlflow.db)
    <state>/mlflow/artifacts/<experiment>/    artifact root of each experiment created here

where <state> is lmpipe's state root (tasks.common.state): $LMPIPE_STATE_DIR, else <repo>/.lmpipe.

Precedence of the tracking URI: MLFLOW_TRACKING_URI > MLflowSpec.tracking_uri > the project default.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

from data_specs.pretrain import MLflowSpec

_SQLITE = "sqlite:///"


def repo_root() -> Path:
    """The folder holding pyproject.toml above this file (an editable or source checkout).

    A non-editable install has no pyproject.toml above it: fall back to ~/.lmpipe's parent (the home
    folder), which is still absolute and independent of the current directory.
    """
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    return Path.home()


def default_tracking_uri() -> str:
    """sqlite:////<state root>/mlflow/mlflow.db ($LMPIPE_STATE_DIR, else <repo>/.lmpipe); creates the folder.
    Never relative to the CWD."""
    from tasks.common.state import state_path

    folder = state_path("mlflow")
    folder.mkdir(parents=True, exist_ok=True)
    # An absolute POSIX path starts with "/", so this yields the four slashes MLflow needs.
    return _SQLITE + str(folder / "mlflow.db")


def resolve_tracking_uri(spec: MLflowSpec) -> str:
    """MLFLOW_TRACKING_URI (env) > spec.tracking_uri > default_tracking_uri()."""
    return os.environ.get("MLFLOW_TRACKING_URI") or spec.tracking_uri or default_tracking_uri()


def sqlite_db_path(tracking_uri: str) -> Path | None:
    """The database file of a `sqlite:///` URI (absolute or not), else None."""
    if not tracking_uri.startswith(_SQLITE):
        return None
    path = unquote(tracking_uri[len(_SQLITE) :].split("?", 1)[0])  # "sqlite:////a/b.db" -> "/a/b.db"
    # "sqlite:///mlflow.db" is relative to the CWD: resolve it now, once.
    return Path(path) if path.startswith("/") else Path(path).resolve()


def _safe_folder_name(name: str) -> str:
    """Experiment names may hold '/' or spaces; artifact folders should not."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "experiment"


def ensure_experiment(name: str, tracking_uri: str) -> str:
    """Return the id of experiment `name`, creating it if needed.

    For SQLite stores the artifact root is `<db dir>/artifacts/<name>` (absolute), so artifacts never land
    in ./mlruns of the current directory. For a tracking server the server's artifact root is used. An
    experiment that already exists keeps its artifact root (it is fixed at creation in MLflow).
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking_uri)
    existing = client.get_experiment_by_name(name)
    if existing is not None:
        if existing.lifecycle_stage == "deleted":  # soft-deleted: runs could not be created in it
            client.restore_experiment(existing.experiment_id)
        return existing.experiment_id

    artifact_location = None
    db = sqlite_db_path(tracking_uri)
    if db is not None:
        folder = db.parent / "artifacts" / _safe_folder_name(name)
        folder.mkdir(parents=True, exist_ok=True)
        artifact_location = folder.as_uri()
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException:
        # Another process created it between our lookup and create: use theirs.
        existing = client.get_experiment_by_name(name)
        if existing is None:
            raise
        return existing.experiment_id


def git_commit(repo: str | None = None) -> str | None:
    """HEAD of `repo` (default: this project), with "-dirty" if tracked or untracked-unignored files changed.

    None when git is missing or the folder is not inside a work tree.
    """
    cwd = str(repo or repo_root())

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", cwd, *args], capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    if not sha:
        return None
    status = git("status", "--porcelain")
    return f"{sha}-dirty" if status else sha
