"""Ray Train on a local 2-CPU Ray: 2 gloo workers, checkpoints, resume by run name, worker-failure recovery,
MLflow logging from rank 0, and a final model directory that `transformers` loads."""

from __future__ import annotations

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

from cluster.train.ray_entry import run_pretraining
from data_specs.pretrain import ModelSpec, ScalingSpec, TrainSpec
from tests.cluster.helpers import SEQ_LEN, write_token_dir

pytestmark = [pytest.mark.ray]

TWO_WORKERS = ScalingSpec(num_workers=2, cpus_per_worker=0.5, max_failures=2)


def _spec(max_steps: int, **kw) -> TrainSpec:
    base = dict(max_steps=max_steps, micro_batch_size=8, grad_accum=2, lr=5e-3, min_lr=5e-4, warmup_steps=2,
                eval_every=5, eval_batches=2, checkpoint_every=5)
    return TrainSpec(**{**base, **kw})


def test_gpt_two_workers_mlflow_then_resume(ray_local, tmp_path):
    tokens = write_token_dir(tmp_path / "tokens", "gpt", with_tokenizer=True)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    run_id = MlflowClient(uri).create_run(MlflowClient(uri).create_experiment("t")).info.run_id
    common = dict(tokens_dir=str(tokens), model=ModelSpec(kind="gpt"), scaling=TWO_WORKERS, run_name="gpt-run",
                  storage_path=str(tmp_path / "runs"))

    first = run_pretraining(train=_spec(10), mlflow_run_id=run_id, mlflow_tracking_uri=uri, **common)
    assert first.final_step == 10 and first.resumed_from_step is None
    m = first.metrics
    assert m["val_loss"] < 0.8 * m["first_val_loss"], m
    assert m["tokens_seen"] == 10 * 2 * 8 * SEQ_LEN * 2  # steps × accum × batch × T × workers
    assert m["tokens_per_s"] > 0 and m["mfu"] is None

    client = MlflowClient(uri)
    assert [x.step for x in client.get_metric_history(run_id, "loss")] == list(range(1, 11))  # rank 0 only
    assert [x.step for x in client.get_metric_history(run_id, "val_loss")] == [0, 5, 10]
    assert {"lr", "grad_norm", "tokens_per_s", "val_ppl"} <= set(client.get_run(run_id).data.metrics)
    assert client.get_run(run_id).info.status == "RUNNING"  # the flow's run is left open for the flow to end

    model = AutoModelForCausalLM.from_pretrained(first.model_dir)
    tok = AutoTokenizer.from_pretrained(first.model_dir)
    assert tok.model_max_length == SEQ_LEN  # the model's n_positions: truncation=True now fits the model
    assert len(tok(" ".join(["w1"] * 500), truncation=True)["input_ids"]) == SEQ_LEN
    ids = torch.tensor([tok.convert_tokens_to_ids(["w0", "w1", "w2", "w3"])])
    assert model(input_ids=ids).logits.shape == (1, 4, 96)

    second = run_pretraining(train=_spec(20), **common)  # same name + storage: Ray resumes from step 10
    assert second.resumed_from_step == 10 and second.final_step == 20
    assert second.metrics["first_val_loss"] == m["first_val_loss"]  # carried in the checkpoint
    assert second.metrics["tokens_seen"] == 2 * m["tokens_seen"]


def test_bert_worker_failure_recovers(ray_local, tmp_path):
    tokens = write_token_dir(tmp_path / "tokens", "bert", with_tokenizer=True)
    out = run_pretraining(tokens_dir=str(tokens), model=ModelSpec(kind="bert"), train=_spec(12, checkpoint_every=4),
                          scaling=TWO_WORKERS, run_name="bert-run", storage_path=str(tmp_path / "runs"),
                          fail_once_at_step=6)
    assert (tmp_path / "runs" / "bert-run" / ".failed_once_at_6").exists()  # the worker did die once
    assert out.restarted_from_step == 4  # the group restarted from the step-4 checkpoint, inside this invocation
    assert out.final_step == 12 and out.resumed_from_step is None
    assert out.metrics["val_loss"] < 0.8 * out.metrics["first_val_loss"], out.metrics
    model = AutoModelForMaskedLM.from_pretrained(out.model_dir)
    tok = AutoTokenizer.from_pretrained(out.model_dir)
    enc = tok("w0 w1 [MASK] w3", return_tensors="pt")
    assert model(**enc).logits.shape[-1] == 96
