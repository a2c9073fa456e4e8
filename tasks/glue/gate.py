"""The promotion gate: does a newly evaluated model version replace the champion? Pure logic.

Inputs are the evaluation records of the candidate and of the champion (`EvalRecord`, one per evaluation run)
and, when the per-example predictions were logged, a paired bootstrap over the dev rows (`Bootstrap` with the
systems "candidate", "baseline" and, when comparable, "champion"). The output is a `Decision` whose `reason`
is one sentence a person can act on. The rules, in the order they are checked:

1. the candidate has a complete evaluation that recorded its setup, over the spec's whole task set: a
   `--tasks` subset never promotes;
2. the compared tasks are `tasks` (the spec's `gate.tasks`), else the champion's whole task set, else the
   candidate's; the candidate must cover them;
3. a candidate that already is the champion is not promoted again;
4. the floor: on every compared task the candidate beats the trivial baseline (majority class, mean score)
   on the same dev rows by the margin, the first champion too;
5. no champion: promote;
6. the champion's record is complete, covers the compared tasks and has the same setup (dev data, row
   counts, protocol) on them; a refusal names the first field that differs and the command that re-evaluates
   the champion to match;
7. the gain (candidate minus champion, GLUE score over exactly the compared tasks) is positive and clears
   the margin: with `require="point"` the point estimate, with `require="ci"` the lower bound of its paired
   bootstrap interval.

The margin: an explicit number (fraction, 0.005 = half a GLUE point), or `None` = "auto", the larger of the
two noises that are measured: the standard deviation over seeds when the records ran several (training noise;
the larger of the two records'), and twice the paired bootstrap standard error of the very difference being
tested (dev-sample noise, about the 95% half-width). One seed's or one dev sample's luck is then never a gain.

    decide(candidate, champion, margin=None, require="ci", evidence=bootstrap)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from tasks.glue.bootstrap import Bootstrap
from tasks.glue.metrics import glue_score, per_task_scores
from tasks.glue.protocol import EvalSetup, first_difference
from tasks.glue.tasks import TASK_NAMES, parse_task_list, result_keys

# Scores are means of float metrics: a difference that equals the margin on paper can come out
# 1e-17 short (0.83 - 0.82 = 0.00999...). Differences within this of the margin count as meeting it,
# and a gain within it of zero counts as a tie.
_EPS = 1e-12

Require = Literal["point", "ci"]


@dataclass(frozen=True)
class EvalRecord:
    """What one GLUE evaluation run left for a registered model version."""

    version: str
    status: str  # "complete" | "failed" | "running"; anything but "complete" is incomplete
    tasks: tuple[str, ...]  # HF task names evaluated
    results: dict[str, dict[str, float]]  # result key ("sst2", "mnli_matched", ...) -> metrics (fractions)
    setup: EvalSetup | None = None  # None: a record from before setups were kept (never compared)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)  # result key -> trivial guess's metrics
    seed_scores: dict[str, list[float]] = field(default_factory=dict)  # task -> its score per seed
    model: str = ""  # registered name, for the fix commands
    run_id: str | None = None  # the evaluation's parent MLflow run


@dataclass(frozen=True)
class Decision:
    """The gate's answer, with the numbers it was based on."""

    promote: bool
    reason: str  # one sentence with both scores and the margin
    candidate_score: float | None  # GLUE score over `tasks`; None when it could not be computed
    champion_score: float | None
    margin: float
    tasks: tuple[str, ...]  # the compared tasks, in TASK_NAMES order
    checks: tuple[str, ...] = ()  # one line per rule that was checked (floors, setup, gain), for the report
    gain_low: float | None = None  # the lower bound of the gain's interval, when bootstrapped
    gain_high: float | None = None


