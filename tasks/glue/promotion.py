"""The promotion gate against the registry: find the records to compare, bootstrap them, decide, move `champion`.

    outcome = run_gate("sample-bert", version="3", gate=spec.gate, tracking_uri=uri)

The candidate is the version given (the one the pipeline's GLUE stage evaluated), else `@candidate`. Its
record is its newest complete evaluation of the whole task set; the champion's is the newest complete one
evaluated like the candidate (`tasks.glue.records.choose_record`). When both logged per-example predictions
of the same dev rows, a paired bootstrap (`tasks.glue.bootstrap`) gives the intervals the gate reads; the
trivial baseline is scored on the candidate's own dev rows. A promotion moves `champion` for the base model
and every task model of that version, or for none (`tasks.registry.evaluations.move_champion`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from mlflow.exceptions import MlflowException

from data_specs.glue import GateSpec
from tasks.glue.baselines import trivial_predictions
from tasks.glue.bootstrap import Bootstrap, paired_bootstrap
from tasks.glue.gate import Decision, EvalRecord, decide
from tasks.glue.protocol import first_difference
from tasks.glue.records import choose_record
from tasks.glue.tasks import parse_task_list, result_keys
from tasks.registry.evaluations import (ChampionMoveError, client, list_records, load_predictions,
                                        move_champion)


@dataclass(frozen=True)
class GateOutcome:
    decision: Decision
    candidate: EvalRecord | None
    champion: EvalRecord | None
    moved: list[str]


def run_gate(name: str, *, gate: GateSpec, tracking_uri: str, version: str | None = None,
             margin: float | None = None, tasks: list[str] | None = None) -> GateOutcome:
    """Decide on `name` v`version` (default: `@candidate`) against `@champion`, and move the alias on a yes.

    `margin`/`tasks` override the gate spec's (None keeps them)."""
    c = client(tracking_uri)
    version = version or _alias_version(c, name, "candidate")
    wanted = parse_task_list(tasks) if tasks else (list(gate.tasks) if gate.tasks else None)
    margin_value = margin if margin is not None else (None if gate.margin == "auto" else float(gate.margin))
    candidate = _candidate_record(name, version, tracking_uri) if version else None
    champion_version = _alias_version(c, name, "champion")
    champion = None
    if champion_version is not None:
        records = list_records(name, champion_version, tracking_uri)
        champion = choose_record(records, candidate, wanted or (candidate.tasks if candidate else ())) \
            or EvalRecord(champion_version, "missing", (), {}, model=name)
    evidence = _evidence(candidate, champion, wanted, gate, tracking_uri)
    decision = decide(candidate, champion, margin=margin_value, tasks=wanted, require=gate.require,
                      evidence=evidence, floor=gate.floor, max_contamination=gate.max_contamination)
    moved: list[str] = []
    if decision.promote:
        try:
            moved = move_champion(name, candidate.version, list(candidate.tasks), tracking_uri)
        except ChampionMoveError as exc:
            decision = replace(decision, promote=False, reason=f"Not promoted: {exc}.")
    return GateOutcome(decision, candidate, champion, moved)


