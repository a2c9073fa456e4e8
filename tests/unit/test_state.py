"""One state home (tasks/common/state.py): every default state path follows LMPIPE_STATE_DIR, else the checkout.

The whole-pipeline check (nothing under the checkout's .lmpipe/, nothing left in TMPDIR) is
tests/flows/test_state_home.py (slow); this is the default suite's fast version, path by path, plus the
temporary folders of a GLUE run.
"""

from __future__ import annotations

import gc
import re
import tempfile
from pathlib import Path

from tasks.common.state import state_path, state_root
from tests.conftest import REPO


def test_every_default_follows_the_state_dir(tmp_path, monkeypatch):
    from flows.glue import load_glue_spec
    from flows.pipeline import _state_root
    from tasks.services.servers import default_mlflow_dir, default_state_dir
    from tasks.common.io import fingerprint_cache_dir
    from tasks.glue.task_run import storage_root
    from tasks.registry.tracking import default_tracking_uri

    state = tmp_path / "state"
    monkeypatch.setenv("LMPIPE_STATE_DIR", str(state))
    assert state_root() == state and state_path("a", "b") == state / "a" / "b"
    assert default_tracking_uri() == f"sqlite:///{state}/mlflow/mlflow.db"
    assert default_mlflow_dir() == state / "mlflow"
    spec = load_glue_spec(None)
    assert spec.scaling.storage_path is None
    assert storage_root(spec) == str(state / "glue" / "runs")
    assert default_state_dir() == state / "services"
    assert _state_root() == state / "pipeline"
    assert fingerprint_cache_dir() == state / "fingerprints"

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LMPIPE_STATE_DIR", "relative")  # taken from the working directory once, made absolute
    assert state_root() == tmp_path / "relative"

    monkeypatch.delenv("LMPIPE_STATE_DIR")
    assert state_root() == REPO / ".lmpipe"
    assert storage_root(spec) == str(REPO / ".lmpipe" / "glue" / "runs")


def test_no_other_module_builds_a_path_under_the_checkouts_lmpipe():
    """`.lmpipe` as a folder name appears in tasks/common/state.py only (docs and help texts aside)."""
    offenders = []
    for folder in ("tasks", "flows", "cluster"):
        for path in (REPO / folder).rglob("*.py"):
            if path.name == "state.py" and path.parent.name == "common":
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                code = line.split("#", 1)[0]
                if re.search(r"""["']\.lmpipe["']""", code):
                    offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert offenders == []


def test_the_glue_tokenizer_folder_goes_with_its_tokenizer(tmp_path, monkeypatch):
    from tasks.glue.job import prepare_tokenizer
    from tests.unit._registry_helpers import tiny_bert_classifier

    model = tiny_bert_classifier(tmp_path / "model", 2)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    tokenizer, used, folder = prepare_tokenizer(str(model), 32)
    assert used == 32 and Path(folder).parent == tmp and (Path(folder) / "tokenizer_config.json").is_file()
    del tokenizer
    gc.collect()
    assert list(tmp.iterdir()) == []
