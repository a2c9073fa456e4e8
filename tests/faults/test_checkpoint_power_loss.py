"""A power loss cuts the newest checkpoint short: the rerun resumes from the previous one, on a real local Ray.

Fault: a job checkpoints at steps 4 and 8, then the machine loses power; the step-8 `checkpoint.pt` is left
under its final name with half its bytes (its data never reached the disk), although Ray registered the
checkpoint. Must survive: the job (today every restart fails loading the step-8 file). Output must equal: the
rerun of the same run name resumes from step 4 (`resumed_from_step == 4`) and trains to its end. Then the
token shards are rebuilt: resuming the job again is refused before Ray starts, with the fix.
"""

from __future__ import annotations

import json

import pytest

from cluster.train.ray_entry import run_pretraining
from data_specs.pretrain import ModelSpec, ScalingSpec, TrainSpec
from tasks.pretrain.core import ResumeMismatchError
from tests.cluster.helpers import write_token_dir
from tests.faults.test_train_faults import ray_local  # noqa: F401 (the module's local Ray fixture)

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ONE_WORKER = ScalingSpec(num_workers=1, cpus_per_worker=1, max_failures=0)


def _spec(max_steps: int) -> TrainSpec:
    return TrainSpec(max_steps=max_steps, micro_batch_size=8, grad_accum=1, lr=5e-3, min_lr=5e-4, warmup_steps=2,
                     eval_every=100, eval_batches=1, checkpoint_every=4)


def _by_step(run):
    return {json.loads((d / "train_state.json").read_text())["step"]: d for d in run.glob("checkpoint_*") if d.is_dir()}


def test_truncated_newest_checkpoint_resumes_from_the_previous_one(ray_local, tmp_path):  # noqa: F811
    tokens = write_token_dir(tmp_path / "tokens", "gpt", with_tokenizer=True)
    kwargs = {"tokens_dir": str(tokens), "model": ModelSpec(kind="gpt"), "scaling": ONE_WORKER,
              "run_name": "power", "storage_path": str(tmp_path / "runs")}
    first = run_pretraining(train=_spec(8), **kwargs)
    assert first.final_step == 8
    run = tmp_path / "runs" / "power"
    checkpoints = _by_step(run)
    assert set(checkpoints) == {4, 8}
    newest = checkpoints[8] / "checkpoint.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])

    again = run_pretraining(train=_spec(12), **kwargs)
    assert again.resumed_from_step == 4 and again.final_step == 12

    write_token_dir(tokens, "gpt", n_train=480, with_tokenizer=True)  # rebuilt: other shards, another manifest
    with pytest.raises(ResumeMismatchError, match="token shards were rebuilt.*--new-run"):
        run_pretraining(train=_spec(16), **kwargs)
