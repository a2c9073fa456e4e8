"""Everything a GLUE evaluation run does after its tasks trained: the GLUE score on the parent run, the
contamination rates, the report, and the evaluation record (`evaluation.json` + every task's predictions) on
the run and, for a registered base model, the version's tags the gate reads.

    summary, report, table = finish_evaluation(ctx, per_task, contamination_fn=scan)   # ctx: EvaluationContext
    write_metrics_json(summary, "out/glue.json")

No Prefect: the flow passes the contamination scan in (a Prefect task there) and turns the report and the
table into artifacts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from data_specs.glue import FinetuneSpec, GlueSpec
from tasks.common.durable import replace_durably


@dataclass
class EvaluationContext:
    """What the parent run knows when the last task finished."""

    model: str  # as the user named it: models:/... or a folder
    base: Any  # tasks.registry.evaluations.BaseModel
    spec: GlueSpec
    spec_path: str | None
    task_names: list[str]
    hps: dict[str, FinetuneSpec]
    champion: Any  # the champion's version record (tags), for the report's comparison column
    client: Any  # MlflowClient
    parent_id: str
    tracking_uri: str
    started: float  # time.time() when the flow started
    model_resolve_s: float
    spec_fingerprint: str


def finish_evaluation(ctx: EvaluationContext, per_task: dict[str, Any],
                      contamination_fn: Callable[..., dict] | None = None,
                      logger: Any = None) -> tuple[dict[str, Any], str, list[dict[str, Any]]]:
    """Score, check contamination, report and store the record: (the summary the flow returns, the markdown
    report, the table rows)."""
    from tasks.common.faults import fault_point
    from tasks.glue.contamination_scan import clean_subset_scores
    from tasks.glue.gate import EvalRecord
    from tasks.glue.metrics import glue_score
    from tasks.glue.protocol import EvalSetup
    from tasks.registry.evaluations import log_record_files, store_record

    c, parent_id, base, names = ctx.client, ctx.parent_id, ctx.base, ctx.task_names
    results = {k: v for t in names for k, v in per_task[t]["results"].items()}
    fault_point("glue.finish", base.name)  # the fault suite: a crash after every task trained and registered
    scores_only = {k: {m: v for m, v in r.items() if m not in ("n_train", "n_eval")} for k, r in results.items()}
    score = glue_score(scores_only)
    for key, metrics in scores_only.items():
        for metric, value in metrics.items():
            c.log_metric(parent_id, f"{key}_{metric}", value)
    c.log_metric(parent_id, "glue_score", score)
    first = per_task[names[0]].get("first_step_at")
    startup_s = (first - ctx.started) if first else None
    if startup_s is not None:
        c.log_metric(parent_id, "startup_s_to_first_step", startup_s)

    contamination = None
    if ctx.spec.contamination.enabled and base.curated_dir and os.path.isdir(base.curated_dir) and contamination_fn:
        contamination = contamination_fn(base.curated_dir, names, ctx.spec,
                                         {t: ctx.hps[t].max_eval_examples for t in names})
        clean = clean_subset_scores(contamination, {k: v for t in names for k, v in per_task[t]["predictions"].items()})
        for key, r in contamination.items():
            c.log_metric(parent_id, f"contamination_rate_{key}", r["rate"])
            if key in clean:  # the score on the dev rows the corpus does not hold
                r["clean"] = clean[key]
                for metric, value in clean[key].items():
                    c.log_metric(parent_id, f"{key}_{metric}_clean" if metric != "n_clean" else f"{key}_n_clean",
                                 value)
        c.log_dict(parent_id, contamination, "contamination.json")
    elif ctx.spec.contamination.enabled and logger is not None:
        logger.info("contamination check skipped: %s names no curated corpus on this machine", ctx.model)

    summary = {
        "model": ctx.model, "base_model_name": base.name, "base_model_version": base.version,
        "glue_score": score, "tasks": results, "run_id": parent_id, "tracking_uri": ctx.tracking_uri,
        "registered": {t: per_task[t]["registered"] for t in names},
        "examples_per_s": {t: per_task[t]["examples_per_s"] for t in names},
        "startup_s_to_first_step": startup_s, "model_resolve_s": ctx.model_resolve_s, "first_step_at": first,
        "contamination": contamination,
        "spread": {k: v for t in names for k, v in per_task[t]["spread"].items()},
        "seeds": {t: per_task[t]["setup"].protocol["seeds"] for t in names},
        "reused_seeds": {t: per_task[t]["reused_seeds"] for t in names},
    }
    submission = {name: text for t in names for name, text in per_task[t].get("submission", {}).items()}
    if submission:  # `--predict`: the leaderboard zip, beside the run's storage and on the run
        from tasks.glue.submission import write_submission_zip
        from tasks.glue.task_run import storage_root

        path = write_submission_zip(submission, os.path.join(storage_root(ctx.spec), "submissions",
                                                             f"glue-{base.name}-{parent_id[:12]}.zip"))
        c.log_artifact(parent_id, str(path))
        summary["submission"] = str(path)
    report, table = _report(summary, base, ctx.champion, contamination, c, parent_id)
    setup = EvalSetup(tasks=tuple(names), per_task={t: per_task[t]["setup"] for t in names},
                      spec_fingerprint=ctx.spec_fingerprint,
                      spec_path=os.path.abspath(ctx.spec_path) if ctx.spec_path else None,
                      full=set(ctx.spec.tasks) <= set(names),
                      extra=_setup_extra(contamination, {t: per_task[t].get("chosen_trial") for t in names}))
    record = EvalRecord(
        version=base.version or "local", status="complete", tasks=tuple(names), results=scores_only,
        setup=setup, baselines={k: v for t in names for k, v in per_task[t]["baselines"].items()},
        seed_scores={t: per_task[t]["seed_scores"] for t in names}, model=base.name, run_id=parent_id)
    predictions = {k: v for t in names for k, v in per_task[t]["predictions"].items()}
    if base.version:
        store_record(record, predictions, score, ctx.tracking_uri)
        c.set_model_version_tag(base.name, base.version, "glue_score", f"{score:.4f}")
    else:  # a local folder: the record and predictions still land on the run, for the report and the user
        log_record_files(c, record, predictions, score)
    publish_model_cards(ctx, per_task, record, predictions, score, contamination)
    return summary, report, table


def _setup_extra(contamination: dict | None, chosen: dict[str, Any]) -> dict[str, Any]:
    """What the record keeps beside the setup: contamination rates (the gate's limit reads them) and the
    trial each task's search chose."""
    extra: dict[str, Any] = {}
    if contamination:
        extra["contamination"] = {k: r["rate"] for k, r in contamination.items()}
    if any(chosen.values()):
        extra["chosen_trials"] = {t: c for t, c in chosen.items() if c}
    return extra


def publish_model_cards(ctx: EvaluationContext, per_task: dict[str, Any], record: Any, predictions: dict,
                        score: float, contamination: dict | None) -> None:
    """A model card (`tasks.glue.model_card`) for the base version and every task model: the MLflow version
    description, and README.md on the run that logged it."""
    from tasks.glue.model_card import CardFacts, data_card_summary, model_card
    from tasks.glue.tasks import result_keys
    from tasks.registry.evaluations import task_model_name

    c, base = ctx.client, ctx.base
    intervals = _intervals(predictions, ctx.spec)
    common = {"lineage": dict(c.get_run(ctx.parent_id).data.tags), "baselines": record.baselines,
              "contamination": contamination, "data_card": data_card_summary(base.curated_dir),
              "n_eval": {k: n for t in ctx.task_names for k, n in per_task[t]["setup"].n_eval.items()}}
    base_card = model_card(CardFacts(
        name=base.name, version=base.version, model_uri=ctx.model, results=record.results, intervals=intervals,
        glue_score=score, protocol={t: per_task[t]["setup"].protocol for t in ctx.task_names}, **common))
    c.log_text(ctx.parent_id, base_card, "README.md")
    if base.version:
        c.update_model_version(base.name, base.version, description=base_card)
    for t in ctx.task_names:
        out, name = per_task[t], task_model_name(base.name, t)
        card = model_card(CardFacts(
            name=name, version=out.get("registered_version"), model_uri=out.get("registered", name), task=t,
            results={k: record.results[k] for k in result_keys(t) if k in record.results},
            intervals={t: intervals[t]} if t in intervals else {}, protocol={t: out["setup"].protocol}, **common))
        c.log_text(out["run_id"], card, "README.md")
        if out.get("registered_version"):
            c.update_model_version(name, out["registered_version"], description=card)


def _intervals(predictions: dict, spec: GlueSpec) -> dict[str, tuple[float, float]]:
    """task (and "glue") -> the 95% paired-bootstrap interval of this model's score on the dev rows."""
    import numpy as np

    from tasks.glue.bootstrap import paired_bootstrap

    labels = {k: np.asarray(v[0], dtype=float) for k, v in predictions.items()}
    mine = {k: np.asarray(list(v[1].values()), dtype=float) for k, v in predictions.items()}
    try:
        b = paired_bootstrap(labels, {"model": mine}, n_resamples=spec.gate.bootstrap_resamples,
                             seed=spec.gate.bootstrap_seed)
    except ValueError:
        return {}
    out = {t: (b.interval("model", t).low, b.interval("model", t).high) for t in b.points["model"]}
    glue = b.glue_interval("model")
    return {**out, "glue": (glue.low, glue.high)}


def _report(summary: dict[str, Any], base: Any, champion: Any, contamination: dict | None, c: Any,
            parent_id: str) -> tuple[str, list[dict[str, Any]]]:
    """The markdown report and the table rows (logged on the parent run) beside the champion's scores."""
    from tasks.glue.metrics import glue_score
    from tasks.glue.report import markdown_report, table_rows

    candidate = {"name": base.name, "version": base.version, "glue_score": summary["glue_score"],
                 "tasks": summary["tasks"]}
    champ = None
    if champion is not None and champion.status == "complete" and champion.results:
        keys = [k for k in summary["tasks"] if k in champion.results]
        try:  # the champion's score over the keys both were scored on (none, or half of MNLI: no column)
            champ = {"name": base.name, "version": champion.version,
                     "glue_score": glue_score({k: champion.results[k] for k in keys}),
                     "tasks": {k: champion.results[k] for k in keys}}
        except ValueError:
            champ = None
    report = markdown_report(summary["model"], candidate, champ, contamination)
    c.log_text(parent_id, report, "glue_report.md")
    c.log_dict(parent_id, {"glue_score": summary["glue_score"], "tasks": summary["tasks"]}, "glue_results.json")
    return report, table_rows(candidate, champ, contamination)


def write_metrics_json(summary: dict[str, Any], path: str) -> None:
    """{"model", "glue_score", "tasks": {key: {metric..., "n_train", "n_eval"}}, "spread", "reused_seeds",
    "timing": {...}, "submission": the leaderboard zip or null}, atomically."""
    timing = {k: summary.get(k) for k in ("startup_s_to_first_step", "model_resolve_s", "first_step_at")}
    out = {"model": summary["model"], "glue_score": summary["glue_score"], "tasks": summary["tasks"],
           "spread": summary.get("spread", {}), "reused_seeds": summary.get("reused_seeds", {}), "timing": timing,
           "submission": summary.get("submission")}
    tmp = f"{path}.tmp"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2, sort_keys=True)
    replace_durably(tmp, path)
