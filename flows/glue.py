"""GLUE flows: fine-tune and score a model on GLUE tasks with Ray Train, register the task models, gate `champion`.

    lmpipe glue models:/sample-bert@candidate --tasks rte,stsb --spec data_specs/glue/tiny_cpu.yaml
    lmpipe glue /path/to/hf-folder --name minilm --tasks sst2
    lmpipe promote sample-bert --margin 0.005        # or the spec's gate (default: margin auto)

`glue` resolves the model (a registered version is downloaded; a local folder is used in place), opens one
parent MLflow run, and runs each task as a Prefect task: load the data (local GLUE folder or the hub), encode
it, fine-tune on Ray Train (`cluster.train.ray_entry.run_finetuning`: checkpoints, resume, worker recovery),
score the dev splits with the official metrics, log a nested MLflow run with the data lineage, and register
`<base>-glue-<task>` with the alias `candidate`. The GLUE score, the table and the contamination rates land on
the parent run and, for a registered base model, on its version (what `promote` reads). A Prefect table
artifact and a markdown report put the model beside the current champion and published numbers.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import get_run_context
from prefect.runtime import flow_run as prefect_flow_run

from data_specs import SPECS_DIR, fingerprint, load_spec
from data_specs.glue import FinetuneSpec, GlueSpec
from tasks.common.durable import replace_durably

DEFAULT_SPEC = str(SPECS_DIR / "glue" / "default.yaml")
CANDIDATE, CHAMPION = "candidate", "champion"


def load_glue_spec(path: str | None) -> GlueSpec:
    """The GLUE spec at `path`, or the shipped run_glue defaults."""
    return load_spec(path or DEFAULT_SPEC, GlueSpec)


def _storage(spec: GlueSpec) -> str:
    from tasks.registry.tracking import repo_root

    return os.path.abspath(spec.scaling.storage_path or str(repo_root() / ".lmpipe" / "glue" / "runs"))


def _model_fingerprint(hf_dir: str) -> str:
    """sha256 of the folder's config and weights: a local folder's identity in run names and tags."""
    from tasks.shards.core import file_sha256

    parts = []
    for name in sorted(os.listdir(hf_dir)):
        if name == "config.json" or name.endswith((".safetensors", ".bin")):
            parts.append((name, file_sha256(os.path.join(hf_dir, name))[0]))
    return fingerprint(parts, 16)


@task(cache_policy=NO_CACHE, task_run_name="glue-{task_name}")
def finetune_glue_task(task_name: str, base: Any, hp: FinetuneSpec, spec: GlueSpec, parent_run_id: str,
                       experiment_id: str, tracking_uri: str, lineage: dict[str, str],
                       seeds: list[int] | None = None) -> dict[str, Any]:
    """One task end to end (`tasks.glue.job`): data → encode → a Ray Train job per seed (a finished one reused)
    → metrics over the seeds → nested MLflow run with the data lineage and every seed's predictions."""
    from mlflow.entities import Param

    from cluster.train.finetune import encode
    from cluster.train.ray_entry import run_finetuning
    from tasks.glue import job
    from tasks.glue.protocol import TaskSetup, protocol_of
    from tasks.glue.records import PREDICTIONS_DIR, predictions_csv
    from tasks.glue.tasks import TASKS, result_key
    from tasks.registry.evaluations import client, task_model_name

    logger = get_run_logger()
    glue_task = TASKS[task_name]
    seeds = seeds or [hp.seed]
    data = job.load_task_data(task_name, hp, spec)
    tokenizer, max_length, tokenizer_dir = job.prepare_tokenizer(base.hf_dir, hp.max_length)
    regression = glue_task.is_regression
    train_enc = encode(tokenizer, data.train.texts, data.train.labels, max_length, regression)
    eval_enc = {s: encode(tokenizer, ex.texts, ex.labels, max_length, regression) for s, ex in data.evals.items()}

    identities = data.identities()
    data_tags = {f"lmpipe.data.{split}.path": ex.source for split, ex in [("train", data.train), *data.evals.items()]}
    data_tags |= {f"lmpipe.data.{split}.sha256": ex.sha256 or "hub"
                  for split, ex in [("train", data.train), *data.evals.items()]}
    c = client(tracking_uri)
    run_id = c.create_run(experiment_id, run_name=task_model_name(base.name, task_name), tags={
        "mlflow.parentRunId": parent_run_id, "lmpipe.glue.task": task_name, **lineage, **data_tags}).info.run_id
    params = {**{k: str(v) for k, v in hp.model_dump().items()}, "max_length_used": str(max_length),
              "n_train": str(len(data.train)), "num_workers": str(spec.scaling.num_workers),
              "seeds": ",".join(map(str, seeds))}
    c.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])

    storage = _storage(spec)
    jobs_root = os.path.join(storage, "jobs", f"{base.name}-{task_name}")
    eval_fp = job.eval_fingerprint(data, max_length)
    fail_at = os.environ.get("LMPIPE_TEST_FAIL_AT_STEP")  # test hook: one worker dies after a checkpoint
    outcomes = []
    try:
        for seed in seeds:
            seed_hp = hp.model_copy(update={"seed": seed})
            # One seed: its training curves on the task run; several: a child run per seed.
            train_run = run_id if len(seeds) == 1 else c.create_run(experiment_id, run_name=f"{task_name}-seed{seed}",
                                                                    tags={"mlflow.parentRunId": run_id}).info.run_id

            def train(run_name: str, seed_hp: FinetuneSpec = seed_hp, train_run: str = train_run):
                return run_finetuning(
                    model_dir=base.hf_dir, tokenizer_dir=tokenizer_dir, train=train_enc, evals=eval_enc,
                    label_names=list(glue_task.label_names), spec=seed_hp, scaling=spec.scaling, run_name=run_name,
                    storage_path=storage, mlflow_run_id=train_run, mlflow_tracking_uri=tracking_uri,
                    fail_once_at_step=int(fail_at) if fail_at else None)

            outcome = job.run_seed(
                task_name=task_name, seed=seed, hp=seed_hp, eval_fp=eval_fp, jobs_root=jobs_root, storage=storage,
                job_fp=job.training_fingerprint(lineage.get("lmpipe.base_model_fingerprint"), task_name, seed_hp,
                                                max_length, identities["train"], len(data.train)),
                train_fn=train,
                predict_fn=lambda model_dir: job.predict_saved_model(model_dir, eval_enc, hp.eval_batch_size,
                                                                     regression))
            outcomes.append(outcome)
            if train_run != run_id:
                c.set_terminated(train_run, status="FINISHED")
    except BaseException:
        c.set_terminated(run_id, status="FAILED")
        raise

    scores = job.score_seeds(task_name, data, outcomes)
    for key, metrics in scores.results.items():
        for metric, value in metrics.items():
            if metric not in ("n_train", "n_eval"):
                c.log_metric(run_id, f"{key}_{metric}" if key != task_name else metric, value)
                if len(seeds) > 1:
                    c.log_metric(run_id, f"{key}_{metric}_std", scores.spread[key][metric])
        # Saved as soon as scored: a failure later in the flow loses none of this task's outputs.
        c.log_text(run_id, predictions_csv(*scores.predictions[key]), f"{PREDICTIONS_DIR}/{key}.csv")
    reused = [o.seed for o in outcomes if o.reused]
    c.set_tag(run_id, "lmpipe.glue.reused_seeds", ",".join(map(str, reused)) or "none")
    setup = TaskSetup(data=identities, n_train=len(data.train),
                      n_eval={result_key(task_name, s): len(ex) for s, ex in data.evals.items()},
                      protocol=protocol_of(hp.model_dump(), max_length_used=max_length, seeds=seeds))
    first = outcomes[0]
    for k, v in first.metrics.items():
        if isinstance(v, (int, float)) and k != "first_step_at":
            c.log_metric(run_id, f"final_{k}", float(v))
    logger.info("%s: %s%s", task_name, scores.results, f" (reused the finished jobs of seeds {reused})" if reused else "")
    # The run stays open: the model is registered (and the run finished) only once every task has succeeded.
    return {"results": scores.results, "spread": scores.spread, "baselines": scores.baselines,
            "predictions": scores.predictions, "seed_scores": scores.seed_scores, "setup": setup,
            "model_dir": first.model_dir, "run_id": run_id, "max_length": max_length, "reused_seeds": reused,
            "final_step": first.final_step, "resumed_from_step": first.resumed_from_step,
            "examples_per_s": first.metrics.get("examples_per_s"), "first_step_at": first.metrics.get("first_step_at")}


