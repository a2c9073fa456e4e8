"""GPU paths (bf16 autocast, fused AdamW, MFU): run on a CUDA machine with `pytest -m gpu tests/cluster`."""

from __future__ import annotations

import pytest
import torch

from cluster.train.loop import train
from cluster.train.model import build_model, peak_flops
from data_specs.pretrain import ModelSpec, ScalingSpec, TrainSpec
from tests.cluster.helpers import GPT_SPECIAL, SEQ_LEN, VOCAB, synthetic_sequences, write_token_dir

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def test_loop_bf16_on_cuda():
    torch.manual_seed(0)
    model = build_model(ModelSpec(kind="gpt", preset="tiny"), VOCAB, SEQ_LEN, GPT_SPECIAL).cuda()
    rows = list(torch.from_numpy(synthetic_sequences(30 * 8, SEQ_LEN)).split(8))
    steps = []
    spec = TrainSpec(max_steps=30, warmup_steps=3, lr=3e-3, min_lr=3e-4, eval_every=10, eval_batches=1)
    state = train(model, iter(rows), lambda: iter(rows[:1]), spec, "gpt", GPT_SPECIAL, VOCAB, "cuda",
                  on_step=steps.append)
    assert state.step == 30 and steps[-1]["loss"] < 0.7 * steps[0]["loss"]
    if peak_flops(torch.device("cuda"), torch.bfloat16) is not None:  # a GPU in the peak table
        assert 0 < steps[-1]["mfu"] < 1 and state.mfu is not None


@pytest.mark.ray
def test_ray_one_gpu_worker(ray_local, tmp_path):
    from cluster.train.ray_entry import run_pretraining

    tokens = write_token_dir(tmp_path / "tokens", "gpt")
    out = run_pretraining(
        tokens_dir=str(tokens), model=ModelSpec(kind="gpt"),
        train=TrainSpec(max_steps=8, warmup_steps=2, eval_every=4, eval_batches=1, checkpoint_every=4),
        scaling=ScalingSpec(num_workers=1, use_gpu=True, cpus_per_worker=1), run_name="gpu-run",
        storage_path=str(tmp_path / "runs"),
    )
    assert out.final_step == 8 and out.metrics["tokens_per_s"] > 0
    if peak_flops(torch.device("cuda"), torch.bfloat16) is not None:
        assert out.metrics["mfu"] is not None and 0 < out.metrics["mfu"] < 1
