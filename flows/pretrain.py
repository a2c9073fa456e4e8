"""Tokenize and pretrain flows: curated shards → tokenizer + packed token shards → Ray Train → MLflow.

    lmpipe tokenize data_specs/pretrain/sample_gpt.yaml
    lmpipe pretrain data_specs/pretrain/sample_gpt.yaml

`pretrain` runs preflight checks before any work, tokenizes (finished token shards are skipped),
trains with Ray Train (`RAY_ADDRESS` or `scaling.ray_address` for an existing cluster), logs the run
to MLflow (`MLFLOW_TRACKING_URI` or the project-local SQLite store), registers the model with the
alias `candidate`, and publishes a Prefect artifact with the run and the registered version.
A job that did not finish is resumed from its latest checkpoint by the next run of the same spec.

One run per job at a time: `pretrain` holds the job folder's lock (`<storage>/<name>-<fingerprint>/.lmpipe.lock`,
`tasks.common.lock`) from before tokenizing until the model is registered, and `tokenize` holds the token
folder's. A second run of the same spec (a deployment and a pipeline, a daily job that outlasts its day) fails at
once with `OutputLocked`, naming the holder's pid, host, start and Prefect flow run, instead of training into the
same checkpoint folder; `LMPIPE_LOCK_WAIT_S=<seconds>` makes it wait for the holder instead.
"""

from __future__ import annotations

import json
import os
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import get_run_context

from data_specs import PretrainSpec, canonical_json, fingerprint, load_pretrain_spec
from flows.timeouts import flow_timeout
from tasks.common.durable import fsync_tree, write_bytes_durably
from tasks.common.lock import output_lock

CANDIDATE = "candidate"


