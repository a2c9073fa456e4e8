"""The nine GLUE tasks: Hugging Face names, input columns, label orders and metrics (facts §D1, §D2).

Everything else in lmpipe's GLUE code reads this table; nothing else hard-codes a column or a label.
Names are Hugging Face's (`nyu-mll/glue` configs); folders are the original GLUE release's.

    TASKS["mrpc"].text_columns   -> ("sentence1", "sentence2")
    TASKS["mnli"].eval_splits    -> ("validation_matched", "validation_mismatched")
    result_key("mnli", "validation_mismatched") -> "mnli_mismatched"
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task as `run_glue.py` and the `nyu-mll/glue` dataset card define it."""

    name: str  # Hugging Face config name: "cola", "sst2", ...
    folder: str  # folder in the original GLUE release: "CoLA", "SST-2", ...
    text_columns: tuple[str, ...]  # one column (single sentence) or two (pair), HF names, in model order
    label_names: tuple[str, ...]  # index = label id; () for STS-B (regression)
    metrics: tuple[str, ...]  # Hugging Face metric names, in the order they are reported
    eval_splits: tuple[str, ...] = ("validation",)  # dev splits scored (test labels are hidden: -1)

    @property
    def is_regression(self) -> bool:
        return not self.label_names

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2


TASKS: dict[str, GlueTask] = {
    t.name: t
    for t in (
        GlueTask("cola", "CoLA", ("sentence",), ("unacceptable", "acceptable"), ("matthews_correlation",)),
        GlueTask("sst2", "SST-2", ("sentence",), ("negative", "positive"), ("accuracy",)),
        GlueTask("mrpc", "MRPC", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), ("f1", "accuracy")),
        GlueTask("qqp", "QQP", ("question1", "question2"), ("not_duplicate", "duplicate"), ("f1", "accuracy")),
        GlueTask("stsb", "STS-B", ("sentence1", "sentence2"), (), ("pearson", "spearmanr")),
        GlueTask(
            "mnli", "MNLI", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), ("accuracy",),
            eval_splits=("validation_matched", "validation_mismatched"),
        ),
        GlueTask("qnli", "QNLI", ("question", "sentence"), ("entailment", "not_entailment"), ("accuracy",)),
        GlueTask("rte", "RTE", ("sentence1", "sentence2"), ("entailment", "not_entailment"), ("accuracy",)),
        # WNLI's label order is the reverse of RTE's and QNLI's (dataset card): 0 = not_entailment.
        GlueTask("wnli", "WNLI", ("sentence1", "sentence2"), ("not_entailment", "entailment"), ("accuracy",)),
    )
}

TASK_NAMES: tuple[str, ...] = tuple(TASKS)  # the order results and reports use


def result_key(task: str, split: str) -> str:
    """The name a scored split reports under: "sst2", or "mnli_matched" / "mnli_mismatched" for MNLI."""
    if split.startswith("validation_"):
        return f"{task}_{split[len('validation_'):]}"
    return task


def result_keys(task: str) -> list[str]:
    """Every result name a task produces (two for MNLI)."""
    return [result_key(task, s) for s in TASKS[task].eval_splits]


def parse_task_list(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """ "sst2,rte" or a list -> validated HF task names, in the given order, without repeats; None -> all nine."""
    if value is None:
        return list(TASK_NAMES)
    items = value.split(",") if isinstance(value, str) else list(value)
    names: list[str] = []
    for raw in items:
        name = raw.strip().lower()
        if not name:
            continue
        if name not in TASKS:
            raise ValueError(f"unknown GLUE task {raw!r}; expected some of {', '.join(TASK_NAMES)}")
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError("no GLUE task given")
    return names
