"""The GLUE fine-tuning loop (pure torch): the schedule matches transformers', it learns, it resumes exactly,
and two data-parallel ranks see exactly the rows of the one-process global batch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cluster.train.finetune import (
    EncodedSplit,
    encode,
    epoch_order,
    finetune,
    global_batch,
    load_classifier,
    lr_at,
    predict,
    schedule,
)
from data_specs.glue import FinetuneSpec
from tests.unit._registry_helpers import tiny_bert

POS = ["good great fine", "great good nice", "nice fine good"]
NEG = ["bad awful poor", "poor bad sad", "sad awful bad"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def _data(base, n: int = 48):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    texts = [(POS if i % 2 else NEG)[i % 3] for i in range(n)]
    return encode(tok, (texts,), [i % 2 for i in range(n)], 16, regression=False)


def test_schedule_matches_transformers_linear_warmup():
    from transformers import get_linear_schedule_with_warmup

    spec = FinetuneSpec(lr=1e-3, epochs=2.5, batch_size=8, warmup_ratio=0.1)
    per_epoch, total, warmup = schedule(100, spec)
    assert (per_epoch, total, warmup) == (13, 33, 4)  # ceil(100/8)=13; ceil(2.5*13)=33; ceil(3.3)=4
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = get_linear_schedule_with_warmup(opt, warmup, total)
    for step in range(total):
        assert lr_at(step, total, warmup, 1e-3) == pytest.approx(opt.param_groups[0]["lr"], abs=1e-12)
        opt.step()
        sched.step()


def test_global_batches_cover_each_epoch_once_and_are_seeded():
    spec = FinetuneSpec(batch_size=8, seed=3)
    rows = np.concatenate([global_batch(20, spec, s) for s in range(3)])  # one epoch = 3 steps (8, 8, 4)
    assert sorted(rows.tolist()) == list(range(20))
    assert not np.array_equal(epoch_order(20, 3, 0), epoch_order(20, 3, 1))
    assert np.array_equal(global_batch(20, spec, 4), global_batch(20, FinetuneSpec(batch_size=8, seed=3), 4))


def test_encoded_split_pads_pairs_and_keeps_segments(base):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    enc = encode(tok, (["the cat", "a dog sat on the mat"], ["sat", "the log"]), [0, 1], 64, regression=False)
    batch = enc.batch([0, 1])
    assert batch["input_ids"].shape[0] == 2 and batch["attention_mask"].sum(1).tolist() == [
        int(enc.offsets[1] - enc.offsets[0]), int(enc.offsets[2] - enc.offsets[1])]
    assert batch["token_type_ids"].max() == 1  # the second sentence of a BERT pair is segment 1
    assert enc.head(1).labels.tolist() == [0]


def test_learns_a_separable_task_and_predicts(base):
    data = _data(base)
    spec = FinetuneSpec(lr=3e-3, epochs=6, batch_size=8, seed=0)
    model = load_classifier(str(base), 2, ["neg", "pos"], seed=0)
    before = (predict(model, data, 16, "cpu", regression=False) == data.labels).mean()
    state = finetune(model, data, spec, "cpu", regression=False)
    after = (predict(model, data, 16, "cpu", regression=False) == data.labels).mean()
    assert state.step == schedule(len(data), spec)[1] == 36
    assert after == 1.0 and after > before


def test_resume_continues_bit_identically(base):
    """Stop at step 5 (a checkpoint), resume from it: the weights equal those of an uninterrupted run."""
    data = _data(base, 32)
    spec = FinetuneSpec(lr=1e-3, epochs=2, batch_size=4, seed=1, checkpoint_every=5)
    full = load_classifier(str(base), 2, ["neg", "pos"], seed=1)
    finetune(full, data, spec, "cpu", regression=False)

    saved = {}

    class Stop(Exception):
        pass

    def on_checkpoint(state, dicts):
        saved.update(dicts)
        saved["model"] = {k: v.clone() for k, v in dicts["model"].items()}
        raise Stop

    first = load_classifier(str(base), 2, ["neg", "pos"], seed=1)
    with pytest.raises(Stop):
        finetune(first, data, spec, "cpu", regression=False, on_checkpoint=on_checkpoint)
    assert saved["state"]["step"] == 5
    resumed = load_classifier(str(base), 2, ["neg", "pos"], seed=99)  # different head init: the checkpoint wins
    state = finetune(resumed, data, spec, "cpu", regression=False, resume=saved)
    assert state.step == 16
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_two_ranks_take_the_global_batch_between_them(base):
    """The summed, scaled gradients of rank 0 and rank 1 equal the single-process gradient of the global batch."""
    data = _data(base, 10)
    spec = FinetuneSpec(lr=1e-3, epochs=1, batch_size=8, seed=0)

    def grads(rank: int, world: int):
        model = load_classifier(str(base), 2, ["neg", "pos"], seed=0)
        for m in model.modules():  # no dropout (its stream is per rank): the comparison is exact up to float sums
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        captured = {}

        class Capture(Exception):
            pass

        orig = torch.nn.utils.clip_grad_norm_

        def clip(params, max_norm):
            params = list(params)
            captured["g"] = torch.cat([p.grad.flatten() for p in params if p.grad is not None]).clone()
            raise Capture

        torch.nn.utils.clip_grad_norm_ = clip
        try:
            with pytest.raises(Capture):
                finetune(model, data, spec, "cpu", regression=False, rank=rank, world_size=world)
        finally:
            torch.nn.utils.clip_grad_norm_ = orig
        return captured["g"]

    single = grads(0, 1)
    average = (grads(0, 2) + grads(1, 2)) / 2  # what DDP's all-reduce computes
    assert torch.allclose(single, average, atol=1e-6)
    assert math.isfinite(float(single.norm()))


def test_regression_head_trains(base):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base)
    texts = [POS[i % 3] if i % 2 else NEG[i % 3] for i in range(32)]
    data = encode(tok, (texts,), [4.5 if i % 2 else 0.5 for i in range(32)], 16, regression=True)
    assert data.labels.dtype == np.float32
    model = load_classifier(str(base), 1, [], seed=0)
    finetune(model, data, FinetuneSpec(lr=3e-3, epochs=8, batch_size=8), "cpu", regression=True)
    pred = predict(model, data, 16, "cpu", regression=True)
    assert np.corrcoef(pred, data.labels)[0, 1] > 0.9
    assert isinstance(data, EncodedSplit)


def test_select_best_keeps_the_best_weights_and_early_stopping_stops(base):
    """A scripted selection score (best at the 2nd evaluation): the model returned is the one of that step, and
    with patience 2 training stops two evaluations later; a resume keeps the best weights."""
    data = _data(base, 32)
    spec = FinetuneSpec(lr=1e-3, epochs=4, batch_size=8, seed=0, select="best", selection_fraction=0.1,
                        eval_every=2)
    scores = iter([0.1, 0.9, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    snapshots = {}
    model = load_classifier(str(base), 2, ["neg", "pos"], seed=0)

    def evaluate():
        snapshots[len(snapshots)] = {k: v.clone() for k, v in model.state_dict().items()}
        return next(scores)

    state = finetune(model, data, spec, "cpu", regression=False, evaluate=evaluate)
    assert (state.best_step, state.best_score, state.step, state.stopped_early) == (4, 0.9, 16, False)
    for k, v in model.state_dict().items():  # evaluation 2 (step 4) is what came back
        assert torch.equal(v, snapshots[1][k]), k

    stopping = spec.model_copy(update={"early_stopping_patience": 2})
    scores = iter([0.1, 0.9, 0.5, 0.4, 0.3])
    model = load_classifier(str(base), 2, ["neg", "pos"], seed=0)
    snapshots.clear()
    state = finetune(model, data, stopping, "cpu", regression=False, evaluate=evaluate)
    assert (state.best_step, state.step, state.stopped_early) == (4, 8, True)  # evaluations at 2, 4, 6, 8
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshots[1][k]), k

    # A crash after step 6's checkpoint: the resumed run still returns step 4's weights.
    saved = {}

    class Stop(Exception):
        pass

    def on_checkpoint(st, dicts):
        if st.step == 6:
            saved.update({k: v for k, v in dicts.items()})
            raise Stop

    scores = iter([0.1, 0.9, 0.5])
    model = load_classifier(str(base), 2, ["neg", "pos"], seed=0)
    snapshots.clear()
    with pytest.raises(Stop):
        finetune(model, data, stopping.model_copy(update={"checkpoint_every": 6}), "cpu", regression=False,
                 evaluate=evaluate, on_checkpoint=on_checkpoint)
    best_at_4 = snapshots[1]
    assert saved["state"]["best_step"] == 4 and set(saved["best"]) == set(best_at_4)
    scores = iter([0.4])  # step 8: the second evaluation without improvement stops
    resumed = load_classifier(str(base), 2, ["neg", "pos"], seed=5)
    state = finetune(resumed, data, stopping.model_copy(update={"checkpoint_every": 6}), "cpu", regression=False,
                     evaluate=evaluate, resume=saved)
    assert (state.step, state.stopped_early, state.best_step) == (8, True, 4)
    for k, v in resumed.state_dict().items():
        assert torch.equal(v, best_at_4[k]), k


def test_selection_settings_are_checked():
    with pytest.raises(ValueError, match="selection_fraction"):
        FinetuneSpec(select="best")
    with pytest.raises(ValueError, match="select: best"):
        FinetuneSpec(early_stopping_patience=2, selection_fraction=0.1)