def _abs(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


def _resolve_paths(spec: PretrainSpec) -> PretrainSpec:
    """Absolute data paths, so Ray workers and subprocesses agree whatever their working directory."""
    data = spec.data.model_copy(update={"curated": _abs(spec.data.curated), "tokens": _abs(spec.data.tokens)})
    return spec.model_copy(update={"data": data})


def pretrain_fingerprint(spec: PretrainSpec, init_weights_sha256: str | None = None) -> str:
    """What the job produces: everything but where it runs and where it logs.

    `scaling` stays out, `num_workers` included, although the worker count sets the global batch: the
    fingerprint names the job, and a rerun of an unfinished job with another worker count must find that job
    and be refused with the fix (`check_resume`: set the old count back, or `--new-run`), not silently start a
    new job beside it and leave the old one's progress behind. The worker count is logged with the run's params.
    With `model.init_from`, the starting weights' sha256 joins it: a moved alias or a new package release is
    another job, not a resume of the old one.
    """
    what = spec.model_dump(mode="json", exclude={"scaling", "mlflow"})
    return fingerprint({**what, "init_weights_sha256": init_weights_sha256} if init_weights_sha256 else what)


def init_checkpoint(spec: PretrainSpec):
    """The resolved `model.init_from` (a registry model is downloaded under the tokens folder), or None."""
    from tasks.pretrain.core import check
    from tasks.pretrain.init_from import init_problems, resolve_init_from

    if spec.model.init_from is None:
        return None
    tracking_uri = None
    if spec.model.init_from.startswith("models:/"):
        from tasks.registry.tracking import resolve_tracking_uri

        tracking_uri = resolve_tracking_uri(spec.mlflow)
    try:
        init = resolve_init_from(spec.model.init_from, download_to=f"{spec.data.tokens}/init",
                                 tracking_uri=tracking_uri)
    except ValueError as exc:
        check([str(exc)])
    check(init_problems(init, kind=spec.model.kind, seq_len=spec.packing.seq_len, tokenizer_vocab=None))
    return init


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _preflight(spec: PretrainSpec, token_manifest: dict | None = None) -> None:
    """Every reason the job cannot run, raised before any work. On a Ray cluster (RAY_ADDRESS or the spec's
    address) this joins it with the workers' settings and checks the request against what the cluster has or
    can grow to (`cluster.ray_session`); on this machine, against its GPUs and cores."""
    from tasks.pretrain.core import check, preflight, read_curated_manifest

    remote = bool(os.environ.get("RAY_ADDRESS") or spec.scaling.ray_address)
    if remote:
        from cluster.train.ray_entry import _ensure_ray
        from tasks.registry.tracking import resolve_tracking_uri

        _ensure_ray(spec.scaling, resolve_tracking_uri(spec.mlflow))
    check(
        preflight(
            spec,
            curated_manifest=read_curated_manifest(spec.data.curated),
            gpus_available=None if remote else _local_gpus(),
            cpus_available=None if remote else float(os.cpu_count() or 1),
            token_manifest=token_manifest,
        )
    )


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def train_tokenizer_task(spec: PretrainSpec, init_tokenizer: str | None = None) -> str:
    """Train (or reuse) the tokenizer; returns its directory. `init_tokenizer` is the folder of the
    `model.init_from` checkpoint when it ships a tokenizer: continued pretraining keeps the vocabulary."""
    from tasks.tokenize.core import iter_curated_texts, load_tokenizer, train_tokenizer

    existing = spec.tokenizer.existing or init_tokenizer
    if existing:
        load_tokenizer(existing)  # fail early if it does not load
        return existing
    out = f"{spec.data.tokens}/tokenizer"
    settings = f"{out}/lmpipe-tokenizer-spec.json"
    wanted = canonical_json({"tokenizer": spec.tokenizer.model_dump(mode="json"), "kind": spec.model.kind,
                             "curated": _curated_fingerprint(spec)})
    if os.path.exists(settings) and open(settings, encoding="utf-8").read() == wanted and _loads(out):
        return out  # trained before from the same corpus and settings
    texts = iter_curated_texts(spec.data.curated, limit=spec.tokenizer.sample_documents)
    train_tokenizer(texts, spec.tokenizer, spec.model.kind, out)
    fsync_tree(out)  # the tokenizer's files are on disk before the settings file says they are there
    write_bytes_durably(settings, wanted.encode("utf-8"))
    return out


def _loads(tokenizer_dir: str) -> bool:
    """Whether a trained tokenizer still loads; one a power loss cut short is trained again, not failed on."""
    from tasks.tokenize.core import load_tokenizer

    try:
        load_tokenizer(tokenizer_dir)
    except Exception as exc:  # noqa: BLE001 (tokenizers raises its own Exception types for a cut JSON file)
        get_run_logger().warning("tokenizer %s cannot be loaded (%s): training it again", tokenizer_dir, exc)
        return False
    return True


def _curated_fingerprint(spec: PretrainSpec) -> str | None:
    from tasks.pretrain.core import read_curated_manifest

    manifest = read_curated_manifest(spec.data.curated) or {}
    return manifest.get("run_key") or manifest.get("fingerprint")


@task(cache_policy=NO_CACHE)
def build_token_shards_task(spec: PretrainSpec, tokenizer_dir: str) -> dict:
    """Encode and pack the curated shards into token shards; finished units are skipped."""
    from tasks.tokenize.core import build_token_shards

    logger = get_run_logger()

    def progress(done: int, total: int) -> None:
        logger.info("tokenized %d/%d curated shards", done, total)

    return build_token_shards(spec.data.curated, spec.data.tokens, tokenizer_dir, spec.packing, spec.model.kind,
                              progress=progress)


@flow(name="tokenize", log_prints=True, timeout_seconds=flow_timeout("tokenize"))
def tokenize(spec_path: str) -> dict[str, Any]:
    """Train the tokenizer and write packed token shards + manifest; returns the token manifest."""
    spec = _resolve_paths(load_pretrain_spec(spec_path))
    from tasks.pretrain.core import check, read_curated_manifest

    if read_curated_manifest(spec.data.curated) is None:
        check([f"data.curated: no curated dataset at {spec.data.curated}. Run `lmpipe curate <spec>` first."])
    init = init_checkpoint(spec)
    if init is not None and not init.has_tokenizer and not spec.tokenizer.existing:
        check([f"model.init_from {init.ref!r} ships no tokenizer.json: set tokenizer.existing to its tokenizer "
               "(a newly trained vocabulary would not match the checkpoint's embeddings)"])
    with output_lock(spec.data.tokens):  # one writer of the tokenizer and token shards at a time
        tokenizer_dir = train_tokenizer_task(spec, init.path if init is not None and init.has_tokenizer else None)
        manifest = build_token_shards_task(spec, tokenizer_dir)
    rows = [
        f"| {split} | {m['sequences']:,} | {m['tokens']:,} | "
        + ", ".join(f"{k}: {v:,}" for k, v in m["tokens_by_source"].items()) + " |"
        for split, m in manifest["splits"].items()
    ]
    create_markdown_artifact(
        "\n".join([
            f"# Token shards for {spec.name}",
            f"- seq_len {manifest['seq_len']}, tokenizer `{manifest['tokenizer']['hash']}` "
            f"({manifest['tokenizer']['kind']}, vocab {manifest['tokenizer']['vocab_size']:,}) at "
            f"`{manifest['tokenizer']['path']}`",
            f"- curated corpus: `{manifest['curated']['path']}` (manifest sha256 "
            f"`{manifest['curated']['manifest_sha256'][:16]}…`)",
            "", "| split | sequences | tokens | tokens by source |", "|---|---:|---:|---|", *rows,
        ]),
        key="tokenize-summary",
        description=f"Token shards of {spec.name}",
    )
    return manifest


@task(cache_policy=NO_CACHE)
def train_task(spec: PretrainSpec, run_name: str, storage: str, mlflow_run_id: str, tracking_uri: str,
               init_dir: str | None = None):
    """Pretrain on Ray Train (resumes from the latest checkpoint of `run_name` if there is one)."""
    from cluster.train.ray_entry import run_pretraining

    fail_at = os.environ.get("LMPIPE_TEST_FAIL_AT_STEP")  # test hook: simulate a crash after a checkpoint
    return run_pretraining(
        tokens_dir=spec.data.tokens, model=spec.model, train=spec.train, scaling=spec.scaling, run_name=run_name,
        storage_path=storage, mlflow_run_id=mlflow_run_id, mlflow_tracking_uri=tracking_uri,
        fail_once_at_step=int(fail_at) if fail_at else None, init_dir=init_dir,
    )


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def register_task(model_dir: str, spec: PretrainSpec, run_id: str, tracking_uri: str, tags: dict[str, str]):
    """Log the final Hugging Face directory as a pyfunc model and register it with alias `candidate`."""
    from tasks.registry.core import log_and_register

    task_name = "fill-mask" if spec.model.kind == "bert" else "text-generation"
    return log_and_register(model_dir, registered_model=spec.mlflow.registered_model, run_id=run_id,
                            tracking_uri=tracking_uri, task=task_name, tags=tags, alias=CANDIDATE)


def _flat_params(spec: PretrainSpec) -> dict[str, str]:
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            out[prefix] = json.dumps(value) if not isinstance(value, str) else value

    walk("", spec.model_dump(mode="json"))
    return out


@flow(name="pretrain", log_prints=True, timeout_seconds=flow_timeout("pretrain"))
def pretrain(spec_path: str, new_run: bool = False) -> dict[str, Any]:
    """Tokenize, pretrain on Ray Train, and register the model in MLflow; returns a summary with its models:/ URI.

    `new_run=True` starts a new job even if the latest job of this spec did not finish. Raises
    `tasks.common.lock.OutputLocked` when another run holds this job (see the module docstring).
    """
    logger = get_run_logger()
    spec = _resolve_paths(load_pretrain_spec(spec_path))
    _preflight(spec)  # before any work: missing data, GPUs, CPUs, shapes, impossible batch
    init = init_checkpoint(spec)  # a checkpoint of another kind, or too few positions: refused before tokenizing
    from tasks.pretrain.core import job_dir

    spec_fp = pretrain_fingerprint(spec, init.weights_sha256 if init is not None else None)
    storage = _abs(spec.scaling.storage_path or f"{spec.data.tokens}/runs")
    jobs = job_dir(storage, spec.name, spec_fp)
    with output_lock(jobs):  # held from the job state read to the registered model: one run trains this job
        summary = _pretrain_locked(spec, spec_path, spec_fp, storage, jobs, init, new_run, logger)
    _publish(summary, spec)
    return summary


def _pretrain_locked(spec: PretrainSpec, spec_path: str, spec_fp: str, storage: str, jobs: str, init: Any,
                     new_run: bool, logger: Any) -> dict[str, Any]:
    """Tokenize, train and register, with the job folder's lock held; returns the flow's summary."""
    import mlflow

    from tasks.pretrain.core import JobState, check, new_run_name, read_job_state, write_job_state
    from tasks.pretrain.init_from import init_problems
    from tasks.registry.tracking import ensure_experiment, git_commit, resolve_tracking_uri

    token_manifest = tokenize(spec_path)
    _preflight(spec, token_manifest)  # exact sequence counts now known
    if init is not None:
        check(init_problems(init, kind=spec.model.kind, seq_len=spec.packing.seq_len,
                            tokenizer_vocab=int(token_manifest["tokenizer"]["vocab_size"])))
        logger.info("Continuing pretraining from %s (%s, weights sha256 %s…)", init.ref, init.path,
                    init.weights_sha256[:12])

    previous = read_job_state(jobs)
    resume = previous is not None and previous.status == "running" and not new_run
    run_name = previous.run_name if resume else new_run_name(spec.name, spec_fp)
    if resume:  # another worker count or batch layout than the checkpoints': refuse before touching the MLflow run
        from cluster.train.ray_entry import check_resume

        check_resume(f"{storage}/{run_name}", spec.scaling.num_workers, spec.train,
                     tokens_sha256=_file_sha256(f"{spec.data.tokens}/manifest.json"))

    tracking_uri = resolve_tracking_uri(spec.mlflow)
    experiment_id = ensure_experiment(spec.mlflow.experiment, tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri)
    flow_run_id = str(get_run_context().flow_run.id)
    tags = {
        "lmpipe.spec_fingerprint": spec_fp,
        "lmpipe.curated_manifest_sha256": token_manifest["curated"]["manifest_sha256"],
        "lmpipe.curated_path": spec.data.curated,  # lineage: the GLUE contamination check scans this corpus
        "lmpipe.token_manifest_sha256": _file_sha256(f"{spec.data.tokens}/manifest.json"),
        "lmpipe.tokenizer_hash": token_manifest["tokenizer"]["hash"],
        "lmpipe.git_commit": git_commit() or "unknown",
        "lmpipe.prefect_flow_run_id": flow_run_id,
        "lmpipe.ray_run_name": run_name,
    }
    if init is not None:  # lineage: which weights this model continued from
        tags.update({"lmpipe.init_from": init.ref, "lmpipe.init_weights_sha256": init.weights_sha256})
    if resume and previous.mlflow_run_id:
        run_id = previous.mlflow_run_id
        client.update_run(run_id, status="RUNNING")
        logger.info("Resuming job %s (MLflow run %s) from its latest checkpoint", run_name, run_id)
    else:
        run = client.create_run(experiment_id, run_name=run_name, tags=tags)
        run_id = run.info.run_id
        params = {"spec_fingerprint": spec_fp, **_flat_params(spec)}
        from mlflow.entities import Param

        items = [Param(k, v[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # the store takes at most 100 params per batch
            client.log_batch(run_id, params=items[i : i + 100])
        client.log_text(run_id, canonical_json(spec), "spec.json")
        client.log_text(run_id, json.dumps(token_manifest, indent=2), "token_manifest.json")
    write_job_state(jobs, JobState(run_name=run_name, status="running", mlflow_run_id=run_id))

    try:
        outcome = train_task(spec, run_name, storage, run_id, tracking_uri, init.path if init is not None else None)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    for key, value in outcome.metrics.items():
        if isinstance(value, (int, float)) and value is not None:
            client.log_metric(run_id, f"final_{key}", float(value))
    registered = register_task(outcome.model_dir, spec, run_id, tracking_uri, tags)
    client.set_terminated(run_id, status="FINISHED")
    write_job_state(jobs, JobState(run_name=run_name, status="finished", mlflow_run_id=run_id))

    summary = {
        "model_uri": registered.uri, "registered_model": registered.name, "version": registered.version,
        "logged_model_uri": registered.model_uri, "run_id": run_id, "run_name": run_name,
        "experiment_id": experiment_id, "tracking_uri": tracking_uri, "final_step": outcome.final_step,
        "resumed_from_step": outcome.resumed_from_step, "metrics": outcome.metrics, "model_dir": outcome.model_dir,
        "init_from": spec.model.init_from,  # None: trained from random weights
    }
    return summary


def _file_sha256(path: str) -> str:
    from tasks.shards.core import file_sha256

    return file_sha256(path)[0]


def _publish(summary: dict[str, Any], spec: PretrainSpec) -> None:
    """A Prefect artifact that links the MLflow run and the registered version."""
    uri = summary["tracking_uri"]
    if uri.startswith("http"):
        base = uri.rstrip("/")
        create_link_artifact(f"{base}/#/experiments/{summary['experiment_id']}/runs/{summary['run_id']}",
                             link_text=f"MLflow run {summary['run_name']}", key="pretrain-mlflow-run")
        create_link_artifact(f"{base}/#/models/{summary['registered_model']}/versions/{summary['version']}",
                             link_text=f"{summary['registered_model']} v{summary['version']}", key="pretrain-model")
    metrics = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                        for k, v in summary["metrics"].items())
    create_markdown_artifact(
        "\n".join([
            f"# Pretrained {spec.model.kind} "
            f"({'continued from ' + spec.model.init_from if spec.model.init_from else spec.model.preset}): "
            f"`{summary['model_uri']}`",
            f"- Registered model **{summary['registered_model']}** version **{summary['version']}**, alias "
            f"`{CANDIDATE}`; logged model `{summary['logged_model_uri']}`",
            f"- MLflow run `{summary['run_id']}` ({summary['run_name']}) in experiment {summary['experiment_id']} "
            f"at `{uri}`",
            f"- Steps: {summary['final_step']}"
            + (f" (resumed from step {summary['resumed_from_step']})" if summary["resumed_from_step"] else ""),
            "- Load it: `mlflow.pyfunc.load_model(\"" + summary["model_uri"] + "\").predict(pd.DataFrame({\"text\": [...]}))`",
            "", "| metric | value |", "|---|---:|", metrics,
        ]),
        key="pretrain-model-card",
        description=f"{spec.name}: {summary['model_uri']}",
    )
