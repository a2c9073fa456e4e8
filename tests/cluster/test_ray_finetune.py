"""GLUE fine-tuning on Ray Train (local 2-CPU Ray, 2 gloo workers): predictions, a published model whose
tokenizer truncates to the model's context, recovery from a dead worker, and resume of a failed job."""

from __future__ import annotations

import json

import pytest
import torch
from ray.train import TrainingFailedError
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from cluster.train.finetune import encode, schedule
from cluster.train.ray_entry import run_finetuning
from data_specs.glue import FinetuneSpec, GlueScalingSpec
from tests.unit._registry_helpers import tiny_bert

pytestmark = [pytest.mark.ray]

POS = ["good great fine", "great good nice", "nice fine good"]
NEG = ["bad awful poor", "poor bad sad", "sad awful bad"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def _data(base, n=40):
    tok = AutoTokenizer.from_pretrained(base)
    texts = [(POS if i % 2 else NEG)[i % 3] for i in range(n)]
    return encode(tok, (texts,), [i % 2 for i in range(n)], 16, regression=False)


def _run(base, tmp_path, spec, scaling, run_name, **kw):
    data = _data(base)
    return run_finetuning(model_dir=str(base), tokenizer_dir=str(base), train=data, evals={"validation": data},
                          label_names=["neg", "pos"], spec=spec, scaling=scaling, run_name=run_name,
                          storage_path=str(tmp_path / "runs"), **kw)


def test_two_workers_recover_from_a_dead_worker(ray_local, base, tmp_path):
    spec = FinetuneSpec(lr=3e-3, epochs=4, batch_size=8, checkpoint_every=4, seed=0)
    scaling = GlueScalingSpec(num_workers=2, cpus_per_worker=0.5, max_failures=2)
    out = _run(base, tmp_path, spec, scaling, "ft-run", fail_once_at_step=6)
    assert (tmp_path / "runs" / "ft-run" / ".failed_once_at_6").exists()  # a worker did die at step 6
    assert out.restarted_from_step == 4 and out.resumed_from_step is None  # the group restarted from step 4
    # Each rank saved its own dropout RNG (a restart used to give rank 1 rank 0's stream).
    for ckpt in (d for d in (tmp_path / "runs" / "ft-run").glob("checkpoint_*") if d.is_dir()):
        states = [torch.load(ckpt / f"rank_{r}.pt", weights_only=True)["rng"]["torch"] for r in (0, 1)]
        assert not torch.equal(states[0], states[1]), ckpt
    assert out.final_step == schedule(40, spec)[1] == 20
    assert out.metrics["examples_seen"] == 40 * 4
    preds = out.predictions["validation"]
    assert len(preds) == 40 and sum(p == i % 2 for i, p in enumerate(preds)) == 40  # it learned the toy task

    model = AutoModelForSequenceClassification.from_pretrained(out.model_dir)
    assert model.config.id2label == {0: "neg", 1: "pos"}
    tok = AutoTokenizer.from_pretrained(out.model_dir)
    assert tok.model_max_length == 64  # the model's context, stamped on the saved tokenizer
    assert len(tok(" ".join(["good"] * 500), truncation=True)["input_ids"]) == 64


def test_failed_job_resumes_from_its_checkpoint(ray_local, base, tmp_path):
    spec = FinetuneSpec(lr=3e-3, epochs=2, batch_size=8, checkpoint_every=3, seed=0)
    no_retry = GlueScalingSpec(num_workers=1, cpus_per_worker=1.0, max_failures=0)
    with pytest.raises(TrainingFailedError):
        _run(base, tmp_path, spec, no_retry, "ft-fail", fail_once_at_step=7)
    steps = [json.loads((d / "train_state.json").read_text())["step"]
             for d in (tmp_path / "runs" / "ft-fail").glob("checkpoint_*") if d.is_dir()]
    assert max(steps) == 6
    again = _run(base, tmp_path, spec, no_retry, "ft-fail")  # the rerun of the same job
    assert again.resumed_from_step == 6 and again.final_step == 10
    assert again.metrics["examples_seen"] == 80  # the checkpoint's count carried on, not restarted


def test_select_best_on_carved_rows_with_early_stopping_on_two_workers(ray_local, base, tmp_path):
    """`select: best` on rows carved from train (labels flipped, so later, better-fitted checkpoints score
    worse there): training stops early, both ranks agree, and the saved model and predictions are the best
    checkpoint's, not the last."""
    tok = AutoTokenizer.from_pretrained(base)
    held_texts = [(POS if i % 2 else NEG)[i % 3] for i in range(12)]
    selection = encode(tok, (held_texts,), [1 - i % 2 for i in range(12)], 16, regression=False)
    spec = FinetuneSpec(lr=3e-3, epochs=10, batch_size=8, checkpoint_every=100, seed=0, select="best",
                        selection_fraction=0.2, eval_every=2, early_stopping_patience=2)
    scaling = GlueScalingSpec(num_workers=2, cpus_per_worker=0.5, max_failures=0)
    out = _run(base, tmp_path, spec, scaling, "ft-select", selection=selection, task="sst2")
    total = schedule(40, spec)[1]
    assert out.metrics["stopped_early"] and out.final_step < total
    best = out.metrics["best_step"]
    assert best is not None and out.final_step == best + 2 * 2  # two evaluations without improvement
    from cluster.train.finetune import predict

    model = AutoModelForSequenceClassification.from_pretrained(out.model_dir).eval()
    data = _data(base)
    preds = [int(p) for p in out.predictions["validation"]]
    assert predict(model, data, 16, "cpu", regression=False).tolist() == preds  # the saved model is the scored one
    assert sum(p == i % 2 for i, p in enumerate(preds)) < 40  # an early checkpoint, not the fully fitted last one