@task(cache_policy=NO_CACHE, task_run_name="register-glue-{task_name}")
def register_glue_model_task(task_name: str, base: Any, model_dir: str, run_id: str, tracking_uri: str,
                             lineage: dict[str, str], max_length: int | None = None) -> dict[str, str]:
    """Register `<base>-glue-<task>` with the alias `candidate` and finish the task's MLflow run; serving cuts
    inputs at the `max_length` the model was fine-tuned and scored with."""
    from tasks.glue.tasks import TASKS
    from tasks.registry.core import log_and_register_classifier
    from tasks.registry.evaluations import BASE_NAME, BASE_VERSION, client, task_model_name

    glue_task = TASKS[task_name]
    registered = log_and_register_classifier(
        model_dir, registered_model=task_model_name(base.name, task_name), run_id=run_id,
        tracking_uri=tracking_uri, glue_task=task_name, text_columns=list(glue_task.text_columns),
        label_names=list(glue_task.label_names), max_length=max_length,
        tags={**lineage, BASE_NAME: base.name, BASE_VERSION: base.version or "local", "lmpipe.glue.task": task_name},
        alias=CANDIDATE,
    )
    client(tracking_uri).set_terminated(run_id, status="FINISHED")
    return {"uri": registered.uri, "version": registered.version}


