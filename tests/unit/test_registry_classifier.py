"""Register tiny GLUE classifiers (tasks/registry/glue_pyfunc.py) and serve them by alias.

Three heads on 64-position twins, logged once into a sqlite store under a temp folder: BERT with 2 labels
(SST-2), BERT with 1 output (STS-B regression) and GPT-2 with 3 labels over text pairs (MNLI), the GPT-2
one without a pad token as the stock checkpoints ship. Random weights: the tests check shapes, names,
encoding and registry facts, not accuracy.
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

from tasks.registry.core import RegisteredModel, _tracking, download_hf_dir, log_and_register_classifier
from tasks.registry.tracking import ensure_experiment
from tests.unit._registry_helpers import tiny_bert_classifier, tiny_gpt_classifier

SST2 = {"glue_task": "sst2", "text_columns": ["sentence"], "label_names": ["negative", "positive"]}
STSB = {"glue_task": "stsb", "text_columns": ["sentence1", "sentence2"], "label_names": []}
MNLI = {"glue_task": "mnli", "text_columns": ["premise", "hypothesis"],
        "label_names": ["entailment", "neutral", "contradiction"]}
LONG = " ".join(("the quick brown fox jumps over the lazy dog and " * 200).split()[:2000])  # 2,000 words


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, str]:
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"
    return uri, ensure_experiment("glue-registry", uri)


def _register(store: tuple[str, str], hf_dir: Path, name: str, spec: dict, **kw) -> RegisteredModel:
    uri, exp_id = store
    run_id = MlflowClient(uri).create_run(exp_id).info.run_id
    return log_and_register_classifier(str(hf_dir), registered_model=name, run_id=run_id, tracking_uri=uri,
                                       tags={"spec_fingerprint": "f00d"}, **spec, **kw)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("glue")
    return {
        "sst2": tiny_bert_classifier(root / "sst2", 2),
        "stsb": tiny_bert_classifier(root / "stsb", 1),
        "mnli": tiny_gpt_classifier(root / "mnli", 3),
    }


@pytest.fixture(scope="module")
def registered(store, dirs) -> dict[str, RegisteredModel]:
    specs = {"sst2": SST2, "stsb": STSB, "mnli": MNLI}
    return {task: _register(store, dirs[task], f"glue-{task}", spec) for task, spec in specs.items()}


@pytest.fixture(scope="module")
def loaded(store, registered):
    with _tracking(store[0]):
        return {task: mlflow.pyfunc.load_model(info.uri) for task, info in registered.items()}


_FRESH = """
import json, sys
import mlflow, pandas as pd
LONG = sys.argv[1]
inputs = {
    "sst2": {"sentence": ["a moving film", LONG, "dull"]},
    "stsb": {"sentence1": ["a cat sat", LONG, "a dog"], "sentence2": ["a cat was sitting", "short", LONG]},
    "mnli": {"premise": ["the cat sat", LONG, ""], "hypothesis": ["a cat sat", LONG, "nothing"]},
}
out = {t: mlflow.pyfunc.load_model(f"models:/glue-{t}@candidate").predict(pd.DataFrame(rows)).to_dict(orient="list")
       for t, rows in inputs.items()}
