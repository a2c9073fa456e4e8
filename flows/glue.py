"""GLUE flows: fine-tune and score a model on GLUE tasks with Ray Train, register the task models, gate `champion`.

    lmpipe glue models:/sample-bert@candidate --tasks rte,stsb --spec data_specs/glue/tiny_cpu.yaml
    lmpipe glue /path/to/hf-folder --name minilm --tasks sst2
    lmpipe promote sample-bert --margin 0.005        # or the spec's gate (default: margin auto)

`glue` resolves the model (a registered version is downloaded; a local folder is used in place), opens one
parent MLflow run, and runs each task as a Prefect task (`tasks.glue.task_run`: data, encoding, a Ray Train
job per seed, a finished job reused, the official metrics, a nested MLflow run with the lineage and the dev
predictions), as many tasks at once as the Ray cluster holds (`scaling.max_concurrent_tasks` caps it). Once
every task succeeded it registers `<base>-glue-<task>` with the alias `candidate`, then `tasks.glue.evaluation`
scores GLUE, checks contamination and stores the evaluation record that `promote`
reads (`tasks.glue.promotion`). A Prefect table artifact and a markdown report put the model beside the
current champion and published numbers. This module only wires those.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import get_run_context
from prefect.runtime import flow_run as prefect_flow_run

from cluster.ray_session import stop_ray_jobs
from data_specs import SPECS_DIR, fingerprint, load_spec
from data_specs.glue import FinetuneSpec, GlueSpec
from flows.bounded import run_bounded
from flows.timeouts import flow_timeout
from tasks.glue.contamination_scan import scan_dev_sets
from tasks.glue.evaluation import EvaluationContext, finish_evaluation, write_metrics_json
from tasks.glue.task_run import evaluate_task, lineage_tags, preflight_data, preflight_resources, storage_root

DEFAULT_SPEC = str(SPECS_DIR / "glue" / "default.yaml")
CANDIDATE, CHAMPION = "candidate", "champion"


def load_glue_spec(path: str | None) -> GlueSpec:
    """The GLUE spec at `path`, or the shipped run_glue defaults."""
    return load_spec(path or DEFAULT_SPEC, GlueSpec)


@task(cache_policy=NO_CACHE, task_run_name="glue-{task_name}")
def finetune_glue_task(task_name: str, base: Any, hp: FinetuneSpec, spec: GlueSpec, parent_run_id: str,
                       experiment_id: str, tracking_uri: str, lineage: dict[str, str],
                       seeds: list[int] | None = None, predict: bool = False) -> dict[str, Any]:
    """One task end to end (`tasks.glue.task_run.evaluate_task`); its MLflow run stays open for registering."""
    return evaluate_task(task_name, base, hp, spec, parent_run_id=parent_run_id, experiment_id=experiment_id,
                         tracking_uri=tracking_uri, lineage=lineage, seeds=seeds or [hp.seed], predict=predict,
                         logger=get_run_logger())


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


@task(cache_policy=NO_CACHE)
def contamination_task(curated_dir: str, task_names: list[str], spec: GlueSpec, max_eval: dict[str, int | None]):
    """n-gram overlap of the pretraining corpus with every dev split that was scored (cached, parallel)."""
    return scan_dev_sets(curated_dir, task_names, spec, max_eval, workers=spec.contamination.workers,
                         cache_dir=os.path.join(storage_root(spec), "contamination"))


@flow(name="glue", log_prints=True, timeout_seconds=flow_timeout("glue"))
def glue(
    model: str,
    tasks: list[str] | None = None,
    spec_path: str | None = None,
    data_dir: str | None = None,
    name: str | None = None,
    overrides: dict[str, Any] | None = None,
    metrics_json: str | None = None,
    predict: bool = False,
    cpu: bool = False,
) -> dict[str, Any]:
    """Fine-tune and score `model` on GLUE; returns {"model", "glue_score", "tasks": {key: metrics + counts}, ...}.

    `overrides` (epochs, lr, batch_size, max_length, seed, max_train_examples, ...) apply to every task run;
    `predict` also writes the leaderboard zip from each task's test files (summary["submission"]); `cpu` trains
    on CPUs whatever the spec's `scaling.use_gpu` says (the fallback the GPU preflight offers).
    """
    import mlflow

    from tasks.glue.tasks import parse_task_list
    from tasks.registry.evaluations import read_eval_record, resolve_base_model, set_eval_status
    from tasks.registry.tracking import ensure_experiment

    started = time.time()
    logger = get_run_logger()
    spec = load_glue_spec(spec_path)
    if cpu:
        spec = spec.model_copy(update={"scaling": spec.scaling.model_copy(update={"use_gpu": False})})
    data_dir = data_dir or spec.data.dir
    if data_dir is not None:  # absolute: the lineage tags name the files, wherever the run started
        spec = spec.model_copy(update={"data": spec.data.model_copy(update={"dir": os.path.abspath(data_dir)})})
    task_names = parse_task_list(tasks if tasks is not None else spec.tasks)
    hps = {t: spec.for_task(t, **(overrides or {})) for t in task_names}
    preflight_data(task_names, spec, predict)
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or spec.mlflow.tracking_uri or _default_uri()
    # GPUs and CPUs, before a download or a Ray Train job waits; how many tasks fine-tune at once
    at_once = preflight_resources(spec, tracking_uri, n_tasks=len(task_names))
    experiment_id = ensure_experiment(spec.mlflow.experiment, tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    # Under the run storage, not /tmp: on a multi-node cluster that is the shared mount the workers read from.
    os.makedirs(storage_root(spec), exist_ok=True)
    # Removed when the flow ends, whatever the outcome (the `finally` below); `lmpipe gc` removes what a kill left.
    download = tempfile.mkdtemp(prefix="model-", dir=storage_root(spec))
    t_model = time.time()
    try:
        base = resolve_base_model(model, tracking_uri, download, name)  # a registry download for models:/ URIs
    except BaseException:
        shutil.rmtree(download, ignore_errors=True)
        raise
    model_resolve_s = time.time() - t_model
    spec_fp = fingerprint(spec.model_dump(mode="json", exclude={"scaling", "mlflow", "gate"}))
    lineage = lineage_tags(model, base, spec_fp, str(get_run_context().flow_run.id))
    c = mlflow.MlflowClient(tracking_uri)
    parent = c.create_run(experiment_id, run_name=f"glue-{base.name}" + (f"-v{base.version}" if base.version else ""),
                          tags={**lineage, "lmpipe.glue.tasks": ",".join(task_names)})
    parent_id = parent.info.run_id
    if base.version:
        set_eval_status(base.name, base.version, "running", tracking_uri, run_id=parent_id, tasks=task_names)
    champion = read_eval_record(base.name, CHAMPION, tracking_uri) if base.version else None

    per_task: dict[str, Any] = {}
    try:
        if at_once > 1:
            logger.info("fine-tuning %d tasks at a time (scaling.max_concurrent_tasks: 1 runs them in turn)", at_once)
        run_bounded(finetune_glue_task, task_names, lambda t: dict(
            task_name=t, base=base, hp=hps[t], spec=spec, parent_run_id=parent_id, experiment_id=experiment_id,
            tracking_uri=tracking_uri, lineage=lineage, seeds=spec.seeds_for(t, (overrides or {}).get("seed")),
            predict=predict), at_once, per_task, on_abort=stop_ray_jobs)
        for t in task_names:  # every task succeeded: now, and only now, the task models are registered
            reg = register_glue_model_task(t, base, per_task[t]["model_dir"], per_task[t]["run_id"], tracking_uri,
                                           lineage, max_length=per_task[t]["max_length"])
            per_task[t]["registered"], per_task[t]["registered_version"] = reg["uri"], reg["version"]
        ctx = EvaluationContext(model, base, spec, spec_path, task_names, hps, champion, c, parent_id, tracking_uri,
                                started, model_resolve_s, spec_fp)
        summary, report, table = finish_evaluation(ctx, per_task, contamination_fn=contamination_task, logger=logger)
        create_markdown_artifact(report, key="glue-report", description=f"GLUE: {model}")
        create_table_artifact(table, key="glue-table", description=f"GLUE scores of {model} (percent)")
        print(f"GLUE score {summary['glue_score'] * 100:.2f} over {', '.join(summary['tasks'])}")
    except BaseException:
        for t, out in per_task.items():
            if "registered" not in out:
                c.set_terminated(out["run_id"], status="FAILED")
        c.set_terminated(parent_id, status="FAILED")
        if base.version:
            set_eval_status(base.name, base.version, "failed", tracking_uri, run_id=parent_id)
        raise
    finally:
        shutil.rmtree(download, ignore_errors=True)  # the registered models were copied into MLflow's store
    c.set_terminated(parent_id, status="FINISHED")
    if metrics_json:
        write_metrics_json(summary, metrics_json)
    return summary


def _default_uri() -> str:
    from tasks.registry.tracking import default_tracking_uri

    return default_tracking_uri()


@flow(name="promote", log_prints=True, timeout_seconds=flow_timeout("promote"))
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
    from tasks.glue.promotion import log_decision, run_gate

    spec = load_glue_spec(spec_path)
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or spec.mlflow.tracking_uri or _default_uri()
    outcome = run_gate(name, gate=spec.gate, tracking_uri=tracking_uri, version=version, margin=margin, tasks=tasks)
    out = log_decision(name, outcome, experiment=spec.mlflow.experiment, tracking_uri=tracking_uri,
                       flow_run_id=str(prefect_flow_run.id))
    verdict = "PROMOTED" if out["promoted"] else "REFUSED"
    create_markdown_artifact(out.pop("markdown"), key="promotion-gate", description=f"{name}: {verdict}")
    print(f"{verdict}: {out['reason']}")
    return out
