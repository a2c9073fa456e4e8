"""Ray Train entry point for pretraining and GLUE fine-tuning: the only module in lmpipe that imports `ray.train`.

`run_finetuning(...)` (bottom of this file) runs `cluster.train.finetune` the same way: one TorchTrainer,
checkpoints, resume by run name, recovery from dead workers, and the final model published beside them.

`run_pretraining(tokens_dir=..., model=..., train=..., scaling=..., run_name=..., storage_path=...)` reads the
token manifest, starts (or joins) Ray, and runs `loop.train` on `scaling.num_workers` data-parallel workers
(DDP over gloo on CPU, NCCL on GPU). Each worker reads its own micro-batches straight from the train shards
(`cluster.train.token_stream`: rank r's k-th batch is fixed by (k, r, world), so a resume seeks instead of
replaying); validation batches are the same on every rank. Checkpoints go to
`<storage_path>/<run_name>/checkpoint_*` (the last two kept); rerunning with the same run name resumes from the
latest one (Ray Train V2 semantics), worker failures restart the group from it (`scaling.max_failures`).
Every rank restores its own RNG states (`rank_<r>.pt`); a job resumes only with the worker count and batch
layout it was written with (`check_resume`, before Ray starts). Rank 0 logs per-step metrics into an existing
MLflow run when `mlflow_run_id` is given. The final model is a `save_pretrained` directory with the tokenizer
copied in, at `<storage_path>/<run_name>/final_model`.

Ray Train V2 facts this relies on (STACK_NOTES.md, training_orchestration_facts.md §B):
- `ray.train.report` is a barrier: every rank reports at every checkpoint.
- Checkpoint directories reported by several ranks at one `report` are merged into one checkpoint folder (its
  name is chosen by rank 0 and broadcast); rank 0 writes the model and optimizer, every rank its `rank_<r>.pt`.
- `Result.metrics` only holds metrics reported *with* a checkpoint, so every report carries one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import ray
import ray.train
import ray.train.torch
import torch
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from cluster import ray_session
from cluster.train.checkpoints import (
    complete_checkpoints,
    first_loadable,
    fsync_persisted,
    is_complete,
    unique_by_step,
    write_completion_marker,
)
from cluster.train.finetune import EncodedSplit, finetune, load_classifier, predict_with_scores, schedule
from cluster.train.loop import CHECKPOINT_FILE, STATE_FILE, TrainState, load_checkpoint, save_checkpoint
from cluster.train.loop import train as train_loop
from cluster.train.model import build_model
from cluster.train.token_stream import TokenStream
from tasks.common.durable import replace_tree_durably
from data_specs.glue import FinetuneSpec, GlueScalingSpec
from data_specs.pretrain import ModelSpec, ScalingSpec, TrainSpec

FINAL_MODEL_DIR = "final_model"
# Windows of this process's Ray Train jobs, for benchmarks/bench_pipeline.py: the wall clock of `fit()`, of the
# job's first optimizer step and of `fit()` returning (concurrent GLUE jobs overlap: the benchmark counts their
# union; the local Ray's own starts are in `cluster.ray_session.RAY_STARTS`).
TRAIN_STARTS: list[tuple[float, float, float]] = []
_HF_SUBDIR = "hf_model"  # inside the last checkpoint: the save_pretrained directory
_RUN_META = "run_meta.json"  # inside each checkpoint: which invocation wrote it, where it resumed from, the layout


def _rank_file(rank: int) -> str:
    """Inside each pretraining checkpoint: one rank's RNG states and train state (its data position)."""
    return f"rank_{rank}.pt"


@dataclass
class TrainOutcome:
    """What a pretraining run produced (the flow logs and registers this)."""

    run_name: str
    storage_path: str
    final_step: int
    metrics: dict[str, float | None]  # train_loss, first_val_loss, val_loss, val_ppl, tokens_per_s, mfu, tokens_seen
    model_dir: str  # save_pretrained directory + tokenizer files
    resumed_from_step: int | None  # the checkpoint step this invocation started from; None for a fresh run
    restarted_from_step: int | None = None  # a dead worker's group restarted here, inside this invocation


