"""The pretraining loop, nanoGPT-style, in plain PyTorch: no Ray, no MLflow (the Ray worker wires it up).

What it does per optimizer step: `grad_accum` micro-batches (DDP all-reduce on the last one only, via
`no_sync()`), loss scaled by 1/grad_accum, global-norm clipping, AdamW with decoupled weight decay on matrix
weights only, a learning rate from linear warmup + cosine decay, bf16 autocast on GPU (fp32 on CPU).
Every `eval_every` steps (and at step 0 and the end) it measures validation loss and perplexity; every
`checkpoint_every` steps (and at the end) it hands the full training state to `on_checkpoint`.

Inputs: a model (optionally DDP-wrapped), a factory `train_batches(start)` of this rank's (B, T) token-id stream
from its `start`-th micro-batch on, a factory of validation iterators, a `TrainSpec`. Output: the final
`TrainState`. Resuming: pass this rank's dict given to `on_checkpoint` as `resume=`; the loop restores weights,
optimizer, this rank's RNGs and step, and opens the stream at the saved position (`batches_consumed`): the
stream seeks there (`cluster.train.token_stream`), nothing consumed is read again.

Runs on CPU in a unit test: `train(build_model(...), lambda k: iter(batches[k:]), lambda: iter(val), spec, "gpt", ...)`.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from cluster.train.masking import IGNORE_INDEX, mask_tokens
from cluster.train.model import flops_per_token, peak_flops
from data_specs.pretrain import TrainSpec
from tasks.common.durable import replace_durably, write_bytes_durably

CHECKPOINT_FILE = "checkpoint.pt"  # torch.save of the dict handed to on_checkpoint
STATE_FILE = "train_state.json"  # the TrainState alone, human-readable
_UNTIMED_STEPS = 3  # the first steps of a session pay for allocator warm-up and data start-up: not steady state


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint."""

    step: int = 0  # optimizer steps done
    tokens_seen: int = 0  # tokens trained on, all ranks together
    batches_consumed: int = 0  # micro-batches this rank drew from its train stream: the data position
    best_val_loss: float = math.inf
    first_val_loss: float | None = None  # at step 0 of the first session: the untrained model
    last_val_loss: float | None = None
    last_train_loss: float | None = None  # this rank's mean micro-batch loss at the last step
    tokens_per_s: float | None = None  # steady state of the latest session (first steps excluded), all ranks
    mfu: float | None = None  # steady-state model FLOPs utilisation per GPU; None on CPU / unknown GPU


def lr_at(step: int, spec: TrainSpec) -> float:
    """Linear warmup from lr/warmup to lr over `warmup_steps`, then cosine down to `min_lr` at `max_steps`."""
    if step < spec.warmup_steps:
        return spec.lr * (step + 1) / spec.warmup_steps
    if step >= spec.max_steps:
        return spec.min_lr
    progress = (step - spec.warmup_steps) / max(1, spec.max_steps - spec.warmup_steps)  # 0 → 1
    coeff = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 → 0
    return spec.min_lr + coeff * (spec.lr - spec.min_lr)


