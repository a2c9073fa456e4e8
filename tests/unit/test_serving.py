"""`lmpipe serve`: a registered model answers real HTTP requests on 127.0.0.1 (tasks/registry/serving.py).

A tiny SST-2 classifier and a tiny fill-mask BERT are registered into a SQLite store under a temp folder. Checked:
the labels served equal `pyfunc.predict` on the same rows; a wrong column is a 4xx that names the missing one;
the base LM answers fill-mask rows; `lmpipe serve` started as `.venv/bin/lmpipe` with no virtual environment on
PATH serves, and SIGTERM stops it with exit 0 and removes the downloaded copy from $TMPDIR.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from tasks.registry.core import _tracking, log_and_register, log_and_register_classifier
from tasks.registry.serving import model_app, serving_in_thread
from tasks.registry.tracking import ensure_experiment
from tests.conftest import REPO
from tests.unit._registry_helpers import tiny_bert, tiny_bert_classifier

ROWS = ["a moving , warm film", "dull and long", "the cat sat on the mat", "a fine film"]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("serve")
    uri = f"sqlite:///{root}/mlflow.db"
    exp = ensure_experiment("serve", uri)
    client = MlflowClient(uri)
    clf = log_and_register_classifier(
        str(tiny_bert_classifier(root / "sst2", 2)), registered_model="tiny-glue-sst2",
        run_id=client.create_run(exp).info.run_id, tracking_uri=uri, glue_task="sst2", text_columns=["sentence"],
        label_names=["negative", "positive"], tags={}, alias="champion")
    lm = log_and_register(str(tiny_bert(root / "lm")), registered_model="tiny-lm",
                          run_id=client.create_run(exp).info.run_id, tracking_uri=uri, task="fill-mask", tags={},
                          alias="champion")
    return {"uri": uri, "clf": clf.uri, "lm": lm.uri}


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(f"{url}/invocations", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def _split(column: str, rows: list[str]) -> dict:
    return {"dataframe_split": {"columns": [column], "data": [[r] for r in rows]}}


def test_served_labels_equal_pyfunc_predict_and_a_wrong_column_is_a_4xx(store, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where model_app downloads: checked empty after
    with _tracking(store["uri"]):
        expected = mlflow.pyfunc.load_model(store["clf"]).predict(pd.DataFrame({"sentence": ROWS}))
    with model_app(store["clf"], store["uri"]) as app, serving_in_thread(app) as url:
        assert url.startswith("http://127.0.0.1:")
        assert list(tmp_path.glob("lmpipe-serve-*")), "the model is downloaded into a temporary folder"
        with urllib.request.urlopen(f"{url}/ping", timeout=10) as resp:
            assert resp.status == 200
        status, body = _post(url, _split("sentence", ROWS))
        assert status == 200, body
        served = pd.DataFrame(body["predictions"])
        assert served["label"].tolist() == expected["label"].tolist()
        assert served["score"].tolist() == pytest.approx(expected["score"].tolist(), abs=1e-6)
        assert set(served["label"]) <= {"negative", "positive"}

        status, body = _post(url, _split("text", ROWS))  # the task's column is "sentence"
        assert 400 <= status < 500, (status, body)
        assert "sentence" in body.get("message", ""), body
    assert not list(tmp_path.glob("lmpipe-serve-*")), "the downloaded copy outlived the server"


def test_the_base_lm_answers_fill_mask_rows(store):
    texts = ["the cat [MASK] on the mat", "a [MASK] film"]
    with _tracking(store["uri"]):
        expected = mlflow.pyfunc.load_model(store["lm"]).predict(pd.DataFrame({"text": texts}), params={"top_k": 3})
    with model_app(store["lm"], store["uri"]) as app, serving_in_thread(app) as url:
        status, body = _post(url, {"dataframe_split": {"columns": ["text"], "data": [[t] for t in texts]},
                                   "params": {"top_k": 3}})
    assert status == 200, body
    rows = pd.DataFrame(body["predictions"])  # one row per text: the best token, and the top_k candidates
    assert list(rows.columns) == ["text", "token_str", "score", "top_k"]
    assert rows["text"].tolist() == texts and [len(c) for c in rows["top_k"]] == [3, 3]
    assert rows["token_str"].tolist() == expected["token_str"].tolist()


def test_lmpipe_serve_without_an_activated_venv_then_sigterm_removes_the_download(store, tmp_path):
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", str(tmp_path)), "TMPDIR": str(tmpdir),
           "MLFLOW_TRACKING_URI": store["uri"], "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
           "HF_HUB_OFFLINE": "1", "LMPIPE_USE_SERVICES": "0", "LMPIPE_STATE_DIR": str(tmp_path / "state")}
    lmpipe = Path(sys.executable).parent / "lmpipe"
    proc = subprocess.Popen([str(lmpipe), "serve", store["clf"], "--port", "0"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url, seen = None, []
        deadline = time.time() + 180
        while url is None and time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            m = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
            url = m.group(1) if m else None
        assert url, "".join(seen)[-3000:]
        for _ in range(100):  # the line is printed just before uvicorn starts accepting
            try:
                status, body = _post(url, _split("sentence", ROWS[:2]))
                break
            except urllib.error.URLError:
                time.sleep(0.1)
        assert status == 200 and len(body["predictions"]) == 2, body
        assert list(tmpdir.glob("lmpipe-serve-*"))
        proc.send_signal(signal.SIGTERM)  # what systemd and Kubernetes send; Ctrl-C ends the same way
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, "".join(seen) + out
    assert not list(tmpdir.glob("lmpipe-serve-*")), list(tmpdir.iterdir())
