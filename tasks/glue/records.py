"""Evaluation records and per-example predictions as files: what one GLUE evaluation run stores. Pure.

Every evaluation run (the parent MLflow run of `lmpipe glue`) stores

- `evaluation.json`: the record (`record_to_json`): status, tasks, results, trivial baselines, per-seed task
  scores and the setup (`tasks.glue.protocol.EvalSetup`);
- `predictions/<result key>.csv`: one row per dev example and seed: `idx,seed,label,prediction,score` (score:
  the predicted label's probability, or the regression output; empty when the run did not record it).

Records are never overwritten: a re-evaluation is a new run with a record of its own, so a failed or partial
re-evaluation cannot erase a complete one. The gate picks, among the champion's complete records, the newest
one evaluated like the candidate (`choose_record`).

    write_predictions(folder, "rte", labels, {42: preds})
    labels, by_seed = read_predictions(folder / "predictions" / "rte.csv")
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tasks.glue.gate import EvalRecord
from tasks.glue.protocol import EvalSetup, first_difference

RECORD_FILE = "evaluation.json"
PREDICTIONS_DIR = "predictions"
RECORD_FORMAT = 1


def record_to_json(record: EvalRecord, glue_score: float | None = None) -> dict[str, Any]:
    return {"format": RECORD_FORMAT, "model": record.model, "version": record.version, "status": record.status,
            "tasks": list(record.tasks), "results": record.results, "baselines": record.baselines,
            "seed_scores": record.seed_scores, "glue_score": glue_score, "run_id": record.run_id,
            "setup": record.setup.to_json() if record.setup is not None else None}


def record_from_json(data: Mapping[str, Any]) -> EvalRecord:
    setup = data.get("setup")
    return EvalRecord(version=str(data["version"]), status=data["status"], tasks=tuple(data["tasks"]),
                      results=dict(data["results"]), setup=EvalSetup.from_json(setup) if setup else None,
                      baselines=dict(data.get("baselines") or {}), seed_scores=dict(data.get("seed_scores") or {}),
                      model=data.get("model", ""), run_id=data.get("run_id"))


def predictions_csv(labels: Sequence, by_seed: Mapping[int, Sequence],
                    scores: Mapping[int, Sequence] | None = None) -> str:
    """The CSV text of one dev split's predictions: a row per example and seed, seeds in the given order;
    `scores` (by seed, optional) fills the score column."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["idx", "seed", "label", "prediction", "score"])
    for seed, preds in by_seed.items():
        seed_scores = (scores or {}).get(seed)
        for name, values in (("predictions", preds), ("scores", seed_scores)):
            if values is not None and len(values) != len(labels):
                raise ValueError(f"seed {seed}: {len(values)} {name} for {len(labels)} labels")
        for i, (y, p) in enumerate(zip(labels, preds)):
            writer.writerow([i, seed, _num(y), _num(p), "" if seed_scores is None else _num(seed_scores[i])])
    return out.getvalue()


def write_predictions(folder: Path, key: str, labels: Sequence, by_seed: Mapping[int, Sequence],
                      scores: Mapping[int, Sequence] | None = None) -> Path:
    path = Path(folder) / PREDICTIONS_DIR / f"{key}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(predictions_csv(labels, by_seed, scores), encoding="utf-8")
    return path


def read_predictions(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(labels (n,), predictions (seeds, n)) from a predictions CSV; ValueError when rows are missing."""
    rows: dict[int, dict[int, float]] = {}
    labels: dict[int, float] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            i, seed = int(row["idx"]), int(row["seed"])
            rows.setdefault(seed, {})[i] = float(row["prediction"])
            labels[i] = float(row["label"])
    n = len(labels)
    if n == 0 or sorted(labels) != list(range(n)) or any(sorted(r) != list(range(n)) for r in rows.values()):
        raise ValueError(f"{path}: not one prediction per example and seed")
    preds = np.array([[r[i] for i in range(n)] for _, r in sorted(rows.items())])
    return np.array([labels[i] for i in range(n)]), preds


def choose_record(records: Iterable[EvalRecord], like: EvalRecord | None, tasks: Sequence[str]) -> EvalRecord | None:
    """The record the gate compares against: the newest complete one evaluated like `like` on `tasks`, else
    the newest complete one (so the refusal can name the difference), else the newest of any status.
    `records` come newest first."""
    records = list(records)
    complete = [r for r in records if r.status == "complete"]
    if like is not None and like.setup is not None:
        for r in complete:
            if r.setup is not None and first_difference(like.setup, r.setup, tasks) is None:
                return r
    return complete[0] if complete else (records[0] if records else None)


def _num(value: Any) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)
