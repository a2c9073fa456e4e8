"""Pretraining with `scaling.storage_path` as a URL, the way s3:// or gs:// runs: Ray Train writes the checkpoints
through a pyarrow filesystem (here `file://`, the local one behind a URL) and lmpipe reads only through it: no
local-path fallback, the final model published to a folder of the driver, and a rerun resumed from Ray's
snapshot of the URL storage."""

from __future__ import annotations

import pytest
from pyarrow import fs
from transformers import AutoModelForCausalLM

from cluster.train.ray_entry import published_dir, run_pretraining
from data_specs.glue import GlueScalingSpec
from data_specs.pretrain import ModelSpec, ScalingSpec, TrainSpec
from tests.cluster.helpers import write_token_dir

pytestmark = [pytest.mark.ray]


def _train(max_steps: int) -> TrainSpec:
    return TrainSpec(max_steps=max_steps, micro_batch_size=4, grad_accum=1, lr=5e-3, min_lr=5e-4, warmup_steps=1,
                     eval_every=3, eval_batches=1, checkpoint_every=3)


def test_pretraining_on_a_storage_url_resumes_from_it(ray_local, tmp_path, monkeypatch):
    monkeypatch.setenv("LMPIPE_STATE_DIR", str(tmp_path / "state"))
    tokens = write_token_dir(tmp_path / "tokens", "gpt", n_train=128, n_val=16, with_tokenizer=True)
    url = (tmp_path / "bucket" / "runs").as_uri()  # file:///…/bucket/runs
    common = dict(tokens_dir=str(tokens), model=ModelSpec(kind="gpt"),
                  scaling=ScalingSpec(num_workers=2, cpus_per_worker=0.5, max_failures=0),
                  run_name="url-gpt", storage_path=url)

    first = run_pretraining(train=_train(3), **common)
    assert first.final_step == 3 and first.storage_path == url
    filesystem, root = fs.FileSystem.from_uri(url)
    listed = [i.base_name for i in filesystem.get_file_info(fs.FileSelector(f"{root}/url-gpt"))]
    assert any(n.startswith("checkpoint_") for n in listed), listed  # written through the URL's filesystem
    assert first.model_dir == published_dir(url, "url-gpt") == str(tmp_path / "state" / "models" / "url-gpt"
                                                                    / "final_model")
    AutoModelForCausalLM.from_pretrained(first.model_dir)

    second = run_pretraining(train=_train(6), **common)  # same run name: resumed from the URL storage
    assert second.resumed_from_step == 3 and second.final_step == 6


def test_fault_hook_and_glue_refuse_a_storage_url(ray_local, tmp_path):
    tokens = write_token_dir(tmp_path / "tokens", "gpt", n_train=64, n_val=16, with_tokenizer=True)
    with pytest.raises(ValueError, match="needs a local storage_path"):
        run_pretraining(tokens_dir=str(tokens), model=ModelSpec(kind="gpt"), train=_train(3),
                        scaling=ScalingSpec(num_workers=1, cpus_per_worker=0.5), run_name="x",
                        storage_path="file:///nowhere/runs", fail_once_at_step=2)
    with pytest.raises(ValueError, match="local or mounted path"):
        GlueScalingSpec(storage_path="s3://bucket/glue")
