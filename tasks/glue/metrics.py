"""GLUE metrics and the GLUE score, with scikit-learn and scipy (facts §D2).

The per-task metrics are the four functions HF `evaluate`'s `metrics/glue/glue.py` uses, computed here directly
because `evaluate.load("glue", ...)` fetches its script from the Hub (and hangs offline). Values are fractions,
as HF reports them:

    compute_metrics("mrpc", [1, 0, 1], [1, 1, 1])  -> {"f1": 0.8, "accuracy": 0.666...}

The GLUE score (Wang et al. 2019, §3) is a macro-average over tasks; a task with two metrics counts as their
mean, and MNLI counts once, as the mean of its matched and mismatched accuracies. That reproduces the Turc
et al. small-BERT scores (Mini 65.8, Small 71.2, Medium 73.5). The BERT paper's "Average" is a different
convention (MNLI-m and -mm separately, F1 or Spearman only, no WNLI) and is not computed here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

from tasks.glue.tasks import TASK_NAMES, TASKS, GlueTask, result_keys

# Every metric a GLUE task reports (the union of TASKS[...].metrics).
METRIC_NAMES: frozenset[str] = frozenset(m for t in TASKS.values() for m in t.metrics)


def compute_metrics(task: str, predictions: Sequence, labels: Sequence) -> dict[str, float]:
    """The task's official dev metrics, keyed and ordered as TASKS[task].metrics.

    `task` is a task name or a result key ("mnli_matched"). `predictions` are label ids (argmax of the logits),
    or float scores for stsb; `labels` likewise. Both must be 1-D, equally long and non-empty, and ids must be
    whole numbers in range, else ValueError (a common bug is passing logits or probabilities).

    cola: Matthews correlation; mrpc/qqp: binary F1 (positive class 1) and accuracy; stsb: Pearson and
    Spearman; the rest: accuracy. A correlation that is undefined because the predictions or the labels are
    constant (or there is one example) is reported as 0.0, not nan: a model that predicts one class scores
    0 MCC, as the Tiny/Mini BERTs' CoLA 0.0 shows, and nan would poison the GLUE average.
    """
    spec = _task_of(task)
    y_pred = _as_1d(predictions, "predictions")
    y_true = _as_1d(labels, "labels")
    if len(y_pred) != len(y_true):
        raise ValueError(f"{spec.name}: {len(y_pred)} predictions but {len(y_true)} labels")
    if len(y_true) == 0:
        raise ValueError(f"{spec.name}: no predictions to score")

    if spec.is_regression:
        x, y = y_pred.astype(np.float64), y_true.astype(np.float64)
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ValueError(f"{spec.name}: predictions and labels must be finite numbers")
        return {
            "pearson": _correlation(pearsonr, x, y),
            "spearmanr": _correlation(spearmanr, x, y),
        }

    y_pred, y_true = _as_ids(y_pred, spec, "predictions"), _as_ids(y_true, spec, "labels")
    out: dict[str, float] = {}
    for name in spec.metrics:
        if name == "matthews_correlation":
            # sklearn returns 0.0 when a row or column of the confusion matrix is empty (constant input).
            out[name] = _finite(matthews_corrcoef(y_true, y_pred))
        elif name == "f1":
            # zero_division=0.0: no positive predicted and none true gives 0, as sklearn's default, without a warning.
            out[name] = float(f1_score(y_true, y_pred, pos_label=1, average="binary", zero_division=0.0))
        elif name == "accuracy":
            out[name] = float(np.mean(y_pred == y_true))
        else:  # pragma: no cover - TASKS only names the metrics above
            raise ValueError(f"{spec.name}: no implementation for metric {name!r}")
    return out


def task_score(metrics: Mapping[str, float]) -> float:
    """One task's score: the unweighted mean of its metrics (GLUE paper §3), e.g. MRPC = (F1 + accuracy) / 2.

    Only GLUE metric names are accepted, so a stray "eval_loss" cannot leak into the average.
    """
    if not metrics:
        raise ValueError("no metrics to score")
    unknown = sorted(set(metrics) - METRIC_NAMES)
    if unknown:
        raise ValueError(f"not GLUE metrics: {unknown}; expected some of {sorted(METRIC_NAMES)}")
    values = [float(v) for v in metrics.values()]
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"metrics must be finite numbers: {dict(metrics)}")
    return sum(values) / len(values)


def per_task_scores(results: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Task name -> its one score, in TASK_NAMES order: what `glue_score` averages.

    `results` is keyed by result key (`tasks.result_key`): "sst2", ..., "mnli_matched", "mnli_mismatched".
    Each entry must hold exactly the task's metrics. MNLI needs both dev sets and scores their mean accuracy.
    Unknown keys, missing or extra metrics and half an MNLI raise ValueError.
    """
    if not results:
        raise ValueError("no GLUE results to score")
    owner = {key: name for name in TASK_NAMES for key in result_keys(name)}
    unknown = sorted(set(results) - set(owner))
    if unknown:
        raise ValueError(f"unknown GLUE result keys {unknown}; expected some of {', '.join(owner)}")
    scores: dict[str, float] = {}
    for name in TASK_NAMES:
        keys = result_keys(name)
        present = [k for k in keys if k in results]
        if not present:
            continue
        if len(present) != len(keys):
            raise ValueError(f"{name} needs results for all of {keys}; got only {present}")
        for key in keys:
            got, want = set(results[key]), set(TASKS[name].metrics)
            if got != want:
                raise ValueError(f"result {key!r} has metrics {sorted(got)}; expected exactly {sorted(want)}")
        # MNLI: the mean over its two dev sets of each set's score, i.e. mean(matched acc, mismatched acc).
        scores[name] = sum(task_score(results[k]) for k in keys) / len(keys)
    return scores


