"""What an evaluation was run on and how: the setup two GLUE records must share before their scores compare.

A score means nothing without its setup. Every evaluation record carries, per task:

- `data`: each split's identity: the sha256 of the local file read, or `hub:<repo>@<revision>`;
- `n_train` and `n_eval` (per result key): the rows actually used;
- `protocol`: the fine-tuning settings that change the score (hyperparameters, the max length used, seeds,
  `max_train/eval_examples`, model selection). Settings that do not (eval batch size, checkpoint period) are
  left out, so changing them never forces a re-evaluation.

plus the GLUE spec's fingerprint and path, which the refusal's fix command names.

    first_difference(candidate.setup, champion.setup, ["rte"])
    -> "rte: n_eval['rte'] is 77 on the candidate but 277 on the champion"

Pure; `tasks.glue.gate` refuses on the first difference.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# FinetuneSpec fields that do not change what a fine-tuned model scores.
NOT_PROTOCOL: frozenset[str] = frozenset({"eval_batch_size", "checkpoint_every"})


@dataclass(frozen=True)
class TaskSetup:
    """One task's data and protocol, as evaluated."""

    data: dict[str, str]  # split -> "sha256:<hex>" | "hub:<repo>@<revision>"
    n_train: int
    n_eval: dict[str, int]  # result key -> dev rows scored
    protocol: dict[str, Any]  # hyperparameters that change the score, the max length used, seeds, selection


@dataclass(frozen=True)
class EvalSetup:
    """Everything a GLUE evaluation's scores depend on besides the model."""

    tasks: tuple[str, ...]  # tasks evaluated, in run order
    per_task: dict[str, TaskSetup]
    spec_fingerprint: str
    spec_path: str | None = None  # the spec file the evaluation read (the fix command re-uses it)
    full: bool = True  # False when `--tasks` evaluated a subset of the spec's tasks: never promotes
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["tasks"] = list(self.tasks)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EvalSetup:
        per_task = {t: TaskSetup(**v) for t, v in data["per_task"].items()}
        return cls(tasks=tuple(data["tasks"]), per_task=per_task, spec_fingerprint=data["spec_fingerprint"],
                   spec_path=data.get("spec_path"), full=bool(data.get("full", True)),
                   extra=dict(data.get("extra", {})))


def protocol_of(hp: Mapping[str, Any], *, max_length_used: int, seeds: Sequence[int],
                selection: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The score-relevant part of one task's fine-tuning settings (`FinetuneSpec.model_dump()`)."""
    out = {k: v for k, v in hp.items() if k not in NOT_PROTOCOL and k != "seed"}
    out["max_length_used"] = int(max_length_used)
    out["seeds"] = [int(s) for s in seeds]
    if selection:
        out["selection"] = dict(selection)
    return json.loads(json.dumps(out, sort_keys=True))  # plain JSON values, so a stored record compares equal


def first_difference(candidate: EvalSetup, champion: EvalSetup, tasks: Sequence[str]) -> str | None:
    """The first setup field on `tasks` where the two evaluations differ, said in words; None when alike."""
    for task in tasks:
        a, b = candidate.per_task.get(task), champion.per_task.get(task)
        if a is None or b is None:
            who = "candidate" if a is None else "champion"
            return f"{task}: the {who}'s record has no setup for it"
        for name in ("data", "n_eval", "protocol"):
            left, right = getattr(a, name), getattr(b, name)
            for key in sorted(set(left) | set(right)):
                if left.get(key, _ABSENT) != right.get(key, _ABSENT):
                    return (f"{task}: {name}[{key!r}] is {_show(left.get(key, _ABSENT))} on the candidate but "
                            f"{_show(right.get(key, _ABSENT))} on the champion")
        if a.n_train != b.n_train:
            return f"{task}: n_train is {a.n_train} on the candidate but {b.n_train} on the champion"
    return None


_ABSENT = object()


def _show(value: Any) -> str:
    return "absent" if value is _ABSENT else json.dumps(value, sort_keys=True)