out["modules"] = sorted(m for m in sys.modules if m == "tasks" or m.startswith("tasks."))
print("RESULT" + json.dumps(out))
"""


def test_fresh_process_loads_by_alias_and_predicts_any_length(store, registered, tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": store[0], "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, "-c", _FRESH, LONG], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT", 1)[1])
    assert out.pop("modules") == []  # models-from-code: nothing from `tasks` is needed to serve

    for task, spec in (("sst2", SST2), ("mnli", MNLI)):
        names = spec["label_names"]
        got = out[task]
        assert list(got) == ["label", "score", *names] and len(got["label"]) == 3
        for i, label in enumerate(got["label"]):
            probs = [got[n][i] for n in names]
            assert label in names and got["score"][i] == pytest.approx(max(probs))
            assert got[label][i] == got["score"][i] and sum(probs) == pytest.approx(1.0, abs=1e-5)
    assert list(out["stsb"]) == ["score"] and len(out["stsb"]["score"]) == 3
    assert all(isinstance(s, float) for s in out["stsb"]["score"])


def test_predictions_match_transformers_on_truncated_inputs(loaded, dirs):
    """The pyfunc scores what plain transformers gives for the same text cut to the 64-token context."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(dirs["sst2"])
    model = AutoModelForSequenceClassification.from_pretrained(dirs["sst2"]).eval()
    texts = ["a moving film", LONG]
    enc = tok(texts, truncation=True, max_length=64, padding=True, return_tensors="pt")
    assert enc["input_ids"].shape[1] == 64
    with torch.no_grad():
        want = model(**enc).logits.softmax(-1)
    got = loaded["sst2"].predict(pd.DataFrame({"sentence": texts}))
    assert got["negative"].tolist() == pytest.approx(want[:, 0].tolist(), abs=1e-5)
    assert got["positive"].tolist() == pytest.approx(want[:, 1].tolist(), abs=1e-5)

    # BERT pairs carry segment ids, as fine-tuning feeds them; GPT-2 pairs are `a <eos> b` with none (a GPT-2
    # would add a learned token-type embedding to sentence B). Regression gives the raw output; a pair with a
    # 2,000-word text is cut to 64 tokens, longest first.
    for task, columns in (("stsb", ("sentence1", "sentence2")), ("mnli", ("premise", "hypothesis"))):
        tok = AutoTokenizer.from_pretrained(dirs[task])
        model = AutoModelForSequenceClassification.from_pretrained(dirs[task]).eval()
        pairs = ([LONG, "a cat sat"], ["a cat sat on the mat", LONG])
        if tok.pad_token is None:  # GPT-2, as fine-tuning sets it up: eos pads and joins
            tok.pad_token = tok.eos_token
            model.config.pad_token_id = tok.eos_token_id
            rows = []
            for a, b in zip(*pairs):
                ia, ib = tok(a)["input_ids"], tok(b)["input_ids"]
                short = min(len(ia), len(ib), 63 // 2)
                ia, ib = (ia[:short], ib[:63 - short]) if len(ia) <= len(ib) else (ia[:63 - short], ib[:short])
                rows.append(ia + [tok.eos_token_id] + ib)
            enc = tok.pad({"input_ids": rows}, return_tensors="pt")
            assert "token_type_ids" not in enc and (enc["input_ids"] == tok.eos_token_id).any(-1).all()
        else:
            enc = tok(*pairs, truncation="longest_first", max_length=64, padding=True, return_token_type_ids=True,
                      return_tensors="pt")
            assert enc["token_type_ids"].any()
        assert enc["input_ids"].shape[1] == 64
        with torch.no_grad():
            want = model(**enc).logits
        got = loaded[task].predict(pd.DataFrame(dict(zip(columns, pairs))))
        if task == "stsb":
            assert got["score"].tolist() == pytest.approx(want[:, 0].tolist(), abs=1e-5)
        else:
            assert got["neutral"].tolist() == pytest.approx(want.softmax(-1)[:, 1].tolist(), abs=1e-5)


def test_batches_keep_input_order_and_padding_is_harmless(loaded):
    """40 rows of mixed lengths (two batches of <= 32) score as each row does alone; GPT-2 pads with eos."""
    words = LONG.split()
    premises = [" ".join(words[: 1 + (7 * i) % 90]) for i in range(40)]
    hypotheses = [" ".join(words[i : i + 3]) for i in range(40)]
    model = loaded["mnli"]
    batch = model.predict(pd.DataFrame({"premise": premises, "hypothesis": hypotheses}))
    for i in (0, 5, 31, 32, 39):
        alone = model.predict(pd.DataFrame({"premise": premises[i : i + 1], "hypothesis": hypotheses[i : i + 1]}))
        assert batch["label"][i] == alone["label"][0]
        assert batch["contradiction"][i] == pytest.approx(alone["contradiction"][0], abs=1e-5)
    empty = model.predict(pd.DataFrame({"premise": ["", "x"], "hypothesis": ["", ""]}))  # GPT-2: no tokens at all
    assert empty["score"].between(0, 1).all()


def test_label_names_come_back_as_names(loaded, dirs):
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(dirs["sst2"]).id2label == {0: "LABEL_0", 1: "LABEL_1"}  # not in config.json
    got = loaded["sst2"].predict(pd.DataFrame({"sentence": ["a moving film", "dull"]}))
    assert set(got["label"]) <= {"negative", "positive"}


def test_missing_column_is_an_error_naming_the_expected_columns(loaded):
    with pytest.raises(Exception, match="hypothesis"):  # MLflow's schema check comes first
        loaded["mnli"].predict(pd.DataFrame({"premise": ["a cat"]}))
    raw = loaded["mnli"].unwrap_python_model()  # the pyfunc itself, as a caller without a signature meets it
    with pytest.raises(ValueError, match=r"\['premise', 'hypothesis'\]"):
        raw.predict(None, pd.DataFrame({"premise": ["a cat"], "sentence": ["x"]}))


def test_registry_facts(store, registered, tmp_path):
    from transformers import AutoModelForSequenceClassification

    uri, _ = store
    client = MlflowClient(uri)
    version = client.get_model_version_by_alias("glue-sst2", "candidate")
    assert version.tags["task"] == "text-classification" and version.tags["glue_task"] == "sst2"
    assert version.tags["spec_fingerprint"] == "f00d" and version.tags["model_id"] == registered["sst2"].model_id
    with _tracking(uri):
        sig = mlflow.models.get_model_info(registered["mnli"].uri).signature
        reg_sig = mlflow.models.get_model_info(registered["stsb"].uri).signature
    assert sig.inputs.input_names() == ["premise", "hypothesis"]
    assert sig.outputs.input_names() == ["label", "score", "entailment", "neutral", "contradiction"]
    assert reg_sig.outputs.input_names() == ["score"]
    names = {Path(a.path).name for a in client.list_artifacts(registered["mnli"].run_id, "hf_model")}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    local = download_hf_dir(registered["stsb"].uri, str(tmp_path), uri)  # the registered folder, for transformers
    assert AutoModelForSequenceClassification.from_pretrained(local).config.num_labels == 1


def test_bad_registrations(store, dirs):
    with pytest.raises(ValueError, match="2 output"):  # a 2-label model registered as regression
        _register(store, dirs["sst2"], "bad", {**SST2, "label_names": []})
    with pytest.raises(ValueError, match="text_columns"):
        _register(store, dirs["sst2"], "bad", {**SST2, "text_columns": ["a", "b", "c"]})
    with pytest.raises(ValueError, match="collide"):
        _register(store, dirs["sst2"], "bad", {**SST2, "label_names": ["label", "other"]})
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        _register(store, dirs["sst2"] / "nowhere", "bad", SST2)
