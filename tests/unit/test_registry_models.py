"""Log tiny BERT/GPT folders as pyfunc models, register them with aliases, load them in a fresh process.

One module-scoped store (real sqlite in a temp folder, no mocks): the BERT and GPT models are logged once
and the tests read what the registry holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from tasks.registry.core import RegisteredModel, download_hf_dir, log_and_register, promote
from tasks.registry.tracking import ensure_experiment
from tests.unit._registry_helpers import tiny_bert, tiny_gpt

REPO = Path(__file__).resolve().parents[2]
TAGS = {"spec_fingerprint": "abc123", "data_manifest": "sha256:feed", "git_commit": "deadbeef-dirty"}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    exp_id = ensure_experiment("registry-tests", uri)
    return {"root": root, "uri": uri, "exp_id": exp_id, "client": MlflowClient(uri)}


@pytest.fixture
def use_store(store, monkeypatch):
    """Point MLflow's process-global tracking URI at the store for one test, restored afterwards."""
    from mlflow.tracking._tracking_service import utils

    monkeypatch.setattr(utils, "_tracking_uri", store["uri"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert(tmp_path_factory.mktemp("bert"))


@pytest.fixture(scope="module")
def gpt_dir(tmp_path_factory):
    return tiny_gpt(tmp_path_factory.mktemp("gpt"))


@pytest.fixture(scope="module")
def bert_v1(store, bert_dir) -> RegisteredModel:
    run = store["client"].create_run(store["exp_id"])
    return log_and_register(
        str(bert_dir),
        registered_model="tiny-bert",
        run_id=run.info.run_id,
        tracking_uri=store["uri"],
        task="fill-mask",
        tags=TAGS,
        input_example=pd.DataFrame({"text": ["the cat [MASK] on the mat"]}),
    )


@pytest.fixture(scope="module")
def gpt_v1(store, gpt_dir) -> RegisteredModel:
    run = store["client"].create_run(store["exp_id"])
    return log_and_register(
        str(gpt_dir),
        registered_model="tiny-gpt",
        run_id=run.info.run_id,
        tracking_uri=store["uri"],
        task="text-generation",
        tags=TAGS,
        input_example=pd.DataFrame({"text": ["once upon a"]}),
    )


_LOAD_AND_PREDICT = """
import json, sys
import mlflow, pandas as pd
out = {}
bert = mlflow.pyfunc.load_model("models:/tiny-bert@candidate")
df = bert.predict(pd.DataFrame({"text": ["the cat [MASK] on the mat", "a [MASK] and a dog"]}), params={"top_k": 3})
out["bert"] = df.to_dict(orient="list")
gpt = mlflow.pyfunc.load_model("models:/tiny-gpt@candidate")
df = gpt.predict(pd.DataFrame({"text": ["once upon a", "the dog"]}), params={"max_new_tokens": 6})
out["gpt"] = df.to_dict(orient="list")
out["gpt_default"] = gpt.predict(pd.DataFrame({"text": ["the dog"]})).to_dict(orient="list")
out["modules"] = sorted(m for m in sys.modules if m == "tasks" or m.startswith("tasks."))
print("RESULT" + json.dumps(out))
"""


def test_fresh_process_loads_by_alias_and_predicts(store, bert_v1, gpt_v1, tmp_path):
    assert bert_v1.uri == "models:/tiny-bert@candidate" and bert_v1.version == "1"
    assert bert_v1.model_uri == f"models:/{bert_v1.model_id}" and bert_v1.model_id.startswith("m-")
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": store["uri"],
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": "",  # the model must not need this project on the path
    }
    proc = subprocess.run(
        [sys.executable, "-c", _LOAD_AND_PREDICT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert out["modules"] == []  # models-from-code: nothing from `tasks` was imported to load it

    bert = out["bert"]
    assert set(bert) == {"text", "token_str", "score", "top_k"}
    assert bert["text"] == ["the cat [MASK] on the mat", "a [MASK] and a dog"]
    for token, score, top in zip(bert["token_str"], bert["score"], bert["top_k"]):
        assert isinstance(token, str) and token
        assert 0.0 < score <= 1.0
        assert len(top) == 3 and top[0] == {"token_str": token, "score": score}
        assert [c["score"] for c in top] == sorted((c["score"] for c in top), reverse=True)

    gpt = out["gpt"]
    assert set(gpt) == {"text", "generated_text"}
    for prompt, generated in zip(gpt["text"], gpt["generated_text"]):
        assert generated.startswith(prompt)  # prompt + greedy continuation
    assert out["gpt_default"]["generated_text"][0].startswith("the dog")



def test_in_process_predict_matches_and_global_uri_untouched(store, bert_v1, use_store):
    before = (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI"))
    log_and_register(  # a call with another store must not leave its URI behind
        str(download_hf_dir(bert_v1.uri, str(store["root"] / "dl-tmp"), store["uri"])),
        registered_model="tiny-bert-other",
        run_id=store["client"].create_run(store["exp_id"]).info.run_id,
        tracking_uri=store["uri"],
        task="fill-mask",
        tags={},
    )
    assert (mlflow.get_tracking_uri(), os.environ.get("MLFLOW_TRACKING_URI")) == before
    model = mlflow.pyfunc.load_model(bert_v1.model_uri)
    texts = ["the cat [MASK] on the mat", "a [MASK] and a dog"]
    df = model.predict(pd.DataFrame({"text": texts}), params={"top_k": 3})
    again = model.predict(pd.DataFrame({"text": texts[::-1]}), params={"top_k": 3})
    assert df["token_str"].tolist() == again["token_str"].tolist()[::-1]  # independent of batch order
    assert len(df["top_k"][0]) == 3
    assert len(model.predict(pd.DataFrame({"text": texts}))["top_k"][0]) == 5  # default top_k


def test_greedy_generation_matches_transformers(gpt_v1, gpt_dir, use_store):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = mlflow.pyfunc.load_model(gpt_v1.model_uri)
    got = model.predict(pd.DataFrame({"text": ["the dog"]}), params={"max_new_tokens": 5, "return_full_text": False})
    tok = AutoTokenizer.from_pretrained(gpt_dir)
    lm = AutoModelForCausalLM.from_pretrained(gpt_dir).eval()
    ids = tok("the dog", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        seq = lm.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False,
                          pad_token_id=tok.eos_token_id)
    assert got["generated_text"][0] == tok.decode(seq[0, ids.shape[1]:], skip_special_tokens=True)


def test_second_version_moves_candidate_promote_sets_champion_tags_on_version(store, bert_dir, bert_v1):
    client = store["client"]
    run = client.create_run(store["exp_id"])
    v2 = log_and_register(
        str(bert_dir),
        registered_model="tiny-bert",
        run_id=run.info.run_id,
        tracking_uri=store["uri"],
        task="fill-mask",
        tags={**TAGS, "prefect_flow_run_id": "flow-run-2"},
    )
    assert v2.version == "2" and v2.model_id != bert_v1.model_id
    assert str(client.get_model_version_by_alias("tiny-bert", "candidate").version) == "2"

    promote("tiny-bert", v2.version, "champion", store["uri"])
    champion = client.get_model_version_by_alias("tiny-bert", "champion")
    assert str(champion.version) == "2"
    assert champion.tags["spec_fingerprint"] == "abc123"
    assert champion.tags["prefect_flow_run_id"] == "flow-run-2"
    assert champion.tags["task"] == "fill-mask"
    assert champion.run_id == run.info.run_id
    assert set(client.get_registered_model("tiny-bert").aliases) == {"candidate", "champion"}

    v1 = client.get_model_version("tiny-bert", "1")
    assert v1.tags["git_commit"] == "deadbeef-dirty" and "prefect_flow_run_id" not in v1.tags

    # Run side: still RUNNING (written to, not ended), the plain folder among its artifacts, model linked.
    after = client.get_run(run.info.run_id)
    assert after.info.status == "RUNNING"
    names = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "hf_model")}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    logged = client.get_logged_model(v2.model_id)
    assert logged.source_run_id == run.info.run_id and logged.experiment_id == store["exp_id"]
    assert logged.tags["spec_fingerprint"] == "abc123"

    # Requirements are the explicit pins, not inferred.
    reqs = Path(
        mlflow.artifacts.download_artifacts(f"{logged.artifact_location}/requirements.txt", tracking_uri=store["uri"])
    ).read_text()
    assert "transformers==" in reqs and "torch==" in reqs and "+cpu" not in reqs


def test_download_hf_dir_loads_with_transformers(store, bert_v1, bert_dir, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    path = download_hf_dir("models:/tiny-bert/1", str(tmp_path / "dl"), store["uri"])
    assert Path(path).is_dir() and Path(path).parent == tmp_path / "dl"
    model = AutoModelForMaskedLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert tok.mask_token == "[MASK]"
    original = AutoModelForMaskedLM.from_pretrained(bert_dir)
    for (name, a), (_, b) in zip(model.state_dict().items(), original.state_dict().items()):
        assert torch.equal(a, b), name

    by_alias = download_hf_dir("models:/tiny-bert@candidate", str(tmp_path / "dl2"), store["uri"])
    assert (Path(by_alias) / "config.json").is_file()
    by_id = download_hf_dir(bert_v1.model_uri, str(tmp_path / "dl3"), store["uri"])
    assert (Path(by_id) / "tokenizer.json").is_file()
    with pytest.raises(ValueError, match="expected models:/"):
        download_hf_dir("runs:/abc/model", str(tmp_path / "x"), store["uri"])


def test_bad_inputs(store, bert_dir, tmp_path):
    run = store["client"].create_run(store["exp_id"])
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        log_and_register(str(tmp_path), registered_model="x", run_id=run.info.run_id, tracking_uri=store["uri"],
                         task="fill-mask", tags={})
    with pytest.raises(ValueError, match="task must be"):
        log_and_register(str(bert_dir), registered_model="x", run_id=run.info.run_id, tracking_uri=store["uri"],
                         task="summarization", tags={})  # type: ignore[arg-type]


def test_fill_mask_without_mask_token_says_so(bert_v1, use_store):
    model = mlflow.pyfunc.load_model(bert_v1.model_uri)
    with pytest.raises(Exception, match=r"no '\[MASK\]'"):
        model.predict(pd.DataFrame({"text": ["no mask here"]}))
