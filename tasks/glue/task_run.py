"""One GLUE task of an evaluation run, end to end: data → encode → a Ray Train job per seed (a finished one
reused, `tasks.glue.job`) → the scores over the seeds → a nested MLflow run with the data lineage, the
hyperparameters, the metrics and every seed's dev predictions, logged as soon as they are scored.

`flows/glue.py` wraps `evaluate_task` in a Prefect task and registers the model once every task succeeded;
the task's MLflow run stays open until then. Also here: the checks that run before any training
(`preflight_data`), where the jobs live (`storage_root`) and a local model folder's identity
(`model_fingerprint`).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from data_specs import fingerprint
from data_specs.glue import FinetuneSpec, GlueSpec
from tasks.glue import job

log = logging.getLogger(__name__)


def storage_root(spec: GlueSpec) -> str:
    """Checkpoints, final models and job states: `scaling.storage_path`, else `glue/runs` under
    lmpipe's state root (`tasks.common.state`: `$LMPIPE_STATE_DIR`, else the project's .lmpipe)."""
    from tasks.common.state import state_path

    return os.path.abspath(spec.scaling.storage_path or state_path("glue", "runs"))


def model_fingerprint(hf_dir: str) -> str:
    """sha256 of the folder's config and weights: a local folder's identity in run names, tags and job names."""
    from tasks.shards.core import file_sha256

    parts = []
    for name in sorted(os.listdir(hf_dir)):
        if name == "config.json" or name.endswith((".safetensors", ".bin")):
            parts.append((name, file_sha256(os.path.join(hf_dir, name))[0]))
    return fingerprint(parts, 16)


def lineage_tags(model: str, base: Any, spec_fingerprint: str, flow_run_id: str) -> dict[str, str]:
    """The tags every run of an evaluation carries: which model (name, version, weights), spec, code and flow."""
    from tasks.registry.tracking import git_commit

    tags = {
        "lmpipe.base_model": model, "lmpipe.base_model_name": base.name,
        "lmpipe.base_model_version": base.version or "local",
        "lmpipe.base_model_fingerprint": model_fingerprint(base.hf_dir),
        "lmpipe.glue_spec_fingerprint": spec_fingerprint,
        "lmpipe.git_commit": git_commit() or "unknown",
        "lmpipe.prefect_flow_run_id": flow_run_id,
    }
    if base.run_id:
        tags["lmpipe.base_model_run_id"] = base.run_id
    return tags


def preflight_data(task_names: list[str], spec: GlueSpec, predict: bool = False) -> None:
    """Read every task's splits (and, with `predict`, its test files) before any training, so a missing or
    malformed file fails the run before a single model is trained or registered (local folders only; the hub
    is read by the tasks)."""
    from tasks.glue.data import GlueDataError, load_glue_split
    from tasks.glue.submission import load_test_rows
    from tasks.glue.tasks import TASKS

    if spec.data.dir is None:
        if predict:
            raise GlueDataError("--predict reads the unlabelled test.tsv files of a local GLUE folder: pass "
                                "--data-dir (or set data.dir in the spec)")
        return
    for name in task_names:
        for split in ("train", *TASKS[name].eval_splits):
            load_glue_split(name, split, spec.data.dir)
        if predict:
            load_test_rows(name, spec.data.dir)


def tasks_wanted_at_once(spec: GlueSpec, n_tasks: int) -> int:
    """How many of a run's `n_tasks` tasks to fine-tune at once: all of them (`scaling.max_concurrent_tasks`
    caps it), or one when a search is set, whose concurrent trials fill the cluster instead."""
    if spec.search is not None or n_tasks <= 1:
        return 1
    return min(n_tasks, spec.scaling.max_concurrent_tasks or n_tasks)


def preflight_resources(spec: GlueSpec, tracking_uri: str | None, n_tasks: int = 1) -> int:
    """Start or join Ray sized for the run's Ray Train jobs (a search's concurrent trials, or `n_tasks`
    concurrent tasks), or raise `RayResourceError` (a PreflightError, with the fix: `--cpu` where there is no GPU)
    before any download or training; Ray Train itself would wait for ever for workers it cannot place.

    Returns how many tasks run at once: those wanted (`tasks_wanted_at_once`) that the cluster holds together."""
    from cluster.train.ray_entry import _ensure_ray, concurrent_jobs

    if spec.search is not None:  # tasks in turn; Ray sized for the concurrent trials
        trials = len(spec.search.trials())
        _ensure_ray(spec.scaling, tracking_uri, jobs=min(trials, spec.search.max_concurrent or trials))
        return 1
    return concurrent_jobs(spec.scaling, tracking_uri, tasks_wanted_at_once(spec, n_tasks))  # ensures Ray first


def evaluate_task(task_name: str, base: Any, hp: FinetuneSpec, spec: GlueSpec, *, parent_run_id: str,
                  experiment_id: str, tracking_uri: str, lineage: dict[str, str],
                  seeds: list[int], predict: bool = False, logger: Any = log) -> dict[str, Any]:
    """Fine-tune and score `base` on one task over `seeds`; the task's MLflow run is left open for registering.

    Returns {"results", "spread", "baselines", "predictions", "seed_scores", "setup", "model_dir" (the first
    seed's), "run_id", "max_length", "reused_seeds", "final_step", "resumed_from_step", "examples_per_s",
    "first_step_at", "submission"}: with `predict`, the first seed's model predicts the task's test files
    (`tasks.glue.submission`; name -> TSV text). `logger`: the Prefect run logger in a flow.
    """
    from mlflow.entities import Param

    from cluster.train.finetune import encode
    from cluster.train.ray_entry import run_finetuning
    from tasks.glue.protocol import TaskSetup, protocol_of
    from tasks.glue.records import PREDICTIONS_DIR, predictions_csv
    from tasks.glue.tasks import TASKS, result_key
    from tasks.registry.evaluations import client, task_model_name

    glue_task = TASKS[task_name]
    data = job.load_task_data(task_name, hp, spec)
    tokenizer, max_length, tokenizer_dir = job.prepare_tokenizer(base.hf_dir, hp.max_length, logger)
    regression = glue_task.is_regression
    train_enc = encode(tokenizer, data.train.texts, data.train.labels, max_length, regression)
    eval_enc = {s: encode(tokenizer, ex.texts, ex.labels, max_length, regression) for s, ex in data.evals.items()}
    selection_enc = (encode(tokenizer, data.selection.texts, data.selection.labels, max_length, regression)
                     if data.selection is not None else None)

    splits = [("train", data.train), *data.evals.items()]
    data_tags = {f"lmpipe.data.{split}.path": ex.source for split, ex in splits}
    data_tags |= {f"lmpipe.data.{split}.sha256": ex.sha256 or "hub" for split, ex in splits}
    c = client(tracking_uri)
    run_id = c.create_run(experiment_id, run_name=task_model_name(base.name, task_name), tags={
        "mlflow.parentRunId": parent_run_id, "lmpipe.glue.task": task_name, **lineage, **data_tags}).info.run_id
    params = {**{k: str(v) for k, v in hp.model_dump().items()}, "max_length_used": str(max_length),
              "n_train": str(len(data.train)), "num_workers": str(spec.scaling.num_workers),
              "seeds": ",".join(map(str, seeds)),
              "n_selection": str(len(data.selection) if data.selection is not None else 0)}
    c.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])

    storage = storage_root(spec)
    jobs_root = os.path.join(storage, "jobs", f"{base.name}-{task_name}")
    identities = data.identities()
    eval_fp = job.eval_fingerprint(data, max_length)
    fail_at = os.environ.get("LMPIPE_TEST_FAIL_AT_STEP")  # test hook: one worker dies after a checkpoint

    def run_job(job_hp: FinetuneSpec, run_name_hint: str | None) -> job.SeedOutcome:
        """One fine-tuning job (reused when finished); its curves on the task run, or on a child run."""
        train_run = run_id if run_name_hint is None else c.create_run(
            experiment_id, run_name=run_name_hint, tags={"mlflow.parentRunId": run_id}).info.run_id

        def train(run_name: str):
            return run_finetuning(
                model_dir=base.hf_dir, tokenizer_dir=tokenizer_dir, train=train_enc, evals=eval_enc,
                label_names=list(glue_task.label_names), spec=job_hp, scaling=spec.scaling, run_name=run_name,
                storage_path=storage, mlflow_run_id=train_run, mlflow_tracking_uri=tracking_uri,
                fail_once_at_step=int(fail_at) if fail_at else None, selection=selection_enc, task=task_name)

        outcome = job.run_seed(
            task_name=task_name, seed=job_hp.seed, hp=job_hp, eval_fp=eval_fp, jobs_root=jobs_root,
            job_fp=job.training_fingerprint(lineage.get("lmpipe.base_model_fingerprint"), task_name, job_hp,
                                            max_length, identities["train"], len(data.train)),
            train_fn=train,
            predict_fn=lambda model_dir: job.predict_saved_model(model_dir, eval_enc, hp.eval_batch_size, regression))
        if train_run != run_id:
            if run_name_hint.startswith("trial"):
                c.log_batch(train_run, params=[Param(k, str(getattr(job_hp, k))) for k in ("lr", "batch_size", "epochs")])
                if outcome.metrics.get("best_score") is not None:
                    c.log_metric(train_run, "selection_score", float(outcome.metrics["best_score"]))
            c.set_terminated(train_run, status="FINISHED")
        return outcome

    chosen: dict[str, Any] | None = None
    recipe = hp  # the protocol is the recipe and the grid, never the trial a search chose
    try:
        if spec.search is not None:  # the grid on the first seed, chosen on the carved-off rows
            chosen, hp = _search(spec, hp, seeds[0], run_job, logger, tracking_uri)
            c.set_tag(run_id, "lmpipe.glue.chosen_trial", json.dumps(chosen, sort_keys=True))
        outcomes = [run_job(hp.model_copy(update={"seed": seed}), None if len(seeds) == 1 else f"{task_name}-seed{seed}")
                    for seed in seeds]
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
                      protocol=protocol_of(recipe.model_dump(), max_length_used=max_length, seeds=seeds,
                                           selection={"search": spec.search.model_dump(exclude_none=True)}
                                           if spec.search is not None else None))
    first = outcomes[0]
    submission = _predict_test(task_name, first.model_dir, tokenizer, max_length, hp, spec) if predict else {}
    for k, v in first.metrics.items():
        if isinstance(v, (int, float)) and k != "first_step_at":
            c.log_metric(run_id, f"final_{k}", float(v))
    logger.info("%s: %s%s", task_name, scores.results, f" (reused the finished jobs of seeds {reused})" if reused else "")
    return {"results": scores.results, "spread": scores.spread, "baselines": scores.baselines,
            "predictions": scores.predictions, "seed_scores": scores.seed_scores, "setup": setup,
            "model_dir": first.model_dir, "run_id": run_id, "max_length": max_length, "reused_seeds": reused,
            "final_step": first.final_step, "resumed_from_step": first.resumed_from_step,
            "examples_per_s": first.metrics.get("examples_per_s"), "first_step_at": first.metrics.get("first_step_at"),
            "submission": submission, "chosen_trial": chosen}


def _search(spec: GlueSpec, hp: FinetuneSpec, seed: int, run_job, logger, tracking_uri: str | None = None,
            capacity=None) -> tuple[dict[str, Any], FinetuneSpec]:
    """Run every trial of `spec.search` (a finished one is reused) and return (the chosen trial with its
    selection score, hp with it applied). Trials run as concurrent Ray Train jobs, as many as the cluster holds
    (`search.max_concurrent` caps it); each is seeded, so the choice does not depend on how many ran at once.
    `capacity(scaling, tracking_uri, wanted)` says how many fit (default: `ray_entry.concurrent_jobs`)."""
    from concurrent.futures import ThreadPoolExecutor

    from cluster.train.ray_entry import concurrent_jobs

    trials = spec.search.trials()
    at_once = (capacity or concurrent_jobs)(spec.scaling, tracking_uri,
                                            min(len(trials), spec.search.max_concurrent or len(trials)))
    logger.info("search: %d trials, %d at a time", len(trials), at_once)

    def one(i: int, trial: dict[str, Any]) -> tuple[float, int, dict[str, Any]]:
        trial_hp = hp.model_copy(update={**trial, "seed": seed})
        out = run_job(trial_hp, f"trial{i}-" + "-".join(f"{k}{v}" for k, v in trial.items()))
        score = out.metrics.get("best_score")
        logger.info("search trial %d %s: selection score %s%s", i, trial, score, " (reused)" if out.reused else "")
        return float("-inf") if score is None else float(score), i, trial

    with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="glue-trial") as pool:
        results = list(pool.map(one, range(len(trials)), trials))  # in trial order; the first error is raised
    best_score, best_i, best = max(results, key=lambda r: (r[0], -r[1]))  # ties: the earlier trial
    return {**best, "trial": best_i, "selection_score": best_score, "n_trials": len(results),
            "concurrent": at_once}, hp.model_copy(update=best)


def _predict_test(task_name: str, model_dir: str, tokenizer: Any, max_length: int, hp: FinetuneSpec,
                  spec: GlueSpec) -> dict[str, str]:
    """Leaderboard files of one task (MNLI: matched, mismatched and AX): submission name -> TSV text."""
    from cluster.train.finetune import encode
    from tasks.glue.submission import format_predictions, load_test_rows, submission_lines
    from tasks.glue.tasks import TASKS

    regression = TASKS[task_name].is_regression
    rows = load_test_rows(task_name, spec.data.dir)
    encoded = {r.submission: encode(tokenizer, r.texts, [0] * len(r.indices), max_length, regression) for r in rows}
    predictions, _ = job.predict_saved_model(model_dir, encoded, hp.eval_batch_size, regression)
    return {r.submission: submission_lines(r.indices, format_predictions(task_name, predictions[r.submission]))
            for r in rows}