def run_pretraining(
    *,
    tokens_dir: str,
    model: ModelSpec,
    train: TrainSpec,
    scaling: ScalingSpec,
    run_name: str,
    storage_path: str,
    mlflow_run_id: str | None = None,
    mlflow_tracking_uri: str | None = None,
    fail_once_at_step: int | None = None,
    trace_batches_to: str | None = None,
    init_dir: str | None = None,
) -> TrainOutcome:
    """Pretrain `model` on the token shards in `tokens_dir`; resume if `<storage_path>/<run_name>` has checkpoints.

    `init_dir` (the local folder of a resolved `model.init_from`) gives the starting weights instead of a random
    initialisation; every worker loads it, so on a multi-node cluster it must be on shared storage.

    Raises `ResumeMismatchError` (before starting Ray) when those checkpoints were written with another worker
    count, micro_batch_size or grad_accum.
    Test hooks: with `fail_once_at_step`, one worker (rank 1, or rank 0 alone) kills its process when it reaches
    that step after a checkpoint exists, once per run (a marker file under the run folder remembers it); with
    `trace_batches_to`, rank r appends a line per micro-batch (step, sha256 of its model inputs) and per step
    (its loss) to `<trace_batches_to>/rank_<r>.jsonl`.
    """
    tokens = Path(tokens_dir).resolve()
    manifest_bytes = (tokens / "manifest.json").read_bytes()
    manifest = json.loads(manifest_bytes)
    tokens_sha256 = hashlib.sha256(manifest_bytes).hexdigest()  # recorded in every checkpoint: resume on these only
    if manifest["model_kind"] != model.kind:
        raise ValueError(f"token shards in {tokens} were made for {manifest['model_kind']!r}, model is {model.kind!r}")
    storage = storage_path if is_remote(storage_path) else str(Path(storage_path).resolve())
    model_dir = published_dir(storage, run_name)
    # before Ray starts: a refusal costs nothing (a storage URL: Ray's snapshot decides, see check_resume)
    check_resume(f"{storage}/{run_name}", scaling.num_workers, train, tokens_sha256=tokens_sha256)
    tracking_uri = mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    _ensure_ray(scaling, tracking_uri)

    train_paths = [str(tokens / s["path"]) for s in manifest["splits"]["train"]["shards"]]
    val_paths = [str(tokens / s["path"]) for s in manifest["splits"].get("val", {}).get("shards", [])]
    if not train_paths:
        raise ValueError(f"{tokens}/manifest.json lists no train shards")
    # Validation is the first eval_batches × micro_batch_size rows, identical on every rank: read once here and
    # shipped in the config (KBs to a few MB) rather than read again by every worker. No validation split
    # (validation_fraction 0): the head of the train data stands in.
    val_rows = _read_rows(val_paths or train_paths[:1], train.eval_batches * train.micro_batch_size)
    tok = manifest["tokenizer"]
    config = {
        "model": model.model_dump(),
        "train": train.model_dump(),
        "seq_len": int(manifest["seq_len"]),
        "vocab_size": int(tok["vocab_size"]),
        "special": {k: v for k, v in tok.items() if k.endswith("_id") and v is not None},
        "val_rows": val_rows,
        "train_paths": train_paths,  # absolute: every worker reads its own micro-batches (token_stream)
        "trace_dir": trace_batches_to and str(Path(trace_batches_to).resolve()),
        "tokens_sha256": tokens_sha256,
        "init_dir": init_dir,
        **_job_config(scaling, storage, run_name, mlflow_run_id, tracking_uri, fail_once_at_step),
    }
    trainer = _trainer(_train_worker, config, scaling, run_name, storage)
    fit_at = time.time()
    result = _fit(trainer)  # raises ray.train.TrainingFailedError once max_failures is exhausted

    metrics = dict(result.metrics or {})
    if metrics.get("first_step_at"):
        TRAIN_STARTS.append((fit_at, metrics["first_step_at"], time.time()))
    with result.checkpoint.as_directory() as ckpt_dir:
        _publish_model(Path(ckpt_dir) / _HF_SUBDIR, Path(model_dir), _tokenizer_dir(tokens, tok.get("path")))
    keys = ("train_loss", "first_val_loss", "val_loss", "val_ppl", "tokens_per_s", "mfu", "tokens_seen")
    return TrainOutcome(
        run_name=run_name,
        storage_path=storage,
        final_step=int(metrics["step"]),
        metrics={k: metrics.get(k) for k in keys},
        model_dir=model_dir,
        resumed_from_step=metrics.get("resumed_from_step"),
        restarted_from_step=metrics.get("restarted_from_step"),
    )


def check_resume(run_dir: str | Path, num_workers: int, train: TrainSpec, tokens_sha256: str | None = None) -> None:
    """Refuse (`ResumeMismatchError`, with the fix) to resume the checkpoints in `run_dir` with another worker
    count, micro_batch_size or grad_accum, or (given `tokens_sha256`, the sha256 of the token manifest now) on
    token shards rebuilt since they were written: each rank's data position and RNG states mean something only
    in the layout and the shards that wrote them. No checkpoint, a remote storage, or one written before the
    layout (or the token hash) was recorded: nothing to check."""
    from tasks.pretrain.core import ResumeMismatchError, resume_mismatch, tokens_mismatch

    if "://" in str(run_dir):
        return
    newest = latest_checkpoint_on_disk(Path(run_dir))
    if newest is None:
        return
    saved = json.loads((newest / _RUN_META).read_text())
    step = json.loads((newest / STATE_FILE).read_text())["step"]
    problem = resume_mismatch(saved, num_workers=num_workers, micro_batch_size=train.micro_batch_size,
                              grad_accum=train.grad_accum) or tokens_mismatch(saved, tokens_sha256)
    if problem:
        raise ResumeMismatchError(f"cannot resume job {Path(run_dir).name} from its step-{step} checkpoint "
                                  f"({newest}): {problem}")