def preflight_data(task_names: list[str], spec: GlueSpec) -> None:
    """Read every task's splits before any training, so a missing or malformed file fails the run before a
    single model is trained or registered (local folders only; the hub is read by the tasks)."""
    from tasks.glue.data import load_glue_split
    from tasks.glue.tasks import TASKS

    if spec.data.dir is None:
        return
    for name in task_names:
        for split in ("train", *TASKS[name].eval_splits):
            load_glue_split(name, split, spec.data.dir)


@task(cache_policy=NO_CACHE)
def contamination_task(curated_dir: str, task_names: list[str], spec: GlueSpec, max_eval: dict[str, int | None]):
    """n-gram overlap of the pretraining corpus with every dev split that was scored."""
    from tasks.glue.contamination import EvalNgramIndex, iter_curated_documents
    from tasks.glue.data import load_glue_split
    from tasks.glue.tasks import TASKS, result_key

    examples = {}
    for name in task_names:
        for split in TASKS[name].eval_splits:
            ex = load_glue_split(name, split, spec.data.dir, hub_repo=spec.data.hub_repo)
            ex = ex.head(max_eval[name]) if max_eval.get(name) else ex
            examples[result_key(name, split)] = list(zip(*ex.texts))
    index = EvalNgramIndex(examples, n=spec.contamination.ngram, short_fields=spec.contamination.short_fields)
    index.scan(iter_curated_documents(curated_dir))
    out = {}
    for key, r in index.results().items():
        out[key] = {"n_examples": r.n_examples, "n_contaminated": r.n_contaminated, "rate": r.rate,
                    "contaminated": list(r.contaminated),
                    "examples": [" ||| ".join(examples[key][i]) for i in list(r.contaminated)[:5]]}
    return out


def _overrides(**flags: Any) -> dict[str, Any]:
    return {k: v for k, v in flags.items() if v is not None}


