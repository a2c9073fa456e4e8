"""Pure tests of the model factory, masking and training loop (no Ray): CPU, tiny models, seconds each."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from cluster.train.loop import (
    TrainState,
    configure_optimizer,
    load_checkpoint,
    lr_at,
    save_checkpoint,
    train,
)
from cluster.train.masking import mask_tokens
from cluster.train.model import PRESETS, build_model, flops_per_token, peak_flops
from data_specs.pretrain import ModelSpec, TrainSpec
from tests.cluster.helpers import BERT_SPECIAL, GPT_SPECIAL, SEQ_LEN, VOCAB, synthetic_sequences

SPECIAL = {"bert": BERT_SPECIAL, "gpt": GPT_SPECIAL}


def _batches(kind: str, n: int, batch: int = 8, seed: int = 1):
    rows = torch.from_numpy(synthetic_sequences(n * batch, SEQ_LEN, seed, kind))
    return list(rows.split(batch))


def _stream(batches, opened=None):
    """A `train_batches` factory over a list: the stream from the k-th batch on; `opened` records each k."""
    def open_at(k):
        if opened is not None:
            opened.append(k)
        return iter(batches[k:])
    return open_at


def _model(kind: str):
    torch.manual_seed(0)
    return build_model(ModelSpec(kind=kind, preset="tiny"), VOCAB, SEQ_LEN, SPECIAL[kind])


# --- model ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["bert", "gpt"])
def test_build_model_shapes(kind):
    model = _model(kind)
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads) == (2, 64, 2)
    assert cfg.max_position_embeddings >= SEQ_LEN and cfg.vocab_size == VOCAB
    out = model(input_ids=torch.randint(5, VOCAB, (2, SEQ_LEN)))
    assert out.logits.shape == (2, SEQ_LEN, VOCAB)
    assert PRESETS["small"]["gpt"] == dict(n_layer=12, n_embd=768, n_head=12)
    assert PRESETS["small"]["bert"] == dict(n_layer=4, n_embd=512, n_head=8)


def test_overrides_and_flops():
    model = build_model(ModelSpec(kind="gpt", preset="tiny", n_layer=3, n_embd=96, n_head=4), VOCAB, 16, GPT_SPECIAL)
    assert (model.config.n_layer, model.config.n_embd, model.config.n_head) == (3, 96, 4)
    n = sum(p.numel() for p in model.parameters()) - model.transformer.wpe.weight.numel()
    assert flops_per_token(model, 16) == 6 * n + 12 * 3 * 96 * 16
    assert peak_flops(torch.device("cpu"), torch.bfloat16) is None


# --- lr schedule and optimizer ------------------------------------------------------------------------------

def test_lr_schedule_shape():
    spec = TrainSpec(max_steps=100, warmup_steps=10, lr=1e-3, min_lr=1e-4)
    lrs = [lr_at(s, spec) for s in range(101)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)  # linear warmup to the peak
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10]))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # monotone cosine decay
    assert lrs[55] == pytest.approx(1e-4 + 0.5 * 9e-4)  # half-way through the decay: mid-point
    assert lrs[100] == pytest.approx(1e-4) and lr_at(500, spec) == pytest.approx(1e-4)


@pytest.mark.parametrize("kind", ["bert", "gpt"])
def test_optimizer_decays_matrices_only(kind):
    model = _model(kind)
    opt = configure_optimizer(model, TrainSpec(weight_decay=0.1))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() == 1 for p in no_decay["params"])
    names = {id(p): n for n, p in model.named_parameters()}
    undecayed = {names[id(p)] for p in no_decay["params"]}
    assert any("bias" in n for n in undecayed) and any(("LayerNorm" in n or "ln_" in n) for n in undecayed)
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert not opt.defaults.get("fused")  # fused only on CUDA


# --- masking ------------------------------------------------------------------------------------------------

def test_masking_proportions_and_specials():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (200, 512))
    ids[:, 0], ids[:, -1], ids[:, 100:110] = 2, 3, 0  # cls, sep, a pad run
    corrupted, labels = mask_tokens(ids, mask_id=4, vocab_size=1000, special_ids=[0, 1, 2, 3, 4],
                                    probability=0.15, generator=gen)
    selected = labels != -100
    special = torch.isin(ids, torch.tensor([0, 1, 2, 3, 4]))
    assert not (selected & special).any() and torch.equal(corrupted[special], ids[special])
    assert selected.float()[~special].mean().item() == pytest.approx(0.15, abs=0.005)
    assert torch.equal(labels[selected], ids[selected])
    n = selected.sum().item()
    masked = (corrupted[selected] == 4).sum().item() / n
    unchanged = (corrupted[selected] == ids[selected]).sum().item() / n
    assert masked == pytest.approx(0.8, abs=0.01)
    assert unchanged == pytest.approx(0.1 + 0.1 / 1000, abs=0.01)  # 10% kept + random draws that hit the same id
    assert 1 - masked - unchanged == pytest.approx(0.1, abs=0.01)
    assert torch.equal(corrupted[~selected], ids[~selected])
    again = mask_tokens(ids, 4, 1000, [0, 1, 2, 3, 4], 0.15, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], corrupted)  # the generator alone decides


# --- the loop -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["gpt", "bert"])
def test_loss_falls_on_cpu(kind):
    spec = TrainSpec(max_steps=30, micro_batch_size=8, grad_accum=2, lr=3e-3, min_lr=3e-4, warmup_steps=5,
                     eval_every=10, eval_batches=2, checkpoint_every=100)
    steps, evals, ckpts = [], [], []
    state = train(_model(kind), _stream(_batches(kind, 60)), lambda: iter(_batches(kind, 2, seed=9)), spec,
                  kind, SPECIAL[kind], VOCAB, "cpu", on_step=steps.append, on_eval=evals.append,
                  on_checkpoint=lambda s, d: ckpts.append(s.step))
    assert state.step == 30 and state.batches_consumed == 60 and state.tokens_seen == 60 * 8 * SEQ_LEN
    assert [e["step"] for e in evals] == [0, 10, 20, 30] and ckpts == [30]  # step 0 baseline, every 10, end
    first, last = sum(m["loss"] for m in steps[:3]) / 3, sum(m["loss"] for m in steps[-3:]) / 3
    assert last < 0.7 * first, (first, last)
    assert evals[-1]["val_loss"] < 0.7 * evals[0]["val_loss"]
    assert evals[-1]["val_ppl"] == pytest.approx(math.exp(evals[-1]["val_loss"]))
    assert state.first_val_loss == evals[0]["val_loss"] and state.last_val_loss == evals[-1]["val_loss"]
    assert {"loss", "lr", "grad_norm", "tokens_per_s"} <= set(steps[0]) and "mfu" not in steps[0]
    assert state.tokens_per_s > 0 and state.mfu is None
    assert steps[0]["lr"] == pytest.approx(3e-3 / 5) and steps[-1]["lr"] < steps[10]["lr"]


@pytest.mark.parametrize("kind", ["gpt", "bert"])
def test_checkpoint_resume_reproduces_losses(kind, tmp_path):
    spec = TrainSpec(max_steps=12, grad_accum=2, lr=3e-3, min_lr=3e-4, warmup_steps=2, eval_every=100,
                     eval_batches=1, checkpoint_every=6)
    data = _batches(kind, 30)
    val = lambda: iter(_batches(kind, 1, seed=9))  # noqa: E731
    saved, losses = {}, []

    def keep(state: TrainState, dicts):
        if state.step == 6:
            save_checkpoint(tmp_path / "ckpt", dicts)
            saved["copy"] = copy.deepcopy(dicts)

    full = train(_model(kind), _stream(data), val, spec, kind, SPECIAL[kind], VOCAB, "cpu",
                 on_step=lambda m: losses.append(m["loss"]), on_checkpoint=keep)
    assert full.step == 12

    resumed_losses = []
    torch.manual_seed(123)  # a different init and global RNG: everything must come from the checkpoint
    fresh = build_model(ModelSpec(kind=kind, preset="tiny"), VOCAB, SEQ_LEN, SPECIAL[kind])
    ckpt = load_checkpoint(tmp_path / "ckpt")
    assert ckpt["train_state"]["step"] == 6 and ckpt["train_state"]["batches_consumed"] == 12
    opened, batch_steps = [], []
    resumed = train(fresh, _stream(data, opened), val, spec, kind, SPECIAL[kind], VOCAB, "cpu", resume=ckpt,
                    on_step=lambda m: resumed_losses.append(m["loss"]),
                    on_batch=lambda step, inputs: batch_steps.append(step))
    assert opened == [12]  # the stream was opened at the saved position: no consumed batch was read again
    assert batch_steps == [s for s in range(7, 13) for _ in range(2)]  # grad_accum micro-batches per step
    assert resumed.step == 12 and resumed.batches_consumed == 24
    assert resumed_losses == pytest.approx(losses[6:], rel=1e-5, abs=1e-6)
    assert resumed.last_val_loss == pytest.approx(full.last_val_loss, rel=1e-5)
    assert resumed.first_val_loss == full.first_val_loss  # carried over, not re-measured


def test_stream_too_short_is_an_error():
    spec = TrainSpec(max_steps=5, warmup_steps=1, eval_batches=1)
    with pytest.raises(RuntimeError, match="ran out"):
        train(_model("gpt"), _stream(_batches("gpt", 3)), lambda: iter(_batches("gpt", 1)), spec, "gpt",
              GPT_SPECIAL, VOCAB, "cpu")


def test_ddp_all_reduces_once_per_step(tmp_path, monkeypatch):
    """With grad_accum=3, the first two micro-batches run under no_sync(): one all-reduce per optimizer step."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        entered = []
        original = DDP.no_sync
        monkeypatch.setattr(DDP, "no_sync", lambda self: (entered.append(1), original(self))[1])
        model = DDP(_model("gpt"))
        spec = TrainSpec(max_steps=4, grad_accum=3, warmup_steps=1, eval_every=100, eval_batches=1)
        state = train(model, _stream(_batches("gpt", 12)), lambda: iter(_batches("gpt", 1)), spec, "gpt",
                      GPT_SPECIAL, VOCAB, "cpu", is_ddp=True)
        assert state.step == 4 and len(entered) == 4 * 2
    finally:
        dist.destroy_process_group()