def _job_config(scaling: Any, storage: str, run_name: str, mlflow_run_id: str | None, tracking_uri: str | None,
                fail_once_at_step: int | None) -> dict[str, Any]:
    """The worker-config keys every training job shares: devices, logging, invocation id, the failure hook."""
    return {
        "use_gpu": scaling.use_gpu,
        "cpus_per_worker": scaling.cpus_per_worker,
        "mlflow_run_id": mlflow_run_id,
        "mlflow_tracking_uri": tracking_uri,
        "invocation": uuid.uuid4().hex,
        "fail_once_at_step": fail_once_at_step,
        "fail_marker": fail_once_at_step and _fail_marker(storage, run_name, fail_once_at_step),
        "run_dir": _local_path(storage, run_name, ""),
    }


def _fail_marker(storage: str, run_name: str, step: int) -> str:
    marker = _local_path(storage, run_name, f".failed_once_at_{step}")
    if marker is None:
        raise ValueError(f"fail_once_at_step (a test hook) needs a local storage_path, got {storage}")
    return marker


def _trainer(worker: Any, config: dict[str, Any], scaling: Any, run_name: str, storage: str,
             **kwargs: Any) -> TorchTrainer:
    """A TorchTrainer with lmpipe's run layout: `<storage>/<run_name>`, the last two checkpoints, max_failures."""
    resources = {"CPU": scaling.cpus_per_worker, **({"GPU": 1} if scaling.use_gpu else {})}
    worker_env = ray_session.train_worker_runtime_env(config.get("mlflow_tracking_uri"))
    return TorchTrainer(
        worker,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=scaling.num_workers, use_gpu=scaling.use_gpu,
                                     resources_per_worker=resources),
        # The workers' env also when this process joined Ray without it (prefect-ray, a test, a notebook).
        run_config=RunConfig(name=run_name, storage_path=storage,
                             failure_config=FailureConfig(max_failures=scaling.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2),
                             **({"worker_runtime_env": worker_env} if worker_env else {})),
        **kwargs,
    )


def _fit(trainer: TorchTrainer) -> Any:
    """`trainer.fit()`, with a flow's timeout or cancellation kept as what it is.

    Prefect times a sync flow out with SIGALRM: its handler raises CancelledError in the main thread, and when
    that lands inside `ray.get` (Cython) it surfaces as "SystemError: ... returned a result with an exception
    set", so the flow ended Failed with that message instead of TimedOut. The cancellation is re-raised.
    """
    import asyncio

    try:
        return trainer.fit()
    except SystemError as exc:
        cause = exc.__context__ or exc.__cause__
        if isinstance(cause, (asyncio.CancelledError, TimeoutError, KeyboardInterrupt)):
            raise cause from None
        raise


