"""Paired bootstrap confidence intervals over dev examples: a task's score, the GLUE score and a gain.

lm-evaluation-harness reports a stderr beside every score; the GLUE dev sets are small enough (RTE 277 rows,
WNLI 71) that a one-point gain is often noise. This module resamples the dev rows of each result key with
replacement, `n_resamples` times, and scores every resample with the official metrics (vectorised here, equal
to `tasks.glue.metrics.compute_metrics` on each resample; tests check that). "Paired": the candidate, the
champion and the trivial baseline are scored on the *same* resampled rows, so the interval of a gain is the
interval of a difference measured on one sample, not the difference of two intervals.

    preds = {"rte": (labels, cand_preds)}
    b = paired_bootstrap(labels_by_key, {"candidate": cand, "champion": champ}, seed=0)
    b.interval("candidate", "rte"), b.glue_interval("candidate"), b.gain_interval("candidate", "champion")

Each resample's GLUE score averages its task scores as `glue_score` does (MNLI = mean of its two keys). The
resamples are seeded (numpy PCG64), so the same inputs give the same intervals. Intervals are percentile
intervals (the `confidence` central mass of the resampled values).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from tasks.glue.metrics import _task_of
from tasks.glue.tasks import TASK_NAMES, result_keys

_CELLS = 2_000_000  # resampled rows scored at once, per array


@dataclass(frozen=True)
class Interval:
    """A point estimate (on the full dev set) with its bootstrap interval, as fractions."""

    point: float
    low: float
    high: float
    stderr: float  # the standard deviation of the resampled values

    def as_dict(self) -> dict[str, float]:
        return {"point": self.point, "low": self.low, "high": self.high, "stderr": self.stderr}


@dataclass(frozen=True)
class Bootstrap:
    """Resampled task scores of several systems on the same resampled rows."""

    points: dict[str, dict[str, float]]  # system -> task name -> task score on the full dev rows
    samples: dict[str, dict[str, np.ndarray]]  # system -> task name -> (n_resamples,) task scores
    confidence: float

    def interval(self, system: str, task: str) -> Interval:
        return _interval(self.points[system][task], self.samples[system][task], self.confidence)

    def glue_interval(self, system: str, tasks: Sequence[str] | None = None) -> Interval:
        names = self._tasks(tasks)
        point = float(np.mean([self.points[system][t] for t in names]))
        return _interval(point, np.mean([self.samples[system][t] for t in names], axis=0), self.confidence)

    def gain_interval(self, system: str, over: str, tasks: Sequence[str] | None = None) -> Interval:
        """`system`'s GLUE score minus `over`'s, resampled on the same rows."""
        names = self._tasks(tasks)
        point = float(np.mean([self.points[system][t] - self.points[over][t] for t in names]))
        diff = np.mean([self.samples[system][t] - self.samples[over][t] for t in names], axis=0)
        return _interval(point, diff, self.confidence)

    def task_gain_interval(self, system: str, over: str, task: str) -> Interval:
        point = self.points[system][task] - self.points[over][task]
        return _interval(point, self.samples[system][task] - self.samples[over][task], self.confidence)

    def _tasks(self, tasks: Sequence[str] | None) -> list[str]:
        first = next(iter(self.points.values()))
        return list(tasks) if tasks is not None else [t for t in TASK_NAMES if t in first]


def paired_bootstrap(labels: Mapping[str, Sequence], predictions: Mapping[str, Mapping[str, Sequence]], *,
                     n_resamples: int = 1000, seed: int = 0, confidence: float = 0.95) -> Bootstrap:
    """Bootstrap every system's task scores on the same resampled dev rows.

    `labels`: result key ("rte", "mnli_matched", ...) -> the dev labels; `predictions`: system name -> result
    key -> that system's predictions on the same rows, in the same order: one array, or one row per seed
    (seeds x rows), scored as the mean over seeds. Every system must cover every key,
    and a task with two keys (MNLI) needs both. Raises ValueError otherwise.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    keys = list(labels)
    tasks = [t for t in TASK_NAMES if any(k in labels for k in result_keys(t))]
    for t in tasks:
        missing = [k for k in result_keys(t) if k not in labels]
        if missing:
            raise ValueError(f"{t} needs labels for all of {result_keys(t)}; missing {missing}")
    for system, preds in predictions.items():
        absent = [k for k in keys if k not in preds]
        if absent:
            raise ValueError(f"{system} has no predictions for {absent}")
    rng = np.random.default_rng(seed)
    key_points: dict[str, dict[str, float]] = {s: {} for s in predictions}
    key_samples: dict[str, dict[str, np.ndarray]] = {s: {} for s in predictions}
    for key in keys:  # one index matrix per key, shared by every system: the pairing
        y = np.asarray(labels[key])
        if y.ndim != 1 or y.size == 0:
            raise ValueError(f"{key}: labels must be a non-empty 1-D sequence")
        arrays = {}
        for system, preds in predictions.items():
            p = np.asarray(preds[key])
            arrays[system] = p = p[None, :] if p.ndim == 1 else p  # (seeds, rows)
            if p.ndim != 2 or p.shape[1] != y.size:
                raise ValueError(f"{system}/{key}: predictions of shape {p.shape} for {y.size} labels")
            key_points[system][key] = float(np.mean(_score(key, p, np.broadcast_to(y, p.shape))))
        parts: dict[str, list[np.ndarray]] = {s: [] for s in predictions}
        step = max(1, _CELLS // y.size)  # resamples per chunk: QQP's 40k rows x 1000 would be 320 MB at once
        for lo in range(0, n_resamples, step):
            idx = rng.integers(0, y.size, size=(min(step, n_resamples - lo), y.size))
            for system, p in arrays.items():  # several seeds: the mean of their scores on the same resample
                parts[system].append(np.mean([_score(key, seed_preds[idx], y[idx]) for seed_preds in p], axis=0))
        for system in predictions:
            key_samples[system][key] = np.concatenate(parts[system])
    points = {s: {t: float(np.mean([key_points[s][k] for k in result_keys(t)])) for t in tasks} for s in predictions}
    samples = {s: {t: np.mean([key_samples[s][k] for k in result_keys(t)], axis=0) for t in tasks}
               for s in predictions}
    return Bootstrap(points, samples, confidence)


def _score(key: str, pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """The task score (mean of its metrics) of each row of `pred` against the same row of `true`."""
    spec = _task_of(key)
    values = [_METRICS[m](pred, true) for m in spec.metrics]
    return np.mean(values, axis=0)


def _accuracy(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    return np.mean(pred.astype(np.int64) == true.astype(np.int64), axis=1)


def _confusion(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, ...]:
    p, t = pred.astype(np.int64) == 1, true.astype(np.int64) == 1
    tp = np.sum(p & t, axis=1, dtype=np.float64)
    fp = np.sum(p & ~t, axis=1, dtype=np.float64)
    fn = np.sum(~p & t, axis=1, dtype=np.float64)
    tn = np.sum(~p & ~t, axis=1, dtype=np.float64)
    return tp, fp, fn, tn


def _f1(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    tp, fp, fn, _ = _confusion(pred, true)
    denom = 2 * tp + fp + fn
    return np.divide(2 * tp, denom, out=np.zeros_like(denom), where=denom > 0)  # sklearn's zero_division=0


def _mcc(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    tp, fp, fn, tn = _confusion(pred, true)
    denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return np.divide(tp * tn - fp * fn, denom, out=np.zeros_like(denom), where=denom > 0)  # constant side: 0


def _pearson(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    x = pred.astype(np.float64) - pred.mean(axis=1, keepdims=True)
    y = true.astype(np.float64) - true.mean(axis=1, keepdims=True)
    denom = np.sqrt(np.sum(x * x, axis=1) * np.sum(y * y, axis=1))
    out = np.divide(np.sum(x * y, axis=1), denom, out=np.zeros(len(x)), where=denom > 0)
    # A constant side is undefined, reported as 0 as compute_metrics does; guard rounding of tiny variances too.
    constant = (np.ptp(pred, axis=1) == 0) | (np.ptp(true, axis=1) == 0)
    return np.clip(np.where(constant, 0.0, out), -1.0, 1.0)


def _spearman(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    constant = (np.ptp(pred, axis=1) == 0) | (np.ptp(true, axis=1) == 0)
    out = _pearson(rankdata(pred, axis=1), rankdata(true, axis=1))
    return np.where(constant, 0.0, out)


_METRICS = {"accuracy": _accuracy, "f1": _f1, "matthews_correlation": _mcc, "pearson": _pearson,
            "spearmanr": _spearman}


def _interval(point: float, values: np.ndarray, confidence: float) -> Interval:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(point=float(point), low=float(low), high=float(high), stderr=float(np.std(values, ddof=1))
                    if values.size > 1 else 0.0)
