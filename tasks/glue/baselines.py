"""The trivial baseline of a GLUE dev set: what a model must beat before its score means anything.

A constant guess scored on the same dev rows with the official metrics (`tasks.glue.metrics`):

- classification: the majority class of those rows (ties: the lowest label id), so SST-2's first 150 dev rows
  floor at 59.3% accuracy and MRPC's at (F1 + accuracy) / 2 of always "equivalent";
- STS-B: the mean score, a constant, whose Pearson and Spearman are 0;
- CoLA: the majority class, MCC 0.

    trivial_metrics("rte", labels)   -> {"accuracy": 0.558}
    trivial_predictions("stsb", [1.0, 3.0])   -> array([2.0, 2.0])

Pure numpy; the gate (`tasks.glue.gate`) compares each task's score against this floor.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tasks.glue.metrics import _task_of, compute_metrics


def trivial_predictions(task: str, labels: Sequence) -> np.ndarray:
    """The constant guess for `labels` (task name or result key): the majority class id, or the mean score."""
    spec = _task_of(task)
    y = np.asarray(labels)
    if y.size == 0:
        raise ValueError(f"{spec.name}: no labels to take a baseline of")
    if spec.is_regression:
        return np.full(y.shape, float(np.mean(y.astype(np.float64))))
    counts = np.bincount(y.astype(np.int64), minlength=spec.num_labels)
    return np.full(y.shape, int(np.argmax(counts)), dtype=np.int64)  # argmax: the lowest id on a tie


def trivial_metrics(task: str, labels: Sequence) -> dict[str, float]:
    """The official metrics of the constant guess on `labels`."""
    return compute_metrics(task, trivial_predictions(task, labels), labels)