def _train_worker(config: dict[str, Any]) -> None:
    """One data-parallel rank: build the model, restore the latest checkpoint (and this rank's own RNG states
    and data position), run the loop, report."""
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    model_spec, spec = ModelSpec(**config["model"]), TrainSpec(**config["train"])
    device = ray.train.torch.get_device()
    if not config["use_gpu"]:
        # Intra-op threads = the CPUs this worker reserved: two 0.5-CPU workers on 2 cores get a thread each
        # instead of both spinning two.
        torch.set_num_threads(max(1, math.floor(config["cpus_per_worker"])))

    torch.manual_seed(spec.seed)  # identical initial weights on every rank (DDP also broadcasts rank 0's)
    model = build_model(model_spec, config["vocab_size"], config["seq_len"], config["special"],
                        init_dir=config.get("init_dir"))
    raw = model
    resume, meta = None, {"invocation": config["invocation"], "resumed_from_step": None}
    with _resume_candidates(ray.train.get_checkpoint(), config["run_dir"]) as candidates:
        found = first_loadable(candidates, _load_resume(rank), _agree(device, world))  # a damaged newest: previous
    if found is not None:
        resume, saved = found[1]
        step = resume["train_state"]["step"]
        # A restart after a dead worker (same invocation) records where it picked up; a rerun, where it resumed.
        meta = {**saved, "restarted_from_step": step} if saved["invocation"] == config["invocation"] else {
            "invocation": config["invocation"], "resumed_from_step": step}
    layout = {"world_size": world, "micro_batch_size": spec.micro_batch_size, "grad_accum": spec.grad_accum,
              "tokens_sha256": config["tokens_sha256"]}  # check_resume refuses another layout or other shards
    model = ray.train.torch.prepare_model(model)  # to the device; DDP when world > 1

    pin = bool(config["use_gpu"])

    def train_batches(start: int) -> TokenStream:  # this rank's micro-batches from its start-th on: a seek
        return TokenStream(config["train_paths"], spec.micro_batch_size, rank=rank, world_size=world, start=start,
                           pin_memory=pin)

    trace = BatchTrace(Path(config["trace_dir"]) / f"rank_{rank}.jsonl") if config["trace_dir"] else None
    val_cache = list(torch.from_numpy(np.array(config["val_rows"], copy=True)).split(spec.micro_batch_size))

    logger = _MlflowLogger(config["mlflow_tracking_uri"], config["mlflow_run_id"]) if rank == 0 else None
    failing_rank = 1 if world > 1 else 0
    checkpointed = {"any": resume is not None}

    every = max(1, spec.max_steps // 20)  # about 20 progress lines per job, from rank 0

    first_step_at: dict[str, float] = {}  # wall clock of this session's first optimizer step (start-up cost)

    def on_step(m: dict[str, float]) -> None:
        first_step_at.setdefault("t", time.time())
        if trace:
            trace.write({"step": int(m["step"]), "loss": m["loss"]})
        if logger:
            logger.log(m, m["step"])
            if m["step"] % every == 0 or m["step"] == spec.max_steps:
                print(f"[lmpipe] step {int(m['step'])}/{spec.max_steps} loss {m['loss']:.4f} lr {m['lr']:.2e} "
                      f"{m['tokens_per_s']:,.0f} tok/s" + (f" mfu {m['mfu']:.1%}" if m.get("mfu") else ""), flush=True)
        at = config["fail_once_at_step"]
        if rank == failing_rank and at is not None and m["step"] == at and checkpointed["any"]:
            marker = Path(config["fail_marker"])
            if not marker.exists():
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text(f"worker {rank} exited on purpose at step {at}\n")
                os._exit(1)

    def on_eval(m: dict[str, float]) -> None:
        if logger:
            logger.log({"val_loss": m["val_loss"], "val_ppl": m["val_ppl"]}, m["step"])
            print(f"[lmpipe] step {int(m['step'])}/{spec.max_steps} val_loss {m['val_loss']:.4f} "
                  f"val_ppl {m['val_ppl']:.1f}", flush=True)

    def on_checkpoint(state: TrainState, state_dicts: dict[str, Any]) -> None:
        if logger:
            logger.flush()
        metrics = {**_report_metrics(state, meta), **({"first_step_at": first_step_at["t"]} if first_step_at else {})}
        with tempfile.TemporaryDirectory() as tmp:
            # Every rank's own RNG states and data position; Ray merges all ranks' folders into one checkpoint.
            torch.save({"rng": state_dicts["rng"], "train_state": state_dicts["train_state"]},
                       Path(tmp) / _rank_file(rank))
            if rank == 0:
                save_checkpoint(tmp, state_dicts)
                (Path(tmp) / _RUN_META).write_text(json.dumps({**meta, **layout}))
                if state.step >= spec.max_steps:
                    raw.save_pretrained(Path(tmp) / _HF_SUBDIR)  # the final model rides in the last checkpoint
            write_completion_marker(tmp, rank, state.step, world)  # last: what this rank wrote, file by file
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(tmp))  # barrier: every rank
        if config["run_dir"]:  # a storage URL: its filesystem's own durability
            fsync_persisted(Path(config["run_dir"]), rank, state.step)
        checkpointed["any"] = True

    train_loop(
        model, train_batches, lambda: iter(val_cache), spec, model_spec.kind, config["special"],
        config["vocab_size"], device, resume=resume, on_step=on_step, on_eval=on_eval,
        on_checkpoint=on_checkpoint, on_batch=trace.batch if trace else None, is_ddp=world > 1, rank=rank,
        world_size=world,
    )
    if logger:
        logger.flush()
    if trace:
        trace.file.close()


def _load_rank_checkpoint(directory: Path, rank: int) -> dict[str, Any]:
    """Rank 0's full checkpoint (weights, optimizer) with this rank's own RNG states and train state.

    A checkpoint written before per-rank files existed has only rank 0's: every rank then takes those (the old
    behaviour), which `check_resume` cannot flag because such checkpoints did not record their layout either.
    """
    resume = load_checkpoint(directory)
    own = directory / _rank_file(rank)
    if own.is_file():
        resume.update(torch.load(own, map_location="cpu", weights_only=True))
    return resume


