"""The promotion gate: does a newly evaluated model version replace the champion? Pure logic.

Inputs are what the GLUE evaluation left on each registered version (`EvalRecord`); the output is a
`Decision` whose `reason` is one sentence a person can act on. The rules, in the order they are checked:

1. the candidate must have an evaluation, with status "complete", holding results for every compared
   task (tasks=None compares the candidate's own task set);
2. a candidate that already is the champion (same version) is not promoted again;
3. no champion -> promote;
4. the champion's evaluation must be complete and cover the compared tasks: scores from different task
   sets are never compared;
5. promote iff candidate_score > champion_score and candidate_score - champion_score >= margin, where both
   scores are `glue_score` over exactly the compared tasks (fractions, as the metrics are).

    decide(candidate, champion, margin=0.005)   # needs +0.5 GLUE points over the champion
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tasks.glue.metrics import glue_score
from tasks.glue.tasks import TASK_NAMES, parse_task_list, result_keys

# Scores are means of float metrics: a difference that equals the margin on paper can come out
# 1e-17 short (0.83 - 0.82 = 0.00999...). Differences within this of the margin count as meeting it,
# and a gain within it of zero counts as a tie.
_EPS = 1e-12


@dataclass(frozen=True)
class EvalRecord:
    """What a GLUE evaluation left on one registered model version."""

    version: str
    status: str  # "complete" | "failed" | "running"; anything but "complete" is incomplete
    tasks: tuple[str, ...]  # HF task names evaluated
    results: dict[str, dict[str, float]]  # result key ("sst2", "mnli_matched", ...) -> metrics (fractions)


@dataclass(frozen=True)
class Decision:
    """The gate's answer, with the numbers it was based on."""

    promote: bool
    reason: str  # one sentence with both scores and the margin
    candidate_score: float | None  # GLUE score over `tasks`; None when it could not be computed
    champion_score: float | None
    margin: float
    tasks: tuple[str, ...]  # the compared tasks, in TASK_NAMES order


def decide(
    candidate: EvalRecord | None,
    champion: EvalRecord | None,
    *,
    margin: float,
    tasks: Sequence[str] | None = None,
) -> Decision:
    """Promote the candidate over the champion, or refuse and say why (rules in the module docstring).

    champion=None means there is no champion yet; a champion that was never evaluated should come as an
    EvalRecord with a status other than "complete", so it is refused rather than silently replaced.
    `margin` is in score units (fractions: 0.005 = half a GLUE point) and must be >= 0. Unknown names in
    `tasks` raise ValueError (a configuration error); everything wrong with the records is a refusal.
    """
    if not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a finite number >= 0 (a fraction, 0.005 = 0.5 points), got {margin}")
    wanted = _ordered(parse_task_list(list(tasks))) if tasks is not None else None

    def refuse(why: str, compared: tuple[str, ...], cand: float | None = None, champ: float | None = None) -> Decision:
        return Decision(False, f"Not promoted: {why}.", cand, champ, margin, compared)

    if candidate is None:
        return refuse("the candidate has no GLUE evaluation", wanted or ())
    if wanted is None:
        try:
            wanted = _ordered(parse_task_list(list(candidate.tasks)))
        except ValueError as e:
            return refuse(f"candidate {candidate.version}'s task list is unusable ({e})", ())
    if candidate.status != "complete":
        return refuse(f"candidate {candidate.version}'s evaluation is {candidate.status!r}, not complete", wanted)
    missing = _missing(candidate, wanted)
    if missing:
        return refuse(f"candidate {candidate.version} has no results for {', '.join(missing)}", wanted)
    try:
        cand = glue_score(_subset(candidate.results, wanted))
    except ValueError as e:
        return refuse(f"candidate {candidate.version}'s results cannot be scored ({e})", wanted)
    on = f"on {', '.join(wanted)}"

    if champion is not None and champion.version == candidate.version:
        return refuse(f"{candidate.version} already is the champion (GLUE {_pts(cand)} {on})", wanted, cand)
    if champion is None:
        return Decision(
            True,
            f"Promoted: candidate {candidate.version} scores GLUE {_pts(cand)} {on} and there is no champion "
            f"to beat (margin {_pts(margin)} not applied).",
            cand, None, margin, wanted,
        )
    if champion.status != "complete":
        return refuse(
            f"champion {champion.version}'s evaluation is {champion.status!r}, so candidate {candidate.version}'s "
            f"GLUE {_pts(cand)} {on} has nothing comparable (margin {_pts(margin)})", wanted, cand,
        )
    missing = _missing(champion, wanted)
    if missing:
        return refuse(
            f"champion {champion.version} was not evaluated on {', '.join(missing)}, so candidate "
            f"{candidate.version}'s GLUE {_pts(cand)} {on} has nothing comparable (margin {_pts(margin)}); "
            f"re-evaluate the champion on these tasks", wanted, cand,
        )
    try:
        champ = glue_score(_subset(champion.results, wanted))
    except ValueError as e:
        return refuse(f"champion {champion.version}'s results cannot be scored ({e})", wanted, cand)

    gain = cand - champ
    promote = gain > _EPS and gain >= margin - _EPS  # a float-noise "gain" on a tie is a tie
    verdict = "Promoted" if promote else "Not promoted"
    return Decision(
        promote,
        f"{verdict}: candidate {candidate.version} scores GLUE {_pts(cand)} vs champion {champion.version}'s "
        f"{_pts(champ)} {on}, a gain of {gain * 100:+.2f} points against a required margin of {_pts(margin)}.",
        cand, champ, margin, wanted,
    )


def _ordered(names: Sequence[str]) -> tuple[str, ...]:
    """Task names in TASK_NAMES order, so the same set always reads the same."""
    return tuple(t for t in TASK_NAMES if t in set(names))


def _missing(record: EvalRecord, tasks: Sequence[str]) -> list[str]:
    """Tasks with at least one result key (MNLI has two) absent from the record's results."""
    return [t for t in tasks if any(k not in record.results for k in result_keys(t))]


def _subset(results: Mapping[str, Mapping[str, float]], tasks: Sequence[str]) -> dict[str, Mapping[str, float]]:
    return {k: results[k] for t in tasks for k in result_keys(t)}


def _pts(score: float) -> str:
    """A fraction as GLUE points (percent), the way scores are published: 0.7842 -> "78.42"."""
    return f"{score * 100:.2f}"
