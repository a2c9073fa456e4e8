"""GLUE fine-tuning in plain PyTorch, as Hugging Face `run_glue.py` + `Trainer` do it: no Ray, no MLflow.

What it reproduces from `Trainer` (transformers 5): AdamW (β 0.9/0.999, ε 1e-8) with weight decay on every
parameter but biases and LayerNorm weights, a linear schedule with `ceil(warmup_ratio · steps)` warmup steps
(lr 0 at the first warmup step, as `get_linear_schedule_with_warmup`), global-norm clipping, a seeded shuffle
per epoch, `ceil(epochs · ceil(n / batch))` optimizer steps, the mean loss over the batch (cross-entropy, or
MSE for STS-B). Batches are padded to their longest row (`DataCollatorWithPadding`), not to `max_length`.

Data parallel: the global batch of step s is the same rows whatever the number of workers; rank r takes every
world-th row and scales its summed loss so that DDP's gradient average equals the single-process mean. A rank
whose share of a short last batch is empty runs one row with weight 0 (DDP needs every rank's backward).

Runs on CPU in a unit test: `finetune(model, encoded, spec, "cpu", regression=False)`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from data_specs.glue import FinetuneSpec

_UNTIMED_STEPS = 3  # allocator warm-up: not steady state


@dataclass
class EncodedSplit:
    """Tokenized rows in flat arrays (compact to ship to Ray workers): row i is `ids[offsets[i]:offsets[i+1]]`."""

    ids: np.ndarray  # (total tokens,) int32
    offsets: np.ndarray  # (n + 1,) int64
    type_ids: np.ndarray | None  # (total tokens,) int8 segment ids for BERT-style pairs, else None
    labels: np.ndarray  # (n,) int64 label ids, or float32 scores for regression
    pad_id: int

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int) -> EncodedSplit:
        end = int(self.offsets[min(n, len(self))])
        return EncodedSplit(self.ids[:end], self.offsets[: min(n, len(self)) + 1],
                            None if self.type_ids is None else self.type_ids[:end], self.labels[:n], self.pad_id)

    def batch(self, rows: Sequence[int]) -> dict[str, Tensor]:
        """Rows padded (right) to the longest one: input_ids, attention_mask, token_type_ids?, labels."""
        lengths = [int(self.offsets[i + 1] - self.offsets[i]) for i in rows]
        width = max(lengths)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)  # (B, T)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        types = np.zeros((len(rows), width), dtype=np.int64) if self.type_ids is not None else None
        for j, (i, n) in enumerate(zip(rows, lengths)):
            a = int(self.offsets[i])
            ids[j, :n] = self.ids[a : a + n]
            mask[j, :n] = 1
            if types is not None:
                types[j, :n] = self.type_ids[a : a + n]
        out = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
               "labels": torch.from_numpy(self.labels[list(rows)])}
        if types is not None:
            out["token_type_ids"] = torch.from_numpy(types)
        return out


def encode(tokenizer: Any, texts: tuple[list[str], ...], labels: Sequence, max_length: int,
           regression: bool) -> EncodedSplit:
    """Tokenize single sentences or pairs (truncated longest-first to `max_length`) into an `EncodedSplit`.

    The encoding is the served model's (`tasks.registry.glue_pyfunc.encode_rows`): BERT-style pairs with segment
    ids, GPT-style pairs joined by eos without them.
    """
    from tasks.registry.glue_pyfunc import encode_rows

    enc = encode_rows(tokenizer, texts, max_length)
    lengths = np.fromiter((len(r) for r in enc["input_ids"]), dtype=np.int64, count=len(enc["input_ids"]))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter((t for r in enc["input_ids"] for t in r), dtype=np.int32, count=int(offsets[-1]))
    types = None
    if "token_type_ids" in enc and any(any(r) for r in enc["token_type_ids"]):
        types = np.fromiter((t for r in enc["token_type_ids"] for t in r), dtype=np.int8, count=int(offsets[-1]))
    label_arr = np.asarray(labels, dtype=np.float32 if regression else np.int64)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return EncodedSplit(flat, offsets, types, label_arr, int(pad))


@dataclass
class FinetuneState:
    """Where fine-tuning stands; saved in every checkpoint."""

    step: int = 0
    total_steps: int = 0
    examples_seen: int = 0
    last_loss: float | None = None
    examples_per_s: float | None = None  # steady state of this session (first steps excluded), all ranks
    train_s: float = 0.0  # seconds in optimizer steps this session
    best_score: float | None = None  # model selection (spec.select: best): the best score on the carved-off rows
    best_step: int | None = None
    evals_since_best: int = 0
    stopped_early: bool = False


def schedule(n_train: int, spec: FinetuneSpec) -> tuple[int, int, int]:
    """(steps per epoch, total steps, warmup steps), as `Trainer` counts them."""
    per_epoch = math.ceil(n_train / spec.batch_size)
    total = max(1, math.ceil(spec.epochs * per_epoch))
    return per_epoch, total, math.ceil(spec.warmup_ratio * total)


def lr_at(step: int, total: int, warmup: int, lr: float) -> float:
    """`get_linear_schedule_with_warmup`: step/warmup · lr, then linear to 0 at `total`."""
    if step < warmup:
        return lr * step / max(1, warmup)
    return lr * max(0.0, (total - step) / max(1, total - warmup))


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The row order of one epoch: a permutation seeded by (seed, epoch), the same on every rank and restart."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def global_batch(n: int, spec: FinetuneSpec, step: int) -> np.ndarray:
    """Row indices of optimizer step `step` (the last batch of an epoch may be short)."""
    per_epoch = math.ceil(n / spec.batch_size)
    epoch, b = divmod(step, per_epoch)
    return epoch_order(n, spec.seed, epoch)[b * spec.batch_size : (b + 1) * spec.batch_size]


def configure_optimizer(model: torch.nn.Module, spec: FinetuneSpec) -> torch.optim.AdamW:
    """AdamW as `Trainer` builds it: no decay on biases and LayerNorm weights (every ≥2-D tensor decays)."""
    params = [p for p in _unwrap(model).parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": spec.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    fused = bool(params) and params[0].device.type == "cuda"
    return torch.optim.AdamW(groups, lr=spec.lr, betas=(0.9, 0.999), eps=1e-8, fused=fused)


def finetune(
    model: torch.nn.Module,
    train: EncodedSplit,
    spec: FinetuneSpec,
    device: torch.device | str,
    *,
    regression: bool,
    resume: dict[str, Any] | None = None,
    on_step: Callable[[dict[str, float]], None] | None = None,
    on_checkpoint: Callable[[FinetuneState, dict[str, Any]], None] | None = None,
    is_ddp: bool = False,
    rank: int = 0,
    world_size: int = 1,
    autocast_dtype: torch.dtype | None = None,
    evaluate: Callable[[], float] | None = None,
) -> FinetuneState:
    """Fine-tune `model` (already on `device`, DDP-wrapped when `is_ddp`) for the spec's epochs; return the state.

    `on_checkpoint` gets the state and {model, optimizer, state, rng[, best]} every `checkpoint_every` steps and
    at the end; pass that dict back as `resume=` to continue exactly where it stopped.

    Model selection (`spec.select: best`, as `Trainer`'s load_best_model_at_end): `evaluate()` scores the model
    on the rows carved off for selection (higher is better) every `eval_every` steps, else at every epoch's
    end, and at the last step. The best weights are kept (in the checkpoints too, so a resume keeps them) and
    loaded back before the final checkpoint; `early_stopping_patience` evaluations without improvement stop
    training early (the same decision on every rank: each scores the same rows with the same weights).
    """
    device = torch.device(device)
    raw = _unwrap(model)
    optimizer = configure_optimizer(raw, spec)
    per_epoch, total, warmup = schedule(len(train), spec)
    state = FinetuneState(total_steps=total)
    selecting = spec.select == "best" and evaluate is not None
    best: dict[str, Tensor] | None = None
    if resume is not None:
        raw.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        state = FinetuneState(**resume["state"])
        best = resume.get("best")
        torch.set_rng_state(resume["rng"]["torch"])
        if device.type == "cuda" and "cuda" in resume["rng"]:
            torch.cuda.set_rng_state(resume["rng"]["cuda"], device)
    else:
        torch.manual_seed(spec.seed + rank)  # dropout streams differ per rank; weights came from the caller
    autocast = (lambda: torch.autocast(device.type, dtype=autocast_dtype)) if autocast_dtype else contextlib.nullcontext
    timed_rows, timed_s, session_steps, checkpointed_at = 0, 0.0, 0, -1
    state.train_s = 0.0

    def checkpoint() -> None:
        nonlocal checkpointed_at
        checkpointed_at = state.step
        if on_checkpoint is not None:
            rng = {"torch": torch.get_rng_state()}
            if device.type == "cuda":
                rng["cuda"] = torch.cuda.get_rng_state(device)
            saved = {"model": raw.state_dict(), "optimizer": optimizer.state_dict(), "state": asdict(state), "rng": rng}
            if best is not None:
                saved["best"] = best
            on_checkpoint(state, saved)

    def select() -> bool:
        """Score the model on the selection rows; keep it if best; True when early stopping says stop."""
        nonlocal best
        score = float(evaluate())
        if state.best_score is None or score > state.best_score:
            state.best_score, state.best_step, state.evals_since_best = score, state.step, 0
            best = {k: v.detach().to("cpu", copy=True) for k, v in raw.state_dict().items()}
        else:
            state.evals_since_best += 1
        model.train()
        patience = spec.early_stopping_patience
        return patience is not None and state.evals_since_best >= patience

    model.train()
    while state.step < total:
        t0 = time.perf_counter()
        lr = lr_at(state.step, total, warmup, spec.lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        rows = global_batch(len(train), spec, state.step)
        mine = rows[rank::world_size]
        weight = 1.0
        if len(mine) == 0:  # a short last batch left this rank nothing: one row, no weight
            mine, weight = rows[:1], 0.0
        batch = {k: v.to(device, non_blocking=True) for k, v in train.batch(mine).items()}
        labels = batch.pop("labels")
        with autocast():
            logits = model(**batch).logits  # (B, num_labels)
        per_row = _per_row_loss(logits.float(), labels, regression)
        # DDP averages gradients over ranks: scale so the average is the mean over the *global* batch.
        loss = per_row.sum() * weight * world_size / len(rows)
        loss.backward()
        clip = spec.grad_clip if spec.grad_clip is not None else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(raw.parameters(), clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        batch_loss = per_row.detach().mean().item()  # this rank's rows; waits for the device: dt is real
        dt = time.perf_counter() - t0
        state.step += 1
        state.examples_seen += len(rows)
        state.last_loss = batch_loss
        state.train_s += dt
        session_steps += 1
        if session_steps > _UNTIMED_STEPS:
            timed_rows, timed_s = timed_rows + len(rows), timed_s + dt
            state.examples_per_s = timed_rows / timed_s
        else:
            state.examples_per_s = len(rows) / dt
        if on_step is not None:
            on_step({"step": state.step, "loss": batch_loss, "lr": lr, "grad_norm": float(grad_norm),
                     "examples_per_s": len(rows) / dt, "epoch": state.step / per_epoch})
        due = state.step % spec.eval_every == 0 if spec.eval_every else state.step % per_epoch == 0
        if selecting and (due or state.step == total) and select():
            state.stopped_early = state.step < total
            break
        if state.step % spec.checkpoint_every == 0 and state.step < total:
            checkpoint()
    if selecting and best is not None and state.best_step != state.step:
        raw.load_state_dict(best)  # the final checkpoint, the saved model and its predictions: the best one
    if checkpointed_at != state.step:
        checkpoint()
    return state


def _per_row_loss(logits: Tensor, labels: Tensor, regression: bool) -> Tensor:
    if regression:
        return torch.nn.functional.mse_loss(logits.squeeze(-1), labels.float(), reduction="none")
    return torch.nn.functional.cross_entropy(logits, labels, reduction="none")


@torch.no_grad()
def predict_with_scores(model: torch.nn.Module, split: EncodedSplit, batch_size: int, device: torch.device | str, *,
                        regression: bool, autocast_dtype: torch.dtype | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(label ids (argmax) or regression scores, and each row's score: the predicted label's softmax probability,
    or the regression output itself) for every row of `split`, in order: what the served pyfunc returns."""
    device = torch.device(device)
    raw = _unwrap(model)
    raw.eval()
    preds, scores = [], []
    autocast = (lambda: torch.autocast(device.type, dtype=autocast_dtype)) if autocast_dtype else contextlib.nullcontext
    for start in range(0, len(split), batch_size):
        batch = split.batch(range(start, min(start + batch_size, len(split))))
        batch.pop("labels")
        with autocast():
            logits = raw(**{k: v.to(device) for k, v in batch.items()}).logits.float()  # (B, num_labels)
        if regression:
            preds.append(logits.squeeze(-1).cpu().numpy())
            scores.append(preds[-1])
        else:
            best, best_id = logits.softmax(-1).max(-1)
            preds.append(best_id.cpu().numpy())
            scores.append(best.cpu().numpy())
    raw.train()
    if not preds:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(preds), np.concatenate(scores)


def predict(model: torch.nn.Module, split: EncodedSplit, batch_size: int, device: torch.device | str, *,
            regression: bool, autocast_dtype: torch.dtype | None = None) -> np.ndarray:
    """Label ids (argmax) or regression scores for every row of `split`, in order."""
    return predict_with_scores(model, split, batch_size, device, regression=regression,
                               autocast_dtype=autocast_dtype)[0]


def load_classifier(model_dir: str, num_labels: int, label_names: Sequence[str], *, seed: int) -> Any:
    """`AutoModelForSequenceClassification` over a pretrained folder (any head replaced), labels named.

    The new head's initial weights come from `seed`, so every rank and every rerun starts identical. A GPT-style
    model gets `pad_token_id` (its eos) so it can find each row's last token.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(model_dir)
    config.num_labels = num_labels
    config.problem_type = "regression" if num_labels == 1 else "single_label_classification"
    if label_names:
        config.id2label = dict(enumerate(label_names))
        config.label2id = {name: i for i, name in enumerate(label_names)}
    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = getattr(config, "eos_token_id", None)
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_pretrained(model_dir, config=config)


def model_context(config: Any) -> int | None:
    """Positions the model can attend to (BERT max_position_embeddings, GPT-2 n_positions)."""
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)