@flow(name="glue", log_prints=True)
def glue(
    model: str,
    tasks: list[str] | None = None,
    spec_path: str | None = None,
    data_dir: str | None = None,
    name: str | None = None,
    overrides: dict[str, Any] | None = None,
    metrics_json: str | None = None,
) -> dict[str, Any]:
    """Fine-tune and score `model` on GLUE; returns {"model", "glue_score", "tasks": {key: metrics + counts}, ...}.

    `overrides` (epochs, lr, batch_size, max_length, seed, max_train_examples, ...) apply to every task run.
    """
    import mlflow

    from tasks.glue.metrics import glue_score
    from tasks.glue.tasks import parse_task_list
    from tasks.registry.evaluations import read_eval_record, resolve_base_model, set_eval_status
    from tasks.registry.tracking import ensure_experiment, git_commit

    started = time.time()
    logger = get_run_logger()
    spec = load_glue_spec(spec_path)
    data_dir = data_dir or spec.data.dir
    if data_dir is not None:  # absolute: the lineage tags name the files, wherever the run started
        spec = spec.model_copy(update={"data": spec.data.model_copy(update={"dir": os.path.abspath(data_dir)})})
    task_names = parse_task_list(tasks if tasks is not None else spec.tasks)
    hps = {t: spec.for_task(t, **(overrides or {})) for t in task_names}
    preflight_data(task_names, spec)
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or spec.mlflow.tracking_uri or _default_uri()
    experiment_id = ensure_experiment(spec.mlflow.experiment, tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    # Under the run storage, not /tmp: on a multi-node cluster that is the shared mount the workers read from.
    os.makedirs(_storage(spec), exist_ok=True)
    download = tempfile.mkdtemp(prefix="model-", dir=_storage(spec))
    t_model = time.time()
    base = resolve_base_model(model, tracking_uri, download, name)  # a registry download for models:/ URIs
    model_resolve_s = time.time() - t_model
    spec_fp = fingerprint(spec.model_dump(mode="json", exclude={"scaling", "mlflow", "gate"}))
    lineage = {
        "lmpipe.base_model": model, "lmpipe.base_model_name": base.name,
        "lmpipe.base_model_version": base.version or "local",
        "lmpipe.base_model_fingerprint": _model_fingerprint(base.hf_dir),
        "lmpipe.glue_spec_fingerprint": spec_fp,
        "lmpipe.git_commit": git_commit() or "unknown",
        "lmpipe.prefect_flow_run_id": str(get_run_context().flow_run.id),
    }
    if base.run_id:
        lineage["lmpipe.base_model_run_id"] = base.run_id
    c = mlflow.MlflowClient(tracking_uri)
    parent = c.create_run(experiment_id, run_name=f"glue-{base.name}" + (f"-v{base.version}" if base.version else ""),
                          tags={**lineage, "lmpipe.glue.tasks": ",".join(task_names)})
    parent_id = parent.info.run_id
    if base.version:
        set_eval_status(base.name, base.version, "running", tracking_uri, run_id=parent_id, tasks=task_names)
    champion = read_eval_record(base.name, CHAMPION, tracking_uri) if base.version else None

    per_task: dict[str, Any] = {}
    try:
        for t in task_names:
            per_task[t] = finetune_glue_task(t, base, hps[t], spec, parent_id, experiment_id, tracking_uri, lineage,
                                             seeds=spec.seeds_for(t, (overrides or {}).get("seed")))
        for t in task_names:  # every task succeeded: now, and only now, the task models are registered
            reg = register_glue_model_task(t, base, per_task[t]["model_dir"], per_task[t]["run_id"], tracking_uri,
                                           lineage, max_length=per_task[t]["max_length"])
            per_task[t]["registered"] = reg["uri"]
        summary = _finish_evaluation(model, base, spec, spec_path, task_names, hps, per_task, champion, c, parent_id,
                                     tracking_uri, started, model_resolve_s, spec_fp, logger)
    except BaseException:
        for t, out in per_task.items():
            if "registered" not in out:
                c.set_terminated(out["run_id"], status="FAILED")
        c.set_terminated(parent_id, status="FAILED")
        if base.version:
            set_eval_status(base.name, base.version, "failed", tracking_uri, run_id=parent_id)
        raise
    c.set_terminated(parent_id, status="FINISHED")
    if metrics_json:
        write_metrics_json(summary, metrics_json)
    return summary


def _finish_evaluation(model: str, base: Any, spec: GlueSpec, spec_path: str | None, task_names: list[str],
                       hps: dict[str, FinetuneSpec], per_task: dict[str, Any], champion: Any, c: Any, parent_id: str,
                       tracking_uri: str, started: float, model_resolve_s: float, spec_fp: str,
                       logger: Any) -> dict[str, Any]:
    """Everything after training: the GLUE score, contamination, the report, and the evaluation record."""
    from tasks.glue.gate import EvalRecord
    from tasks.glue.metrics import glue_score
    from tasks.glue.protocol import EvalSetup
    from tasks.registry.evaluations import log_record_files, store_record

    from tasks.common.faults import fault_point

    results = {k: v for t in task_names for k, v in per_task[t]["results"].items()}
    fault_point("glue.finish", base.name)  # the fault suite: a crash after every task trained and registered
    scores_only = {k: {m: v for m, v in r.items() if m not in ("n_train", "n_eval")} for k, r in results.items()}
    score = glue_score(scores_only)
    for key, metrics in scores_only.items():
        for metric, value in metrics.items():
            c.log_metric(parent_id, f"{key}_{metric}", value)
    c.log_metric(parent_id, "glue_score", score)
    first = per_task[task_names[0]].get("first_step_at")
    startup_s = (first - started) if first else None
    if startup_s is not None:
        c.log_metric(parent_id, "startup_s_to_first_step", startup_s)

    contamination = None
    if spec.contamination.enabled and base.curated_dir and os.path.isdir(base.curated_dir):
        contamination = contamination_task(base.curated_dir, task_names, spec,
                                           {t: hps[t].max_eval_examples for t in task_names})
        for key, r in contamination.items():
            c.log_metric(parent_id, f"contamination_rate_{key}", r["rate"])
        c.log_dict(parent_id, contamination, "contamination.json")
    elif spec.contamination.enabled:
        logger.info("contamination check skipped: %s names no curated corpus on this machine", model)

    summary = {
        "model": model, "base_model_name": base.name, "base_model_version": base.version,
        "glue_score": score, "tasks": results, "run_id": parent_id, "tracking_uri": tracking_uri,
        "registered": {t: per_task[t]["registered"] for t in task_names},
        "examples_per_s": {t: per_task[t]["examples_per_s"] for t in task_names},
        "startup_s_to_first_step": startup_s, "model_resolve_s": model_resolve_s, "first_step_at": first,
        "contamination": contamination,
        "spread": {k: v for t in task_names for k, v in per_task[t]["spread"].items()},
        "seeds": {t: per_task[t]["setup"].protocol["seeds"] for t in task_names},
        "reused_seeds": {t: per_task[t]["reused_seeds"] for t in task_names},
    }
    _publish_report(summary, base, champion, contamination, c, parent_id)
    setup = EvalSetup(tasks=tuple(task_names), per_task={t: per_task[t]["setup"] for t in task_names},
                      spec_fingerprint=spec_fp, spec_path=os.path.abspath(spec_path) if spec_path else None,
                      full=set(spec.tasks) <= set(task_names))
    record = EvalRecord(
        version=base.version or "local", status="complete", tasks=tuple(task_names), results=scores_only,
        setup=setup, baselines={k: v for t in task_names for k, v in per_task[t]["baselines"].items()},
        seed_scores={t: per_task[t]["seed_scores"] for t in task_names},
        model=base.name, run_id=parent_id)
    predictions = {k: v for t in task_names for k, v in per_task[t]["predictions"].items()}
    if base.version:
        store_record(record, predictions, score, tracking_uri)
        c.set_model_version_tag(base.name, base.version, "glue_score", f"{score:.4f}")
    else:  # a local folder: the record and predictions still land on the run, for the report and the user
        log_record_files(c, record, predictions, score)
    return summary


def _default_uri() -> str:
    from tasks.registry.tracking import default_tracking_uri

    return default_tracking_uri()


def write_metrics_json(summary: dict[str, Any], path: str) -> None:
    """{"model", "glue_score", "tasks": {key: {metric..., "n_train", "n_eval"}}, "timing": {...}}, atomically."""
    timing = {k: summary.get(k) for k in ("startup_s_to_first_step", "model_resolve_s", "first_step_at")}
    out = {"model": summary["model"], "glue_score": summary["glue_score"], "tasks": summary["tasks"],
           "spread": summary.get("spread", {}), "reused_seeds": summary.get("reused_seeds", {}), "timing": timing}
    tmp = f"{path}.tmp"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2, sort_keys=True)
    replace_durably(tmp, path)


