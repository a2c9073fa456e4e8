"""The pieces of one GLUE task's evaluation (`tasks.glue.task_run` puts them together): its data and the rows
carved off for model selection, one fine-tuning job per seed (reused when already finished), and the scores
over the seeds. No Prefect, no MLflow.

    scores = score_seeds("rte", data, [run_seed(...) for each seed])
    scores.results["rte"]  -> {"accuracy": mean over seeds, "n_train": 2490, "n_eval": 277}
    scores.spread["rte"]   -> {"accuracy": sample std over seeds}

**A finished job is reused, never retrained.** Each seed's job is named by a fingerprint of what training
reads: the base model's weights, the task, the training rows, the max length used and the training
hyperparameters. Evaluation-only settings (`max_eval_examples`, `eval_batch_size`, `checkpoint_every`, the dev
files, the gate, contamination) are not in it. A job whose `LATEST.json` says finished and whose final model
is on disk is reused: its stored dev predictions when the dev rows are the same, else the saved model
predicts the new dev rows here. An unfinished job resumes from its checkpoint (`run_finetuning`).

**Seeds** (`GlueSpec.seeds`): each seed is its own job (head initialisation, dropout and shuffle differ). The
task's scores are the means over seeds, with the sample standard deviation beside them, and every seed's dev
predictions go into the record (the paired bootstrap averages them). The first seed's model is registered.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import tempfile
from dataclasses import dataclass, field
from typing import Any

from data_specs import fingerprint
from data_specs.glue import FinetuneSpec, GlueSpec
from tasks.shards.core import write_bytes_atomic
from tasks.glue.data import GlueExamples, load_glue_split
from tasks.glue.tasks import TASKS, result_key

# FinetuneSpec fields that change nothing training does: left out of the job fingerprint.
NOT_TRAINING: frozenset[str] = frozenset({"eval_batch_size", "max_eval_examples", "checkpoint_every"})
RESULT_FILE = "result.json"  # in the job folder beside LATEST.json: the finished job's outputs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskData:
    """A task's training rows, the rows carved off them for model selection, and its dev splits."""

    train: GlueExamples
    evals: dict[str, GlueExamples]
    selection: GlueExamples | None = None

    def identities(self) -> dict[str, str]:
        """split -> "sha256:<hex>" of the file read, or "hub:<source>"."""
        return {split: (f"sha256:{ex.sha256}" if ex.sha256 else f"hub:{ex.source}")
                for split, ex in [("train", self.train), *self.evals.items()]}


def load_task_data(task_name: str, hp: FinetuneSpec, spec: GlueSpec) -> TaskData:
    """The task's train split (first `max_train_examples` rows) and dev splits (first `max_eval_examples`)."""
    hub = {"hub_repo": spec.data.hub_repo, "hub_revision": spec.data.hub_revision}
    train = load_glue_split(task_name, "train", spec.data.dir, **hub)
    if hp.max_train_examples:
        train = train.head(hp.max_train_examples)
    train, selection = carve_selection(train, hp.selection_fraction, hp.selection_seed)
    evals = {}
    for split in TASKS[task_name].eval_splits:
        ex = load_glue_split(task_name, split, spec.data.dir, **hub)
        evals[split] = ex.head(hp.max_eval_examples) if hp.max_eval_examples else ex
    return TaskData(train, evals, selection)


def carve_selection(train: GlueExamples, fraction: float, seed: int) -> tuple[GlueExamples, GlueExamples | None]:
    """(the rows to train on, the rows to select the checkpoint on): a seeded `fraction` of `train` (at least
    one row), both in file order; (train, None) for fraction 0. Never the dev rows."""
    if fraction <= 0:
        return train, None
    import numpy as np

    n = len(train)
    k = min(n - 1, max(1, round(fraction * n)))
    held = np.zeros(n, dtype=bool)
    held[np.random.default_rng(seed).permutation(n)[:k]] = True
    return train.take(np.flatnonzero(~held).tolist()), train.take(np.flatnonzero(held).tolist())


def training_fingerprint(model_fingerprint: str | None, task_name: str, hp: FinetuneSpec, max_length: int,
                         train_identity: str, n_train: int) -> str:
    """What a fine-tuning job's weights depend on (the seed included); nothing evaluation-only."""
    training = {k: v for k, v in hp.model_dump().items() if k not in NOT_TRAINING}
    return fingerprint({"model": model_fingerprint, "task": task_name, "hp": training, "max_length": max_length,
                        "train": train_identity, "n_train": n_train}, 12)