def decide(
    candidate: EvalRecord | None,
    champion: EvalRecord | None,
    *,
    margin: float | None,
    tasks: Sequence[str] | None = None,
    require: Require = "point",
    evidence: Bootstrap | None = None,
    floor: bool = True,
    max_contamination: float | None = None,
) -> Decision:
    """Promote the candidate over the champion, or refuse and say why (rules in the module docstring).

    champion=None means there is no champion yet; a champion that was never evaluated should come as an
    EvalRecord with a status other than "complete", so it is refused rather than silently replaced.
    `margin` None is "auto" (module docstring); `floor=False` skips rule 4 (plumbing tests only);
    `max_contamination` (a fraction) refuses a candidate any of whose compared dev sets has more of its
    examples in the pretraining corpus, or whose contamination was not checked. Unknown names in `tasks`, a negative margin or an unknown
    `require` raise ValueError (a configuration error); everything wrong with the records is a refusal.
    """
    if margin is not None and not (math.isfinite(margin) and margin >= 0):
        raise ValueError(f"margin must be a finite number >= 0 (a fraction, 0.005 = 0.5 points), got {margin}")
    if require not in ("point", "ci"):
        raise ValueError(f"require must be 'point' or 'ci', got {require!r}")
    wanted = _ordered(parse_task_list(list(tasks))) if tasks is not None else None
    checks: list[str] = []
    shown_margin = margin or 0.0

    def refuse(why: str, compared: tuple[str, ...], cand: float | None = None, champ: float | None = None,
               low: float | None = None, high: float | None = None) -> Decision:
        return Decision(False, f"Not promoted: {why}.", cand, champ, shown_margin, compared, tuple(checks), low, high)

    if candidate is None:
        return refuse("the candidate has no GLUE evaluation", wanted or ())
    v = candidate.version
    if candidate.status != "complete":
        return refuse(f"candidate {v}'s evaluation is {candidate.status!r}, not complete", wanted or ())
    if candidate.setup is None:
        return refuse(f"candidate {v}'s evaluation recorded no setup (dev data, protocol); re-evaluate it with "
                      f"`{_glue_command(candidate, candidate.tasks)}`", wanted or ())
    if not candidate.setup.full:
        return refuse(f"candidate {v} was evaluated on a subset ({', '.join(candidate.tasks)}) of its spec's "
                      f"tasks; a subset never promotes: evaluate the whole task set", wanted or ())
    if wanted is None:
        source = champion if champion is not None and champion.status == "complete" else candidate
        try:
            wanted = _ordered(parse_task_list(list(source.tasks)))
        except ValueError as e:
            return refuse(f"the task list of version {source.version} is unusable ({e})", ())
    missing = _missing(candidate, wanted)
    if missing:
        return refuse(f"candidate {v} has no results for {', '.join(missing)}, which the gate compares on", wanted)
    try:
        cand = glue_score(_subset(candidate.results, wanted))
    except ValueError as e:
        return refuse(f"candidate {v}'s results cannot be scored ({e})", wanted)
    on = f"on {', '.join(wanted)}"
    if champion is not None and champion.version == v:
        return refuse(f"{v} already is the champion (GLUE {_pts(cand)} {on})", wanted, cand)

    below = _check_floors(candidate, wanted, margin, require, evidence, checks) if floor else None
    if below is not None:
        return refuse(below, wanted, cand)
    if not floor:
        checks.append("floor: off (gate.floor: false)")
    if max_contamination is not None:
        dirty = _check_contamination(candidate, wanted, max_contamination, checks)
        if dirty is not None:
            return refuse(dirty, wanted, cand)
    if champion is None:
        beats = "beats every trivial baseline" if floor else "was not checked against the baselines (floor off)"
        return Decision(True, f"Promoted: candidate {v} scores GLUE {_pts(cand)} {on}, {beats}, and there is "
                        f"no champion to beat.", cand, None, shown_margin, wanted,
                        tuple(checks))

    c = champion.version
    if champion.status != "complete":
        return refuse(f"champion {c}'s evaluation is {champion.status!r}, so candidate {v}'s GLUE {_pts(cand)} "
                      f"{on} has nothing comparable; re-evaluate the champion with "
                      f"`{_glue_command(champion, wanted, candidate)}`", wanted, cand)
    missing = _missing(champion, wanted)
    if missing:
        return refuse(f"champion {c} was not evaluated on {', '.join(missing)}, so candidate {v}'s GLUE "
                      f"{_pts(cand)} {on} has nothing comparable; re-evaluate the champion with "
                      f"`{_glue_command(champion, wanted, candidate)}`", wanted, cand)
    if champion.setup is None:
        return refuse(f"champion {c}'s evaluation recorded no setup, so it cannot be compared like with like; "
                      f"re-evaluate it with `{_glue_command(champion, wanted, candidate)}`", wanted, cand)
    differs = first_difference(candidate.setup, champion.setup, wanted)
    if differs:
        return refuse(f"candidate {v} and champion {c} were not evaluated alike ({differs}); re-evaluate the "
                      f"champion to match with `{_glue_command(champion, wanted, candidate)}`", wanted, cand)
    checks.append(f"setup: same dev data, row counts and protocol {on}")
    try:
        champ = glue_score(_subset(champion.results, wanted))
    except ValueError as e:
        return refuse(f"champion {c}'s results cannot be scored ({e})", wanted, cand)

    gain = cand - champ
    paired = evidence is not None and "champion" in evidence.points
    interval = evidence.gain_interval("candidate", "champion", list(wanted)) if paired else None
    spread = _seed_spread([candidate, champion], wanted)
    needed, source = _margin(margin, spread, interval)
    if needed is None:
        return refuse("the margin is 'auto' but there is neither a seed spread nor per-example predictions of "
                      "both versions to measure the noise with; set gate.margin or re-evaluate with seeds",
                      wanted, cand, champ)
    shown_margin = needed
    if require == "ci" and interval is None:
        return refuse("gate.require is 'ci' but the per-example predictions of both versions are not both "
                      "available to bootstrap the gain; re-evaluate the champion with "
                      f"`{_glue_command(champion, wanted, candidate)}`", wanted, cand, champ)
    tested = interval.low if require == "ci" else gain
    promote = gain > _EPS and tested > _EPS and tested >= needed - _EPS  # a float-noise "gain" is a tie
    low, high = (interval.low, interval.high) if interval else (None, None)
    ci = f" (95% interval {low * 100:+.2f} to {high * 100:+.2f})" if interval else ""
    what = "the lower bound of the gain" if require == "ci" else "the gain"
    checks.append(f"gain: {gain * 100:+.2f} points{ci}; margin {_pts(needed)} ({source})")
    verdict = "Promoted" if promote else "Not promoted"
    return Decision(
        promote,
        f"{verdict}: candidate {v} scores GLUE {_pts(cand)} vs champion {c}'s {_pts(champ)} {on}, a gain of "
        f"{gain * 100:+.2f} points{ci}; {what} must reach the margin of {_pts(needed)} ({source}).",
        cand, champ, needed, wanted, tuple(checks), low, high,
    )