def glue_score(results: Mapping[str, Mapping[str, float]]) -> float:
    """The GLUE score: the unweighted mean of `per_task_scores(results)` over the tasks present.

    Same unit as the inputs (fractions in, fraction out; percents in, percents out).
    """
    scores = per_task_scores(results)
    return sum(scores.values()) / len(scores)


def _task_of(task: str) -> GlueTask:
    """The task for a task name or a result key ("mnli_matched" -> mnli)."""
    if task in TASKS:
        return TASKS[task]
    for spec in TASKS.values():
        if task in result_keys(spec.name):
            return spec
    raise ValueError(f"unknown GLUE task {task!r}; expected one of {', '.join(TASKS)}")


def _as_1d(values: Sequence, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {arr.shape} (argmax the logits / squeeze the scores)")
    if arr.size and not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{what} must be numbers, got dtype {arr.dtype}")
    return arr


def _as_ids(arr: np.ndarray, spec: GlueTask, what: str) -> np.ndarray:
    """Whole-number label ids in [0, num_labels) as int64; a float array of 0.0/1.0 is fine, 0.7 is not."""
    if not np.issubdtype(arr.dtype, np.integer) and arr.dtype != bool:
        if not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
            raise ValueError(f"{spec.name}: {what} must be label ids, got non-integer values")
    ids = arr.astype(np.int64)
    bad = ids[(ids < 0) | (ids >= spec.num_labels)]
    if bad.size:
        examples = sorted(set(bad.tolist()))[:5]
        raise ValueError(f"{spec.name}: {what} has ids outside 0..{spec.num_labels - 1}: {examples}")
    return ids


def _correlation(fn, x: np.ndarray, y: np.ndarray) -> float:
    # Undefined (0/0) for fewer than 2 points or a constant side; scipy would warn and return nan.
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    return _finite(fn(x, y)[0])


def _finite(value: float) -> float:
    value = float(value)
    return value if math.isfinite(value) else 0.0