def configure_optimizer(model: torch.nn.Module, spec: TrainSpec) -> torch.optim.AdamW:
    """AdamW with weight decay on ≥2-D tensors (matmul weights, embeddings) only; biases and LayerNorm gains
    are left undecayed. Fused kernels when the parameters are on CUDA."""
    params = [p for p in _unwrap(model).parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": spec.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    fused = bool(params) and params[0].device.type == "cuda"
    return torch.optim.AdamW(groups, lr=spec.lr, betas=(spec.beta1, spec.beta2), fused=fused)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """'auto' → bf16 on CUDA, none (fp32) on CPU; 'bf16' forces it; 'fp32' turns autocast off."""
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16


def save_checkpoint(directory: str | Path, state_dicts: dict[str, Any]) -> None:
    """Write the dict given to `on_checkpoint` into `directory` (checkpoint.pt + train_state.json), each file
    through a temporary name, fsync and rename (`tasks.common.durable`): a power loss leaves the old file or the
    whole new one, never a short one under the final name."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{CHECKPOINT_FILE}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        torch.save(state_dicts, tmp)
        replace_durably(tmp, directory / CHECKPOINT_FILE)
    finally:
        tmp.unlink(missing_ok=True)
    write_bytes_durably(directory / STATE_FILE, json.dumps(state_dicts["train_state"], indent=2).encode())


def load_checkpoint(directory: str | Path) -> dict[str, Any]:
    """Read what `save_checkpoint` wrote (tensors land on CPU; `train` moves them)."""
    return torch.load(Path(directory) / CHECKPOINT_FILE, map_location="cpu", weights_only=True)


def train(
    model: torch.nn.Module,
    train_batches: Callable[[int], Iterator[Tensor]],
    val_batches: Callable[[], Iterator[Tensor]],
    spec: TrainSpec,
    model_kind: str,
    special: dict[str, int],
    vocab_size: int,
    device: torch.device | str,
    *,
    resume: dict[str, Any] | None = None,
    on_step: Callable[[dict[str, float]], None] | None = None,
    on_eval: Callable[[dict[str, float]], None] | None = None,
    on_checkpoint: Callable[[TrainState, dict[str, Any]], None] | None = None,
    on_batch: Callable[[int, dict[str, Tensor]], None] | None = None,
    is_ddp: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> TrainState:
    """Train until `spec.max_steps`; return the final state.

    `model` is on `device` already (DDP-wrapped when `is_ddp`). `train_batches(k)` returns an iterator of this
    rank's (B, T) int tensors from its k-th micro-batch on (it must last to `max_steps * grad_accum`, e.g.
    repeat epochs); the loop closes it at the end if it has `close()`. `val_batches()` returns a fresh
    validation iterator (the first `eval_batches` are used).
    Callbacks: `on_step` gets step, loss, lr, grad_norm, tokens_per_s (all ranks), mfu (GPU only);
    `on_eval` gets step, val_loss, val_ppl; `on_checkpoint` gets the state and a dict of state dicts
    (model, optimizer, train_state, rng: this rank's) that `resume=` accepts; `on_batch` gets the step being
    trained (1-based) and each micro-batch's model inputs, for tracing. Every rank calls every callback equally
    often. `resume` must be this rank's own dict: the RNG states in it differ per rank.
    """
    device = torch.device(device)
    raw = _unwrap(model)
    amp_dtype = autocast_dtype(spec.precision, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    optimizer = configure_optimizer(raw, spec)
    mask_gen = torch.Generator().manual_seed(spec.seed + rank)  # CPU: masks are drawn before the copy to device
    state = TrainState()
    if resume is not None:
        raw.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        state = TrainState(**resume["train_state"])
        _set_rng(resume["rng"], mask_gen, device)
    else:
        torch.manual_seed(spec.seed + rank)  # dropout differs per rank; weights were seeded by the caller

    special_ids = sorted({v for k, v in special.items() if k.endswith("_id") and v is not None})
    prepare = _batch_preparer(model_kind, special, special_ids, vocab_size, spec.mlm_probability, device)
    autocast = (
        (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype is not None else contextlib.nullcontext
    )
    fpt: float | None = None
    peak = peak_flops(device, amp_dtype)
    timed_tokens, timed_s, session_steps = 0, 0.0, 0
    evaluated_at, checkpointed_at = -1, -1

    def run_eval() -> None:
        nonlocal evaluated_at
        val_loss = evaluate(raw, val_batches, spec, prepare_fn=prepare, autocast=autocast)
        state.last_val_loss = val_loss
        state.first_val_loss = val_loss if state.first_val_loss is None else state.first_val_loss
        state.best_val_loss = min(state.best_val_loss, val_loss)
        evaluated_at = state.step
        if on_eval is not None:
            on_eval({"step": state.step, "val_loss": val_loss, "val_ppl": _ppl(val_loss)})

    def run_checkpoint() -> None:
        nonlocal checkpointed_at
        checkpointed_at = state.step
        if on_checkpoint is not None:
            on_checkpoint(state, {
                "model": raw.state_dict(),
                "optimizer": optimizer.state_dict(),
                "train_state": asdict(state),
                "rng": _get_rng(mask_gen, device),
            })

    if state.step == 0 and state.first_val_loss is None:
        run_eval()  # the untrained model's loss: the baseline every later evaluation is compared with
    batches = train_batches(state.batches_consumed)  # opened at the saved position: nothing is read twice
    try:
        model.train()
        while state.step < spec.max_steps:
            t0 = time.perf_counter()
            lr = lr_at(state.step, spec)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum = torch.zeros((), device=device)
            step_tokens, data_s = 0, 0.0
            for micro in range(spec.grad_accum):
                t_data = time.perf_counter()
                batch = next(batches, None)
                data_s += time.perf_counter() - t_data
                if batch is None:
                    raise RuntimeError(f"the train stream ran out at step {state.step}: repeat epochs in "
                                       "train_batches")
                state.batches_consumed += 1
                inputs = prepare(batch, mask_gen)
                if on_batch is not None:
                    on_batch(state.step + 1, inputs)
                step_tokens += inputs["input_ids"].numel()
                last = micro == spec.grad_accum - 1
                # all-reduce once per step: the other micro-batches only accumulate locally
                sync = contextlib.nullcontext() if (last or not is_ddp) else model.no_sync()
                with sync:
                    with autocast():
                        loss = model(**inputs).loss / spec.grad_accum
                    loss.backward()
                loss_sum += loss.detach()
            clip = spec.grad_clip if spec.grad_clip is not None else math.inf  # inf: measure the norm only
            grad_norm = torch.nn.utils.clip_grad_norm_(raw.parameters(), clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            train_loss = loss_sum.item()  # waits for the GPU: the step's time below is real
            dt = time.perf_counter() - t0

            state.step += 1
            state.tokens_seen += step_tokens * world_size
            state.last_train_loss = train_loss
            session_steps += 1
            tokens_per_s = step_tokens * world_size / dt
            metrics: dict[str, float] = {
                "step": state.step,
                "loss": train_loss,
                "lr": lr,
                "grad_norm": float(grad_norm),
                "tokens_per_s": tokens_per_s,
                "tokens_seen": state.tokens_seen,
                "data_s": data_s,  # time this step waited for its batches: a data-loading stall shows here
            }
            if peak is not None:
                fpt = fpt or flops_per_token(raw, inputs["input_ids"].shape[1])
                metrics["mfu"] = fpt * step_tokens / dt / peak  # per GPU, as nanoGPT's estimate_mfu
            if session_steps > _UNTIMED_STEPS:
                timed_tokens += step_tokens * world_size
                timed_s += dt
                state.tokens_per_s = timed_tokens / timed_s
                if peak is not None:
                    state.mfu = fpt * (timed_tokens / world_size) / timed_s / peak
            else:
                state.tokens_per_s = tokens_per_s  # too few steps for a steady figure yet: the latest one
                state.mfu = metrics.get("mfu")
            if on_step is not None:
                on_step(metrics)
            if state.step % spec.eval_every == 0:
                run_eval()
            if state.step % spec.checkpoint_every == 0:
                run_checkpoint()
    finally:
        getattr(batches, "close", lambda: None)()  # a prefetching stream stops its reader thread

    if evaluated_at != state.step:
        run_eval()
    if checkpointed_at != state.step:
        run_checkpoint()
    return state


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    val_batches: Callable[[], Iterator[Tensor]],
    spec: TrainSpec,
    *,
    prepare_fn: Callable[[Tensor, torch.Generator], dict[str, Tensor]],
    autocast: Callable[[], Any],
) -> float:
    """Mean loss over the first `eval_batches` validation batches (same BERT masks at every evaluation)."""
    model.eval()
    gen = torch.Generator().manual_seed(spec.seed)  # fixed masks: evaluations are comparable across steps
    losses = []
    for i, batch in enumerate(val_batches()):
        if i >= spec.eval_batches:
            break
        with autocast():
            losses.append(model(**prepare_fn(batch, gen)).loss.float())
    model.train()
    if not losses:
        raise RuntimeError("the validation stream is empty")
    return torch.stack(losses).mean().item()


def _batch_preparer(
    model_kind: str,
    special: dict[str, int],
    special_ids: list[int],
    vocab_size: int,
    mlm_probability: float,
    device: torch.device,
) -> Callable[[Tensor, torch.Generator], dict[str, Tensor]]:
    """(B, T) ids → model kwargs on `device`: BERT gets masked ids + labels, GPT gets labels = ids (the model
    shifts them). Padding (if any) is masked out of attention and loss; for GPT a pad id equal to eos is not
    padding (packed streams separate documents with eos)."""
    pad = special.get("pad_id")
    if model_kind == "gpt" and pad is not None and pad == special.get("eos_id"):
        pad = None

    def prepare(batch: Tensor, gen: torch.Generator) -> dict[str, Tensor]:
        ids = batch.long()  # (B, T); CPU in practice, so the pad check below does not wait for a GPU
        has_pad = pad is not None and bool((ids == pad).any())
        if model_kind == "bert":
            inputs, labels = mask_tokens(ids, special["mask_id"], vocab_size, special_ids, mlm_probability, gen)
        else:
            inputs, labels = ids, (ids.masked_fill(ids == pad, IGNORE_INDEX) if has_pad else ids)
        out = {"input_ids": inputs, "labels": labels}
        if has_pad:
            out["attention_mask"] = (ids != pad).long()
        return {k: v.to(device, non_blocking=True) for k, v in out.items()}

    return prepare


def _ppl(loss: float) -> float:
    return math.exp(min(loss, 80.0))  # exp overflows past ~709; 80 is already meaningless as a perplexity


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)


def _get_rng(mask_gen: torch.Generator, device: torch.device) -> dict[str, Any]:
    rng = {"torch": torch.get_rng_state(), "mask": mask_gen.get_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return rng


def _set_rng(rng: dict[str, Any], mask_gen: torch.Generator, device: torch.device) -> None:
    torch.set_rng_state(rng["torch"])
    mask_gen.set_state(rng["mask"])
    if device.type == "cuda" and "cuda" in rng:
        torch.cuda.set_rng_state(rng["cuda"], device)