def eval_fingerprint(data: TaskData, max_length: int) -> str:
    """The dev rows a job's stored predictions were made on: reused only when this matches."""
    ids = data.identities()
    return fingerprint({"evals": {s: (ids[s], len(ex)) for s, ex in data.evals.items()}, "max_length": max_length},
                       12)


@dataclass
class SeedOutcome:
    """One seed's fine-tuning job and its dev predictions (label ids, or scores for STS-B), by split."""

    seed: int
    predictions: dict[str, list[float]]
    model_dir: str
    run_name: str
    final_step: int
    resumed_from_step: int | None = None
    reused: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, list[float]] = field(default_factory=dict)  # split -> the predicted label's probability


def run_seed(*, task_name: str, seed: int, hp: FinetuneSpec, job_fp: str, eval_fp: str, jobs_root: str,
             train_fn, predict_fn, wait_s: float | None = None) -> SeedOutcome:
    """Reuse the finished job `job_fp` (its predictions, or `predict_fn(model_dir)` -> (predictions, scores) on
    other dev rows), resume an unfinished one, or start it: `train_fn(run_name)` -> `FinetuneOutcome`. The
    job's state is written durably before and after training, so a crash anywhere leaves a job that the next
    run resumes or reuses.

    One run per job: resuming or training holds the job folder's lock (`tasks.common.lock.output_lock`), so a
    second GLUE run on the same job fails at once with `OutputLocked` naming the first (or waits `wait_s`, default
    `$LMPIPE_LOCK_WAIT_S`) instead of training into the same checkpoint folder. Reusing a finished job needs no
    lock: it only reads."""
    from tasks.common.lock import output_lock

    jobs = os.path.join(jobs_root, job_fp)
    reused = _reuse_finished(jobs, task_name, seed, eval_fp, predict_fn)
    if reused is not None:
        return reused
    with output_lock(jobs, wait_s=wait_s):
        reused = _reuse_finished(jobs, task_name, seed, eval_fp, predict_fn)  # finished while we waited
        if reused is not None:
            return reused
        return _train_seed(jobs, task_name, seed, hp, job_fp, eval_fp, train_fn)


def _reuse_finished(jobs: str, task_name: str, seed: int, eval_fp: str, predict_fn) -> SeedOutcome | None:
    """The finished job's outcome (predicting new dev rows when they changed), or None when it has to train."""
    from tasks.pretrain.core import read_job_state, read_json_or_none

    previous = read_job_state(jobs)
    stored = read_json_or_none(os.path.join(jobs, RESULT_FILE))
    if not (previous is not None and previous.status == "finished" and stored and os.path.isdir(stored["model_dir"])):
        return None
    same_rows = stored.get("eval_fp") == eval_fp
    predictions, scores = ((stored["predictions"], stored.get("scores", {})) if same_rows
                           else predict_fn(stored["model_dir"]))
    log.info("%s seed %d: reusing finished job %s (%s)", task_name, seed, previous.run_name,
             "its dev predictions" if same_rows else "predicting the new dev rows with its model")
    if not same_rows:
        _write_result(jobs, {**stored, "eval_fp": eval_fp, "predictions": predictions, "scores": scores})
    return SeedOutcome(seed, predictions, stored["model_dir"], previous.run_name, int(stored["final_step"]),
                       reused=True, metrics=dict(stored.get("metrics", {})), scores=scores)


def _train_seed(jobs: str, task_name: str, seed: int, hp: FinetuneSpec, job_fp: str, eval_fp: str,
                train_fn) -> SeedOutcome:
    """Resume the job's unfinished run or start one, then record it finished (the job's lock is held)."""
    from tasks.pretrain.core import JobState, new_run_name, read_job_state, write_job_state

    previous = read_job_state(jobs)
    resume = previous is not None and previous.status == "running"
    run_name = previous.run_name if resume else new_run_name(f"{task_name}-s{seed}", job_fp)
    write_job_state(jobs, JobState(run_name=run_name, status="running"))
    outcome = train_fn(run_name)
    predictions = {s: [float(v) for v in p] for s, p in outcome.predictions.items()}
    scores = {s: [float(v) for v in p] for s, p in outcome.scores.items()}
    _write_result(jobs, {"model_dir": outcome.model_dir, "final_step": outcome.final_step, "eval_fp": eval_fp,
                         "predictions": predictions, "scores": scores, "metrics": _plain(outcome.metrics),
                         "seed": seed, "hp": hp.model_dump()})
    write_job_state(jobs, JobState(run_name=run_name, status="finished"))
    return SeedOutcome(seed, predictions, outcome.model_dir, run_name, outcome.final_step,
                       resumed_from_step=outcome.resumed_from_step, metrics=_plain(outcome.metrics), scores=scores)