class BatchTrace:
    """Test hook (`trace_batches_to`): append one JSON line per micro-batch (the step it trains, sha256 of the
    model inputs: ids after masking, labels) and per step (this rank's loss), flushed at once so lines written
    before a worker dies survive it."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def batch(self, step: int, inputs: dict[str, torch.Tensor]) -> None:
        digest = hashlib.sha256()
        for key in sorted(inputs):
            digest.update(key.encode() + inputs[key].cpu().numpy().tobytes())
        self.write({"step": step, "sha": digest.hexdigest()[:16]})


def _read_rows(paths: list[str], n: int) -> np.ndarray:
    """The first `n` rows of `input_ids` across `paths`, as an (n, T) int32 array."""
    parts, have = [], 0
    for path in paths:
        pf = pq.ParquetFile(path)
        for i in range(pf.num_row_groups):
            col = pf.read_row_group(i, columns=["input_ids"]).column("input_ids").combine_chunks()
            rows = col.values.to_numpy(zero_copy_only=False).reshape(len(col), -1)
            parts.append(rows[: n - have])
            have += len(parts[-1])
            if have >= n:
                return np.concatenate(parts).astype(np.int32)
    if not parts:
        raise ValueError(f"no validation rows in {paths}")
    return np.concatenate(parts).astype(np.int32)


def _report_metrics(state: TrainState, meta: dict[str, Any]) -> dict[str, float]:
    m = {
        "step": state.step,
        "tokens_seen": state.tokens_seen,
        "train_loss": state.last_train_loss,
        "first_val_loss": state.first_val_loss,
        "val_loss": state.last_val_loss,
        "val_ppl": math.exp(min(state.last_val_loss, 80.0)) if state.last_val_loss is not None else None,
        "tokens_per_s": state.tokens_per_s,
        "mfu": state.mfu,
        "resumed_from_step": meta["resumed_from_step"],
        "restarted_from_step": meta.get("restarted_from_step"),
    }
    return {k: v for k, v in m.items() if v is not None}


class _MlflowLogger:
    """Rank 0's per-step metrics into an existing MLflow run, through the client (not `start_run`, whose
    exit would mark the flow's still-open run FINISHED). Buffered: one batched write every `every` steps."""

    KEYS = ("loss", "lr", "grad_norm", "tokens_per_s", "mfu", "val_loss", "val_ppl", "examples_per_s", "epoch")

    def __init__(self, tracking_uri: str | None, run_id: str | None, every: int = 10):
        self.client, self.run_id, self.every, self.buffer = None, run_id, every, []
        if run_id:
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(tracking_uri)

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.client is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.buffer += [Metric(k, float(metrics[k]), now, int(step)) for k in self.KEYS if k in metrics]
        if step % self.every == 0:
            self.flush()

    def flush(self) -> None:
        if self.client is not None and self.buffer:
            self.client.log_batch(self.run_id, metrics=self.buffer)
            self.buffer = []


def _ensure_ray(scaling: ScalingSpec | GlueScalingSpec, tracking_uri: str | None, jobs: int = 1) -> None:
    """Start, join or resize Ray for `jobs` concurrent jobs of `scaling`'s size (`cluster.ray_session`), or raise
    `RayResourceError` with the fix when they can never be placed. Console output: `cluster.ray_logging`."""
    stage = "GLUE (scaling)" if isinstance(scaling, GlueScalingSpec) else "pretrain (scaling)"
    fix = ("rerun with `--cpu` (lmpipe glue MODEL --cpu) or set scaling.use_gpu: false in the GLUE spec"
           if isinstance(scaling, GlueScalingSpec) else "set scaling.use_gpu: false in the pretrain spec")
    ray_session.ensure_ray(ray_session.request_for(scaling, stage=stage, cpu_fix=fix, jobs=jobs), tracking_uri)


def concurrent_jobs(scaling: ScalingSpec | GlueScalingSpec, tracking_uri: str | None, wanted: int) -> int:
    """How many fine-tuning jobs of `scaling`'s size the cluster runs at once, at most `wanted` (at least 1).

    Starts (or joins) Ray first, sized for `wanted` jobs on a local machine. A job needs `num_workers` ×
    `cpus_per_worker` CPUs, and `num_workers` GPUs with `use_gpu`; the Train controller takes none.
    """
    _ensure_ray(scaling, tracking_uri, jobs=wanted)
    return jobs_that_fit(ray_session.alive_nodes(), scaling, wanted)


def jobs_that_fit(nodes: list[dict[str, float]], scaling: ScalingSpec | GlueScalingSpec, wanted: int) -> int:
    """Jobs of `scaling`'s size that the Ray `nodes` (each a resource -> total dict) hold at once, between 1 and
    `wanted`: a worker lives on one node, so CPUs left over on several nodes do not add up to a place."""
    per_worker = {"CPU": scaling.cpus_per_worker, **({"GPU": 1.0} if scaling.use_gpu else {})}
    fits = ray_session.placeable_workers(nodes, per_worker) // scaling.num_workers
    return max(1, min(wanted, fits))