def log_decision(name: str, outcome: GateOutcome, *, experiment: str, tracking_uri: str,
                 flow_run_id: str) -> dict:
    """The decision in MLflow (a run of its own; tags on the candidate version) and in words (markdown).

    Returns {"promoted", "reason", "candidate_score", "champion_score", "margin", "tasks", "moved", "run_id",
    "checks", "markdown"}."""
    from tasks.registry.tracking import ensure_experiment

    decision, candidate, champion, moved = outcome.decision, outcome.candidate, outcome.champion, outcome.moved
    c = client(tracking_uri)
    run = c.create_run(ensure_experiment(experiment, tracking_uri), run_name=f"promote-{name}", tags={
        "lmpipe.gate.model": name, "lmpipe.gate.promoted": str(decision.promote).lower(),
        "lmpipe.gate.reason": decision.reason[:5000],
        "lmpipe.gate.candidate_version": candidate.version if candidate else "none",
        "lmpipe.gate.champion_version": champion.version if champion else "none",
        "lmpipe.gate.candidate_record": (candidate.run_id or "none") if candidate else "none",
        "lmpipe.gate.champion_record": (champion.run_id or "none") if champion else "none",
        "lmpipe.prefect_flow_run_id": flow_run_id})
    for key, value in (("candidate_score", decision.candidate_score), ("champion_score", decision.champion_score),
                       ("margin", decision.margin), ("gain_low", decision.gain_low), ("gain_high", decision.gain_high)):
        if value is not None:
            c.log_metric(run.info.run_id, key, value)
    c.log_text(run.info.run_id, "\n".join(decision.checks), "gate_checks.txt")
    c.set_terminated(run.info.run_id, status="FINISHED")
    if candidate is not None and candidate.version != "local":
        c.set_model_version_tag(name, candidate.version, "lmpipe.gate.decision",
                                "promoted" if decision.promote else "refused")
        c.set_model_version_tag(name, candidate.version, "lmpipe.gate.reason", decision.reason[:5000])
    verdict = "PROMOTED" if decision.promote else "REFUSED"
    markdown = "\n".join([
        f"# Promotion gate for `{name}`: **{verdict}**", "", decision.reason, "",
        f"- candidate v{candidate.version if candidate else '-'}: {_pct(decision.candidate_score)}",
        f"- champion v{champion.version if champion else '-'}: {_pct(decision.champion_score)}",
        f"- margin: {decision.margin * 100:.2f} points; tasks: {', '.join(decision.tasks) or '-'}",
        *(f"- {line}" for line in decision.checks),
        *(f"- moved `champion`: {m}" for m in moved)])
    return {"promoted": decision.promote, "reason": decision.reason, "candidate_score": decision.candidate_score,
            "champion_score": decision.champion_score, "margin": decision.margin, "tasks": list(decision.tasks),
            "moved": moved, "run_id": run.info.run_id, "checks": list(decision.checks), "markdown": markdown}


def _pct(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value * 100:.2f}"


def _candidate_record(name: str, version: str, tracking_uri: str) -> EvalRecord | None:
    """The version's newest complete evaluation of its spec's whole task set, else its newest record."""
    records = list_records(name, version, tracking_uri)
    for r in records:
        if r.status == "complete" and r.setup is not None and r.setup.full:
            return r
    return records[0] if records else None


def _evidence(candidate: EvalRecord | None, champion: EvalRecord | None, wanted: list[str] | None,
              gate: GateSpec, tracking_uri: str) -> Bootstrap | None:
    """The paired bootstrap of candidate, baseline and (when evaluated alike) champion; None without files."""
    if candidate is None or candidate.status != "complete" or candidate.run_id is None:
        return None
    tasks = wanted or (list(champion.tasks) if champion is not None and champion.status == "complete" and
                       champion.tasks else list(candidate.tasks))
    keys = [k for t in tasks for k in result_keys(t)]
    if any(k not in candidate.results for k in keys):
        return None
    try:
        mine = load_predictions(candidate.run_id, keys, tracking_uri)
    except (MlflowException, OSError, ValueError):
        return None
    labels = {k: mine[k][0] for k in keys}
    systems = {"candidate": {k: mine[k][1] for k in keys},
               "baseline": {k: trivial_predictions(k, labels[k]) for k in keys}}
    if (champion is not None and champion.status == "complete" and champion.run_id and champion.setup is not None
            and candidate.setup is not None and first_difference(candidate.setup, champion.setup, tasks) is None):
        try:
            theirs = load_predictions(champion.run_id, keys, tracking_uri)
            if all(np.array_equal(theirs[k][0], labels[k]) for k in keys):  # the same rows, in the same order
                systems["champion"] = {k: theirs[k][1] for k in keys}
        except (MlflowException, OSError, ValueError):
            pass
    return paired_bootstrap(labels, systems, n_resamples=gate.bootstrap_resamples, seed=gate.bootstrap_seed)


def _alias_version(c, name: str, alias: str) -> str | None:
    try:
        return str(c.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None
