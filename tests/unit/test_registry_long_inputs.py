"""Inputs longer than the model's context through the registered pyfunc (tasks/registry/hf_pyfunc.py).

Two failures a user hit with the demo models, reproduced on tiny twins with 64 positions:
- text-generation: a 134-character prompt + max_new_tokens ran past GPT-2's n_positions -> IndexError;
- fill-mask: a 730-token text reached BERT's 64 position embeddings untruncated (the saved tokenizer has
  no model_max_length, so truncation=True cut nothing) -> RuntimeError "expanded size of the tensor (730)".
Each model is logged and registered in a sqlite store under tmp_path and loaded with mlflow.pyfunc.load_model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from tasks.registry.core import RegisteredModel, _tracking, log_and_register
from tasks.registry.tracking import ensure_experiment
from tasks.tokenize.core import set_model_max_length
from tests.unit._registry_helpers import tiny_bert, tiny_gpt

CONTEXT = 64  # n_positions / max_position_embeddings of both tiny models
# 134 characters of rare words and punctuation: ~115 byte-level BPE tokens, past 64 - 20 on its own.
PROMPT_134 = (
    "Zebras, quokkas & yaks: 42 odd beasts queued by the vexed zookeeper. "
    "Why?! Nobody knows; jovial wombats hum 'xylophone' fugues at 9 pm"
)
WORDS = ("the cat sat on the mat " * 130).split()


def _masked(n_words: int, at: int) -> str:
    """`n_words` known words (one WordPiece token each) with [MASK] inserted at word index `at`."""
    words = WORDS[:n_words]
    return " ".join(words[:at] + ["[MASK]"] + words[at:])


@pytest.fixture(scope="module")
def uri(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


def _register(uri: str, hf_dir: Path, name: str, task: str) -> RegisteredModel:
    run = MlflowClient(uri).create_run(ensure_experiment("long-inputs", uri))
    return log_and_register(str(hf_dir), registered_model=name, run_id=run.info.run_id, tracking_uri=uri,
                            task=task, tags={})  # type: ignore[arg-type]


def _load(uri: str, info: RegisteredModel):
    with _tracking(uri):
        return mlflow.pyfunc.load_model(info.uri)


@pytest.fixture(scope="module")
def gpt_dir(tmp_path_factory) -> Path:
    return tiny_gpt(tmp_path_factory.mktemp("gpt64"), n_positions=CONTEXT)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    return tiny_bert(tmp_path_factory.mktemp("bert64"))


@pytest.fixture(scope="module")
def gpt(uri, gpt_dir):
    return _load(uri, _register(uri, gpt_dir, "long-gpt", "text-generation"))


@pytest.fixture(scope="module")
def bert(uri, bert_dir):
    return _load(uri, _register(uri, bert_dir, "long-bert", "fill-mask"))


def _greedy(hf_dir: Path, ids: list[int], max_new_tokens: int) -> list[int]:
    """Greedy continuation ids from plain transformers, the reference the pyfunc must match."""
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    x = torch.tensor([ids])
    with torch.no_grad():
        seq = lm.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens, do_sample=False,
                          pad_token_id=lm.config.eos_token_id)
    return seq[0, len(ids):].tolist()


def test_generation_134_char_prompt_keeps_the_last_tokens(gpt, gpt_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gpt_dir)
    ids = tok(PROMPT_134)["input_ids"]
    assert len(PROMPT_134) == 134 and len(ids) + 20 > CONTEXT  # what used to raise IndexError
    out = gpt.predict(pd.DataFrame({"text": [PROMPT_134]}))  # default max_new_tokens=20
    assert out["generated_text"][0].startswith(PROMPT_134)  # the full prompt is still echoed
    # Left truncation: the continuation is what the model gives for the last 64 - 20 prompt tokens.
    cont = gpt.predict(pd.DataFrame({"text": [PROMPT_134]}), params={"return_full_text": False})
    assert cont["generated_text"][0] == tok.decode(_greedy(gpt_dir, ids[-(CONTEXT - 20):], 20))


def test_generation_never_crashes_on_length(gpt, gpt_dir):
    texts = [PROMPT_134 * 40, "", "the dog"]  # ~4,600 tokens, empty, short
    out = gpt.predict(pd.DataFrame({"text": texts}), params={"max_new_tokens": 500})  # > context: capped
    assert [g.startswith(t) for t, g in zip(texts, out["generated_text"])] == [True] * 3
    edge = gpt.predict(pd.DataFrame({"text": ["the dog"]}), params={"max_new_tokens": CONTEXT - 1})
    assert edge["generated_text"][0].startswith("the dog")
    none = gpt.predict(pd.DataFrame({"text": ["the dog"]}), params={"max_new_tokens": 0})
    assert none["generated_text"][0] == "the dog"


def test_fill_mask_730_tokens_window_keeps_the_mask(bert, bert_dir):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bert_dir)
    end = _masked(727, 727)  # the mask is the last word
    assert len(tok(end)["input_ids"]) == 730  # what used to raise "expanded size of the tensor (730)"
    texts = [end, _masked(727, 0), _masked(727, 400), "the cat [MASK] on the mat"]
    out = bert.predict(pd.DataFrame({"text": texts}), params={"top_k": 3})
    assert out["text"].tolist() == texts
    assert all(0.0 < s <= 1.0 for s in out["score"]) and all(len(t) == 3 for t in out["top_k"])

    # Mask at the end: the window is [CLS] + the last 62 body tokens (mask included) + [SEP].
    body = tok(end, add_special_tokens=False)["input_ids"]
    window = [tok.cls_token_id, *body[-(CONTEXT - 2):], tok.sep_token_id]
    lm = AutoModelForMaskedLM.from_pretrained(bert_dir).eval()
    with torch.no_grad():
        logits = lm(input_ids=torch.tensor([window])).logits[0, window.index(tok.mask_token_id)]
    assert out["score"][0] == pytest.approx(logits.softmax(-1).max().item(), abs=1e-5)
    assert out["token_str"][0] == tok.decode([int(logits.argmax())]).strip()

    # A short text is unaffected by its long batch mates.
    alone = bert.predict(pd.DataFrame({"text": texts[-1:]}), params={"top_k": 3})
    assert alone["token_str"][0] == out["token_str"][3]
    assert alone["score"][0] == pytest.approx(out["score"][3], abs=1e-5)


def test_set_model_max_length_makes_autotokenizer_truncate(bert_dir, tmp_path):
    from transformers import AutoTokenizer

    tok_dir = tmp_path / "tok"
    shutil.copytree(bert_dir, tok_dir)
    before = json.loads((tok_dir / "tokenizer_config.json").read_text())
    long_text = _masked(727, 400)
    assert len(AutoTokenizer.from_pretrained(tok_dir)(long_text, truncation=True)["input_ids"]) == 730

    set_model_max_length(tok_dir, CONTEXT)
    after = json.loads((tok_dir / "tokenizer_config.json").read_text())
    assert after == {**before, "model_max_length": CONTEXT}  # nothing else changed
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    assert len(tok(long_text, truncation=True)["input_ids"]) == CONTEXT
    assert len(tok(long_text, long_text, truncation=True)["input_ids"]) == CONTEXT  # pairs too
    with pytest.raises(ValueError, match="positive"):
        set_model_max_length(tok_dir, 0)
    with pytest.raises(FileNotFoundError):
        set_model_max_length(tmp_path / "nowhere", 8)


def test_fill_mask_tokenizer_limit_above_positions(uri, bert_dir, tmp_path):
    """A tokenizer that claims 512 over 64 position embeddings: the smaller one wins."""
    hf_dir = tmp_path / "bert512"
    shutil.copytree(bert_dir, hf_dir)
    set_model_max_length(hf_dir, 512)
    model = _load(uri, _register(uri, hf_dir, "long-bert-512", "fill-mask"))
    out = model.predict(pd.DataFrame({"text": [_masked(727, 700)]}))
    assert 0.0 < out["score"][0] <= 1.0