def _check_floors(record: EvalRecord, tasks: Sequence[str], margin: float | None, require: Require,
                  evidence: Bootstrap | None, checks: list[str]) -> str | None:
    """Rule 4: None when every task beats its trivial baseline by the margin, else the refusal."""
    missing = [k for t in tasks for k in result_keys(t) if k not in record.baselines]
    if missing:
        return (f"candidate {record.version}'s record has no trivial baseline for {', '.join(missing)}; "
                f"re-evaluate it with `{_glue_command(record, tasks)}`")
    if require == "ci" and (evidence is None or "baseline" not in evidence.points):
        return (f"gate.require is 'ci' but candidate {record.version}'s per-example predictions are not "
                "available to bootstrap; re-evaluate it")
    scores = per_task_scores(_subset(record.results, tasks))
    floors = per_task_scores(_subset(record.baselines, tasks))
    for t in tasks:
        gain = scores[t] - floors[t]
        interval = evidence.task_gain_interval("candidate", "baseline", t) \
            if evidence is not None and "baseline" in evidence.points and t in evidence.points["candidate"] else None
        needed, source = _margin(margin, _seed_spread([record], [t]), interval)
        if needed is None:
            return (f"the margin is 'auto' but {t} has neither a seed spread nor per-example predictions to "
                    "measure the noise with; set gate.margin or re-evaluate")
        tested = interval.low if require == "ci" and interval is not None else gain
        line = (f"floor {t}: {_pts(scores[t])} vs trivial baseline {_pts(floors[t])}, "
                f"gain {gain * 100:+.2f}" + (f" (interval {interval.low * 100:+.2f} to {interval.high * 100:+.2f})"
                                             if interval else "") + f", margin {_pts(needed)} ({source})")
        checks.append(line)
        if not (gain > _EPS and tested > _EPS and tested >= needed - _EPS):
            what = "the lower bound of its gain over" if require == "ci" else "its gain over"
            return (f"candidate {record.version} does not beat the trivial baseline on {t}: {_pts(scores[t])} "
                    f"against {_pts(floors[t])} (majority class / mean score on the same dev rows); {what} the "
                    f"baseline must reach the margin of {_pts(needed)} ({source})")
    return None


def _margin(margin: float | None, spread: float | None, interval) -> tuple[float | None, str]:
    """The margin a comparison must clear, and where it came from (module docstring)."""
    if margin is not None:
        return margin, "gate.margin"
    options = []
    if spread is not None:
        options.append((spread, "auto: std over seeds"))
    if interval is not None:
        options.append((2 * interval.stderr, "auto: 2 bootstrap standard errors"))
    return max(options) if options else (None, "auto")


def _seed_spread(records: Sequence[EvalRecord], tasks: Sequence[str]) -> float | None:
    """The larger std (over seeds) of the mean score over `tasks`, among records that ran >= 2 seeds."""
    spreads = []
    for r in records:
        per_seed = [r.seed_scores.get(t, []) for t in tasks]
        if per_seed and all(len(s) >= 2 and len(s) == len(per_seed[0]) for s in per_seed):
            spreads.append(float(np.std(np.mean(per_seed, axis=0), ddof=1)))
    return max(spreads) if spreads else None


def _check_contamination(candidate: EvalRecord, wanted: Sequence[str], limit: float,
                         checks: list[str]) -> str | None:
    """None when every compared dev set's contamination rate (recorded in the setup) is at most `limit`."""
    rates = (candidate.setup.extra or {}).get("contamination") if candidate.setup else None
    if rates is None:
        return (f"gate.max_contamination is {limit:.1%} but candidate {candidate.version}'s contamination was not "
                "checked (its lineage names no curated corpus here, or contamination.enabled is false)")
    for key in (k for t in wanted for k in result_keys(t)):
        if key in rates and rates[key] > limit:
            return (f"{rates[key]:.1%} of {key}'s dev examples occur in the pretraining corpus, over "
                    f"gate.max_contamination {limit:.1%}; score on a clean dev set or decontaminate the corpus")
    checks.append(f"contamination: every dev set at most {limit:.1%}")
    return None


def _glue_command(record: EvalRecord, tasks: Sequence[str], like: EvalRecord | None = None) -> str:
    """The command that (re-)evaluates `record`'s version with the setup of `like` (default: its own)."""
    setup = (like or record).setup
    spec = f" --spec {setup.spec_path}" if setup is not None and setup.spec_path else ""
    return f"lmpipe glue models:/{record.model or '<name>'}/{record.version} --tasks {','.join(tasks)}{spec}"


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