def _publish_report(summary: dict[str, Any], base: Any, champion: Any, contamination: dict | None, c: Any,
                    parent_id: str) -> None:
    """The evaluation table as a Prefect table artifact, and the markdown report in Prefect and MLflow."""
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
    create_markdown_artifact(report, key="glue-report", description=f"GLUE: {summary['model']}")
    create_table_artifact(table_rows(candidate, champ, contamination), key="glue-table",
                          description=f"GLUE scores of {summary['model']} (percent)")
    print(f"GLUE score {summary['glue_score'] * 100:.2f} over {', '.join(summary['tasks'])}")


@flow(name="promote", log_prints=True)
def promote(name: str, margin: float | None = None, tasks: list[str] | None = None,
            spec_path: str | None = None, version: str | None = None) -> dict[str, Any]:
    """Move `champion` to `name` v`version` (default `@candidate`) and its task models only if the gate passes
    (`tasks.glue.gate`: like with like, the whole task set, above the floors, a gain beyond the noise).

    Returns {"promoted", "reason", "candidate_score", "champion_score", "margin", "tasks", "moved", "run_id"}.
    """
    return promotion_gate_task(name, margin, tasks, spec_path, version)


@task(cache_policy=NO_CACHE)
def promotion_gate_task(name: str, margin: float | None = None, tasks: list[str] | None = None,
                        spec_path: str | None = None, version: str | None = None) -> dict[str, Any]:
    """The gate as a task, for flows that chain evaluation and promotion (see `promote`)."""
    import mlflow

    from tasks.glue.promotion import run_gate
    from tasks.registry.evaluations import client
    from tasks.registry.tracking import ensure_experiment

    spec = load_glue_spec(spec_path)
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or spec.mlflow.tracking_uri or _default_uri()
    outcome = run_gate(name, gate=spec.gate, tracking_uri=tracking_uri, version=version, margin=margin, tasks=tasks)
    decision, candidate, champion, moved = outcome.decision, outcome.candidate, outcome.champion, outcome.moved

    # The decision, in MLflow: a run of its own, and tags on the candidate version.
    experiment_id = ensure_experiment(spec.mlflow.experiment, tracking_uri)
    c = mlflow.MlflowClient(tracking_uri)
    run = c.create_run(experiment_id, run_name=f"promote-{name}", tags={
        "lmpipe.gate.model": name, "lmpipe.gate.promoted": str(decision.promote).lower(),
        "lmpipe.gate.reason": decision.reason[:5000], "lmpipe.gate.candidate_version": candidate.version if candidate else "none",
        "lmpipe.gate.champion_version": champion.version if champion else "none",
        "lmpipe.gate.candidate_record": (candidate.run_id or "none") if candidate else "none",
        "lmpipe.gate.champion_record": (champion.run_id or "none") if champion else "none",
        "lmpipe.prefect_flow_run_id": str(prefect_flow_run.id)})
    for key, value in (("candidate_score", decision.candidate_score), ("champion_score", decision.champion_score),
                       ("margin", decision.margin), ("gain_low", decision.gain_low), ("gain_high", decision.gain_high)):
        if value is not None:
            c.log_metric(run.info.run_id, key, value)
    c.log_text(run.info.run_id, "\n".join(decision.checks), "gate_checks.txt")
    c.set_terminated(run.info.run_id, status="FINISHED")
    if candidate is not None and candidate.version != "local":
        cl = client(tracking_uri)
        cl.set_model_version_tag(name, candidate.version, "lmpipe.gate.decision",
                                 "promoted" if decision.promote else "refused")
        cl.set_model_version_tag(name, candidate.version, "lmpipe.gate.reason", decision.reason[:5000])
    verdict = "PROMOTED" if decision.promote else "REFUSED"
    create_markdown_artifact(
        "\n".join([f"# Promotion gate for `{name}`: **{verdict}**", "", decision.reason, "",
                    f"- candidate v{candidate.version if candidate else '-'}: {_pct(decision.candidate_score)}",
                    f"- champion v{champion.version if champion else '-'}: {_pct(decision.champion_score)}",
                    f"- margin: {decision.margin * 100:.2f} points; tasks: {', '.join(decision.tasks) or '-'}",
                    *(f"- {line}" for line in decision.checks),
                    *(f"- moved `champion`: {m}" for m in moved)]),
        key="promotion-gate", description=f"{name}: {verdict}")
    print(f"{verdict}: {decision.reason}")
    return {"promoted": decision.promote, "reason": decision.reason, "candidate_score": decision.candidate_score,
            "champion_score": decision.champion_score, "margin": decision.margin, "tasks": list(decision.tasks),
            "moved": moved, "run_id": run.info.run_id, "checks": list(decision.checks)}


def _pct(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value * 100:.2f}"