def predict_saved_model(model_dir: str, evals: dict[str, Any], batch_size: int,
                        regression: bool) -> tuple[dict[str, list], dict[str, list]]:
    """(predictions, scores) by split of a saved fine-tuned model, here (GPU when there is one): the reuse path
    of `run_seed`."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from cluster.train.finetune import predict_with_scores

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).to(device).eval()
    out = {split: predict_with_scores(model, enc, batch_size, device, regression=regression)
           for split, enc in evals.items()}
    return ({s: [float(v) for v in p] for s, (p, _) in out.items()},
            {s: [float(v) for v in sc] for s, (_, sc) in out.items()})


@dataclass
class TaskScores:
    """A task's scores over its seeds, ready for the record."""

    results: dict[str, dict[str, float]]  # result key -> {metric: mean over seeds, "n_train", "n_eval"}
    spread: dict[str, dict[str, float]]  # result key -> {metric: sample std over seeds (0 for one seed)}
    baselines: dict[str, dict[str, float]]  # result key -> the trivial baseline's metrics
    # result key -> (labels, {seed: predictions}, {seed: predicted-label probability (or the regression output)})
    predictions: dict[str, tuple[list, dict[int, list[float]], dict[int, list[float]]]]
    seed_scores: list[float]  # the task's score, one per seed


def score_seeds(task_name: str, data: TaskData, outcomes: list[SeedOutcome]) -> TaskScores:
    """Official metrics per seed and split; means, spreads, baselines and the per-seed task scores."""
    from tasks.glue.baselines import trivial_metrics
    from tasks.glue.metrics import compute_metrics, per_task_scores

    results, spread, baselines, predictions = {}, {}, {}, {}
    by_seed: dict[int, dict[str, dict[str, float]]] = {o.seed: {} for o in outcomes}
    for split, ex in data.evals.items():
        key = result_key(task_name, split)
        per_seed = {o.seed: compute_metrics(task_name, o.predictions[split], ex.labels) for o in outcomes}
        for seed, metrics in per_seed.items():
            by_seed[seed][key] = metrics
        names = list(next(iter(per_seed.values())))
        results[key] = {m: statistics.fmean(s[m] for s in per_seed.values()) for m in names}
        results[key] |= {"n_train": len(data.train), "n_eval": len(ex)}
        spread[key] = {m: (statistics.stdev(s[m] for s in per_seed.values()) if len(per_seed) > 1 else 0.0)
                       for m in names}
        baselines[key] = trivial_metrics(key, ex.labels)
        predictions[key] = (list(ex.labels), {o.seed: o.predictions[split] for o in outcomes},
                            {o.seed: o.scores[split] for o in outcomes if split in o.scores})
    seed_scores = [per_task_scores(by_seed[o.seed])[task_name] for o in outcomes]
    return TaskScores(results, spread, baselines, predictions, seed_scores)


def prepare_tokenizer(hf_dir: str, max_length: int, logger: Any = log) -> tuple[Any, int, str]:
    """(tokenizer with a pad token, the max length used, a folder holding that tokenizer for the workers).

    GPT-style tokenizers pad with eos (the model ignores padded positions). The max length is capped at the
    model's positions. The folder is temporary and lives as long as the returned tokenizer: it is removed when
    the tokenizer is garbage-collected (the task is done with both) or at the latest when the process exits.
    """
    import shutil
    import weakref

    from transformers import AutoConfig, AutoTokenizer

    from cluster.train.finetune import model_context

    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    context = model_context(AutoConfig.from_pretrained(hf_dir)) or max_length
    used = min(max_length, context)
    if used < max_length:
        logger.warning("max_length %d exceeds the model's %d positions; using %d", max_length, context, used)
    folder = tempfile.mkdtemp(prefix="lmpipe-glue-tok-")
    weakref.finalize(tokenizer, shutil.rmtree, folder, True)  # no folder per run left behind in $TMPDIR
    tokenizer.save_pretrained(folder)  # with the pad token set above
    return tokenizer, used, folder


def _write_result(jobs: str, data: dict[str, Any]) -> None:
    write_bytes_atomic(os.path.join(jobs, RESULT_FILE), json.dumps(data, sort_keys=True).encode("utf-8"))


def _plain(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str)) or v is None}