def latest_checkpoint_on_disk(run_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step in a run folder, for when Ray's snapshot lacks it.

    Ray registers a reported checkpoint in its run snapshot only once the controller has collected every
    rank's report; a crash in that window (seconds) leaves the checkpoint on disk but not in the snapshot,
    and a rerun would start from step 0. A checkpoint is complete when every rank's completion marker is
    there and every file it names has its recorded size (`cluster.train.checkpoints.is_complete`): a power
    loss can leave `checkpoint.pt` under its name but cut short, and a crash can leave some ranks' files missing.
    """
    complete = complete_checkpoints(run_dir, _legacy_complete)
    return complete[0] if complete else None


def _legacy_complete(d: Path) -> bool:
    """A checkpoint written before completion markers existed: its state, weights and run metadata are there,
    and, when the metadata records a `world_size` (pretraining), every rank's `rank_<r>.pt`."""
    if not ((d / STATE_FILE).is_file() and (d / CHECKPOINT_FILE).is_file() and (d / _RUN_META).is_file()):
        return False
    try:
        world = int(json.loads((d / _RUN_META).read_text()).get("world_size", 0))
    except (ValueError, AttributeError):
        return False
    return all((d / _rank_file(r)).is_file() for r in range(world))


def is_remote(storage: str) -> bool:
    """A storage URL Ray Train writes through pyarrow (s3://, gs://, abfss://, file://, ...), not a local path."""
    return "://" in storage


def _local_path(storage: str, run_name: str, name: str) -> str | None:
    """`<storage>/<run_name>/<name>` on a local (or mounted) storage; None on a storage URL, where only Ray's own
    checkpoint snapshot is read (no on-disk fallback, no fsync, no test markers)."""
    return None if is_remote(storage) else str(Path(storage) / run_name / name)


def published_dir(storage: str, run_name: str) -> str:
    """Where the final model is published for registering: beside the checkpoints on a local storage; on a storage
    URL, a folder of this driver (`<state root>/models/<run_name>/final_model`, the layout `lmpipe gc` reads),
    since MLflow logs from local files."""
    if not is_remote(storage):
        return str(Path(storage) / run_name / FINAL_MODEL_DIR)
    from tasks.common.state import state_path

    return str(state_path("models", run_name, FINAL_MODEL_DIR))


def _tokenizer_dir(tokens: Path, path: str | None) -> Path | None:
    if not path:
        return None
    p = Path(path) if Path(path).is_absolute() else tokens / path
    return p if p.is_dir() else None


def _stamp_context(hf_dir: Path) -> None:
    """Save the tokenizer with the model's context as `model_max_length`, so `truncation=True` truncates to what
    the model can take (plain transformers users and the pyfuncs alike)."""
    from tasks.tokenize.core import set_model_max_length

    config = json.loads((hf_dir / "config.json").read_text())
    context = next((config[k] for k in ("max_position_embeddings", "n_positions", "n_ctx") if config.get(k)), None)
    if context and (hf_dir / "tokenizer_config.json").is_file():
        set_model_max_length(hf_dir, int(context))


def _publish_model(hf_dir: Path, dest: Path, tokenizer_dir: Path | None) -> None:
    """Copy the checkpoint's save_pretrained dir + tokenizer files to `dest`: written beside, then renamed."""
    tmp = dest.with_name(f"{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
    shutil.copytree(hf_dir, tmp)
    if tokenizer_dir is not None:
        for f in tokenizer_dir.iterdir():
            if f.is_file() and not (tmp / f.name).exists():  # the model's config.json wins
                shutil.copy2(f, tmp / f.name)
        _stamp_context(tmp)
    if dest.exists():
        shutil.rmtree(dest)  # a resumed, longer run replaces the previous final model
    replace_tree_durably(tmp, dest)  # fsync every file and folder, rename, fsync the parent


# ----------------------------------------------------------------------------------------------------------------
# GLUE fine-tuning: the same entry point, the same checkpoint, resume and failure handling as pretraining.

PREDICTIONS_FILE = "predictions.json"
SCORES_FILE = "prediction_scores.json"  # each row's predicted-label probability (or regression output)


@dataclass
class FinetuneOutcome:
    """What one task's fine-tuning produced (the GLUE flow scores, logs and registers it)."""

    run_name: str
    final_step: int
    model_dir: str  # save_pretrained directory of the fine-tuned classifier + tokenizer
    predictions: dict[str, list]  # eval split -> label ids (or scores for regression), in row order
    metrics: dict[str, float | None]  # train_loss, examples_per_s, train_s
    resumed_from_step: int | None  # a rerun of the same run name started here
    restarted_from_step: int | None = None  # a dead worker's group restarted here, inside this invocation
    scores: dict[str, list] = field(default_factory=dict)  # eval split -> the predicted label's probability


def run_finetuning(
    *,
    model_dir: str,
    tokenizer_dir: str,
    train: EncodedSplit,
    evals: dict[str, EncodedSplit],
    label_names: list[str],
    spec: FinetuneSpec,
    scaling: GlueScalingSpec,
    run_name: str,
    storage_path: str,
    mlflow_run_id: str | None = None,
    mlflow_tracking_uri: str | None = None,
    fail_once_at_step: int | None = None,
    selection: EncodedSplit | None = None,
    task: str | None = None,
) -> FinetuneOutcome:
    """Fine-tune the pretrained folder `model_dir` on the encoded `train` rows and predict every split of `evals`.

    With `spec.select: best`, `selection` (rows carved from train) picks the checkpoint by `task`'s score
    (`finetune`'s model selection); the predictions and the saved model are the best checkpoint's.

    `train` and `evals` are encoded on the driver and shipped once through the object store. Checkpoints go to
    `<storage_path>/<run_name>/checkpoint_*`; rerunning with the same run name resumes from the latest one, a
    dead worker restarts the group from it (`scaling.max_failures`). Rank 0 predicts the eval splits at the end,
    and the final checkpoint carries the model and the predictions.
    """
    storage = storage_path if is_remote(storage_path) else str(Path(storage_path).resolve())
    final_dir = published_dir(storage, run_name)
    tracking_uri = mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    _ensure_ray(scaling, tracking_uri)
    config = {
        "model_dir": str(Path(model_dir).resolve()),
        "spec": spec.model_dump(),
        "label_names": list(label_names),
        "train_ref": ray.put(train),
        "evals_ref": ray.put(evals),
        "selection_ref": ray.put(selection) if selection is not None else None,
        "task": task,
        "precision": scaling.precision,
        **_job_config(scaling, storage, run_name, mlflow_run_id, tracking_uri, fail_once_at_step),
    }
    fit_at = time.time()
    result = _fit(_trainer(_finetune_worker, config, scaling, run_name, storage))
    metrics = dict(result.metrics or {})
    if metrics.get("first_step_at"):
        TRAIN_STARTS.append((fit_at, metrics["first_step_at"], time.time()))
    with result.checkpoint.as_directory() as ckpt_dir:
        predictions = json.loads((Path(ckpt_dir) / PREDICTIONS_FILE).read_text())
        scores_file = Path(ckpt_dir) / SCORES_FILE
        scores = json.loads(scores_file.read_text()) if scores_file.exists() else {}
        _publish_model(Path(ckpt_dir) / _HF_SUBDIR, Path(final_dir), Path(tokenizer_dir))
    return FinetuneOutcome(
        run_name=run_name, final_step=int(metrics["step"]), model_dir=final_dir, predictions=predictions,
        metrics={k: metrics.get(k) for k in ("train_loss", "examples_per_s", "train_s", "examples_seen",
                                             "first_step_at", "best_step", "best_score", "stopped_early")},
        resumed_from_step=metrics.get("resumed_from_step"), restarted_from_step=metrics.get("restarted_from_step"),
        scores=scores,
    )


def _finetune_worker(config: dict[str, Any]) -> None:
    """One data-parallel rank of a GLUE fine-tuning job: restore, train, (rank 0) predict, report."""
    from cluster.train.loop import autocast_dtype

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    spec = FinetuneSpec(**config["spec"])
    device = ray.train.torch.get_device()
    if not config["use_gpu"]:
        torch.set_num_threads(max(1, math.floor(config["cpus_per_worker"])))
    amp = autocast_dtype(config["precision"], device)
    train, evals = ray.get(config["train_ref"]), ray.get(config["evals_ref"])
    label_names = config["label_names"]
    regression = not label_names
    model = load_classifier(config["model_dir"], max(1, len(label_names)), label_names, seed=spec.seed)
    raw = model

    resume, meta = None, {"invocation": config["invocation"], "resumed_from_step": None}
    with _resume_candidates(ray.train.get_checkpoint(), config["run_dir"]) as candidates:
        # this rank's own RNG (dropout) states; a damaged newest checkpoint: the previous one
        found = first_loadable(candidates, _load_resume(rank), _agree(device, world))
    if found is not None:
        resume, saved = found[1]
        step = resume["state"]["step"]
        # A restart after a dead worker (same invocation) records where it picked up; a rerun, where it resumed.
        meta = {**saved, "restarted_from_step": step} if saved["invocation"] == config["invocation"] else {
            "invocation": config["invocation"], "resumed_from_step": step}
    model = ray.train.torch.prepare_model(model)

    logger = _MlflowLogger(config["mlflow_tracking_uri"], config["mlflow_run_id"]) if rank == 0 else None
    failing_rank = 1 if world > 1 else 0
    checkpointed = {"any": resume is not None}
    total = schedule(len(train), spec)[1]
    first_step_at: dict[str, float] = {}  # wall clock of this session's first optimizer step (start-up cost)

    def on_step(m: dict[str, float]) -> None:
        first_step_at.setdefault("t", time.time())
        state_step["n"] = m["step"]
        if logger:
            logger.log(m, m["step"])
            if m["step"] % max(1, total // 10) == 0 or m["step"] == total:
                print(f"[lmpipe] step {int(m['step'])}/{total} epoch {m['epoch']:.2f} loss {m['loss']:.4f} "
                      f"lr {m['lr']:.2e} {m['examples_per_s']:,.1f} ex/s", flush=True)
        at = config["fail_once_at_step"]
        if rank == failing_rank and at is not None and m["step"] == at and checkpointed["any"]:
            marker = Path(config["fail_marker"])
            if not marker.exists():
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text(f"worker {rank} exited on purpose at step {at}\n")
                os._exit(1)

    selecting = config.get("selection_ref") is not None and spec.select == "best"
    if selecting:
        from tasks.glue.metrics import compute_metrics

        selection = ray.get(config["selection_ref"])

    def score_selection() -> float:  # the task's score on the carved-off rows (every rank: the same decision)
        preds = predict_with_scores(raw, selection, spec.eval_batch_size, device, regression=regression,
                                    autocast_dtype=amp)[0]
        score = statistics.fmean(compute_metrics(config["task"], preds.tolist(), selection.labels.tolist()).values())
        if logger:
            logger.log({"selection_score": score}, int(state_step["n"]))
        return score

    evaluate = score_selection if selecting else None
    state_step = {"n": 0}

    def on_checkpoint(state: Any, state_dicts: dict[str, Any]) -> None:
        if logger:
            logger.flush()
        final = state.step >= state.total_steps or state.stopped_early
        metrics = {"step": state.step, "train_loss": state.last_loss, "examples_per_s": state.examples_per_s,
                   "best_step": state.best_step, "best_score": state.best_score,
                   "stopped_early": state.stopped_early if evaluate else None,
                   "train_s": state.train_s, "examples_seen": state.examples_seen,
                   "resumed_from_step": meta["resumed_from_step"], "restarted_from_step": meta.get("restarted_from_step"),
                   "first_step_at": first_step_at.get("t")}
        with tempfile.TemporaryDirectory() as tmp:
            # Every rank's own RNG states (the data order is a function of seed, epoch and step on every rank, so
            # it needs no position); Ray merges all ranks' folders into one checkpoint.
            torch.save({"rng": state_dicts["rng"]}, Path(tmp) / _rank_file(rank))
            if rank == 0:
                save_checkpoint_state(tmp, state_dicts)
                (Path(tmp) / _RUN_META).write_text(json.dumps({**meta, "world_size": world}))
                if final:
                    raw.save_pretrained(Path(tmp) / _HF_SUBDIR)
                    scored = {name: predict_with_scores(raw, split, spec.eval_batch_size, device,
                                                        regression=regression, autocast_dtype=amp)
                              for name, split in evals.items()}
                    (Path(tmp) / PREDICTIONS_FILE).write_text(json.dumps({n: p.tolist() for n, (p, _) in scored.items()}))
                    (Path(tmp) / SCORES_FILE).write_text(json.dumps({n: sc.tolist() for n, (_, sc) in scored.items()}))
            write_completion_marker(tmp, rank, state.step, world)  # last: what this rank wrote, file by file
            ray.train.report({k: v for k, v in metrics.items() if v is not None},
                             checkpoint=Checkpoint.from_directory(tmp))
        if config["run_dir"]:  # a storage URL: its filesystem's own durability
            fsync_persisted(Path(config["run_dir"]), rank, state.step)
        checkpointed["any"] = True

    finetune(model, train, spec, device, regression=regression, resume=resume, on_step=on_step,
             on_checkpoint=on_checkpoint, is_ddp=world > 1, rank=rank, world_size=world, autocast_dtype=amp,
             evaluate=evaluate)
    if logger:
        logger.flush()


@contextlib.contextmanager
def _resume_candidates(checkpoint: Checkpoint | None, run_dir: str | None) -> Iterator[list[Path]]:
    """Ray's latest registered checkpoint and the complete ones on disk, highest step first.

    A crash right after a checkpoint was written but before every rank's report reached the controller leaves it
    on disk yet out of Ray's snapshot (see `latest_checkpoint_on_disk`); resuming from the older one would redo
    steps, so the step count decides. The older ones follow, for when the newest cannot be loaded.
    """
    on_disk = complete_checkpoints(Path(run_dir), _legacy_complete) if run_dir else []  # a URL: Ray's snapshot only
    with (checkpoint.as_directory() if checkpoint is not None else nullcontext(None)) as registered:
        ours = [Path(registered)] if registered is not None and is_complete(Path(registered), _legacy_complete) else []
        yield unique_by_step([*ours, *on_disk])


def _agree(device: torch.device, world: int) -> Any:
    """`agree(ok)` for `first_loadable`: True only when every rank loaded its part (an all-reduce MIN), so all
    ranks resume from the same checkpoint."""
    def agree(ok: bool) -> bool:
        if world <= 1 or not torch.distributed.is_initialized():
            return ok
        flag = torch.tensor([1 if ok else 0], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
        return bool(flag.item())
    return agree


def _load_resume(rank: int) -> Any:
    """What a worker loads from one checkpoint folder: its resume dict and the folder's run metadata."""
    def load(d: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        return _load_rank_checkpoint(d, rank), json.loads((d / _RUN_META).read_text())
    return load


def save_checkpoint_state(directory: str | Path, state_dicts: dict[str, Any]) -> None:
    """A fine-tuning checkpoint: checkpoint.pt + train_state.json (the `FinetuneState`)."""
    directory = Path(directory)
    torch.save(state_dicts, directory / CHECKPOINT_FILE)
    (directory / STATE_FILE).write_text(json.dumps(state_dicts["state"], indent=2))

