"""One state home and no leaks: `lmpipe pipeline` with LMPIPE_STATE_DIR and an empty TMPDIR.

The pipeline of tests/flows/test_pipeline_flow.py (curate -> tiny BERT, 2 Ray workers -> GLUE SST-2 + RTE
sample -> promote) runs as a user runs it, `.venv/bin/lmpipe pipeline SPEC` in a subprocess, against the session's
Prefect test server, with LMPIPE_STATE_DIR set, TMPDIR an empty folder and no MLFLOW_TRACKING_URI (so the
project-default MLflow store is used). Checked:
- nothing under the checkout's `.lmpipe/` is created or changed;
- the MLflow store, GLUE jobs and pipeline state are under LMPIPE_STATE_DIR;
- TMPDIR is empty once the command has exited: no tokenizer folders, no model downloads, nothing else either.
  What "nothing" leaves out: Ray's session folder, which Ray puts under $RAY_TMPDIR (set here to a short folder of
  its own, as Ray's socket paths must stay under 107 bytes; Ray keeps it after exit by design, for its logs);
  torch's inductor cache `torchinductor_<user>` (a cache reused across runs, not a per-run copy); and the
  Prefect server, which is the test session's. Everything else that the command and the libraries it uses
  write to TMPDIR must be gone, lmpipe's own files first of all.
- no `model-*` download is left in the GLUE run storage.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from tests.conftest import FIXTURES, REPO
from tests.flows.test_pipeline_flow import write_pipeline

pytestmark = pytest.mark.ray


# 195-290 s on the shared 2-core box (a whole pipeline in a subprocess); tests/unit/test_state.py checks every state path
# against LMPIPE_STATE_DIR in the default suite, tests/unit/test_serving.py and test_retention.py the rest.


def _snapshot(folder: Path) -> dict[str, int]:
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


@pytest.mark.slow
def test_pipeline_writes_only_under_the_state_dir_and_leaves_tmpdir_empty(tmp_path):
    from prefect.settings import PREFECT_API_URL

    state, tmpdir = tmp_path / "state", tmp_path / "tmp"
    tmpdir.mkdir()
    ray_tmp = Path(tempfile.mkdtemp(prefix="lmr-", dir="/tmp"))  # short: Ray's socket paths
    glue_dir = tmp_path / "glue"
    shutil.copytree(FIXTURES / "glue_sample", glue_dir)
    spec = write_pipeline(tmp_path, "state-home", glue_dir)
    glue_yaml = tmp_path / "glue.yaml"  # GLUE storage left to the default: <state>/glue/runs
    glue = yaml.safe_load(glue_yaml.read_text())
    del glue["scaling"]["storage_path"]
    glue_yaml.write_text(yaml.safe_dump(glue))
    checkout_state = REPO / ".lmpipe"
    before = _snapshot(checkout_state)

    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env.update({"LMPIPE_STATE_DIR": str(state), "TMPDIR": str(tmpdir), "RAY_TMPDIR": str(ray_tmp),
                "PREFECT_API_URL": str(PREFECT_API_URL.value()), "LMPIPE_USE_SERVICES": "0",
                "PYTHONPATH": str(REPO)})
    try:
        done = subprocess.run([str(Path(sys.executable).parent / "lmpipe"), "pipeline", str(spec)], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)

    assert _snapshot(checkout_state) == before, "the run wrote under the checkout's .lmpipe/"
    # torch's inductor cache (`torchinductor_<user>`, keyed by graph hashes and reused by the next run, like
    # ~/.cache) is the one thing a library keeps in TMPDIR on purpose; everything else must be gone.
    left = sorted(os.listdir(tmpdir))
    assert [n for n in left if not n.startswith("torchinductor_")] == [], f"left in TMPDIR: {left}"
    db = state / "mlflow" / "mlflow.db"
    assert db.is_file(), sorted(os.listdir(state))
    client = MlflowClient(f"sqlite:///{db}")
    champion = client.get_model_version_by_alias("state-home", "champion")
    assert champion.tags["lmpipe.source_dir"].startswith(str(tmp_path / "tokens" / "runs"))
    assert any((state / "glue" / "runs" / "jobs").iterdir()), "GLUE jobs live under the state dir"
    assert not list((state / "glue" / "runs").glob("model-*")), "the registry download outlived the flow"
    assert list((state / "pipeline").glob("state-home-*/run.json"))
    task_model = client.get_model_version_by_alias("state-home-glue-sst2", "champion")
    assert task_model.tags["lmpipe.source_dir"].startswith(str(state / "glue" / "runs"))
