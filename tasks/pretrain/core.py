"""Pure checks and bookkeeping for a pretraining job: preflight, run names, resume state.

Preflight runs before any work: a spec that names a missing curated dataset, asks for more GPUs or
CPUs than the machine has, or sets a sequence length or batch size that cannot work fails here, with
a message that says how to fix it.

Run names: every job gets a unique name (`<name>-<fingerprint>-<UTC time>-<random>`), so a new job
never silently resumes an old one; a job that did not finish is recorded as `running` in
`<storage>/<name>-<fingerprint>/LATEST.json`, and the next run of the same spec resumes it.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

from fsspec.core import url_to_fs

from data_specs import PretrainSpec
from tasks.shards.core import write_bytes_atomic

# Bytes of text per token can't be below 1 for byte-level BPE or WordPiece (a token covers at least
# one character, and a character is at least one byte), so text bytes / seq_len bounds the sequences.
MIN_BYTES_PER_TOKEN = 1

MODEL_PRESET_SHAPES = {
    "tiny": {"n_layer": 2, "n_embd": 64, "n_head": 2},
    "mini": {"n_layer": 4, "n_embd": 256, "n_head": 4},
    "small": {"n_layer": 12, "n_embd": 768, "n_head": 12},
    "base": {"n_layer": 12, "n_embd": 768, "n_head": 12},
}


class PreflightError(ValueError):
    """The job cannot work as specified; the message lists each problem and its fix."""


class ResumeMismatchError(PreflightError):
    """An unfinished job's checkpoints were written with another worker count or batch layout than asked now."""


def read_json_or_none(url: str) -> dict[str, Any] | None:
    """The JSON object at `url`, or None when it is missing or unreadable (a power loss can leave it empty under
    its name: that reads as no file, with a warning, rather than failing every rerun)."""
    fs, path = url_to_fs(url)
    if not fs.exists(path):
        return None
    try:
        with fs.open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        logging.getLogger(__name__).warning("%s cannot be read (%s): treated as missing", url, exc)
        return None
    return data if isinstance(data, dict) else None


def read_curated_manifest(curated: str) -> dict[str, Any] | None:
    return read_json_or_none(f"{curated.rstrip('/')}/manifest.json")


def preflight(
    spec: PretrainSpec,
    *,
    curated_manifest: dict[str, Any] | None,
    gpus_available: int | None,
    cpus_available: float | None,
    token_manifest: dict[str, Any] | None = None,
) -> list[str]:
    """Every reason this job cannot run, each with its fix; empty when it can."""
    problems: list[str] = []
    scaling, train, packing = spec.scaling, spec.train, spec.packing
    if curated_manifest is None:
        problems.append(
            f"data.curated: no curated dataset at {spec.data.curated} (no manifest.json there). Run "
            "`lmpipe curate <curate spec>` first, or point data.curated at the `output` folder of a curate run."
        )
    elif not curated_manifest.get("shards"):
        problems.append(f"data.curated: the curated dataset at {spec.data.curated} has no shards (0 documents kept).")
    if spec.tokenizer.existing and not os.path.exists(os.path.join(spec.tokenizer.existing, "tokenizer.json")):
        problems.append(f"tokenizer.existing: no tokenizer.json in {spec.tokenizer.existing}")
    # None: a Ray cluster, judged by `cluster.ray_session` (an autoscaler may add GPU nodes; GPU groups scale from 0)
    if scaling.use_gpu and gpus_available is not None and scaling.num_workers > gpus_available:
        problems.append(
            f"scaling: {scaling.num_workers} GPU worker(s) requested but {gpus_available} GPU(s) available. Lower "
            "scaling.num_workers, set scaling.use_gpu: false, or point RAY_ADDRESS at a cluster with more GPUs."
        )
    if cpus_available is not None and scaling.num_workers * scaling.cpus_per_worker > cpus_available:
        problems.append(
            f"scaling: {scaling.num_workers} worker(s) × {scaling.cpus_per_worker} CPU = "
            f"{scaling.num_workers * scaling.cpus_per_worker:g} CPUs, but {cpus_available:g} are available. Lower "
            "scaling.cpus_per_worker (0.5 works on a 2-core machine) or scaling.num_workers."
        )
    shape = {**MODEL_PRESET_SHAPES[spec.model.preset],
             **{k: v for k, v in (("n_layer", spec.model.n_layer), ("n_embd", spec.model.n_embd),
                                  ("n_head", spec.model.n_head)) if v is not None}}
    if spec.model.init_from is None and shape["n_embd"] % shape["n_head"]:  # a checkpoint brings its own shape
        problems.append(f"model: n_embd {shape['n_embd']} is not divisible by n_head {shape['n_head']}.")
    if spec.model.kind == "bert" and packing.seq_len < 8:
        problems.append("packing.seq_len: a BERT sequence needs room for [CLS], [SEP] and text: use at least 8.")
    global_batch = train.micro_batch_size * scaling.num_workers
    if curated_manifest and curated_manifest.get("shards") and token_manifest is None:
        text_bytes = sum(s.get("text_bytes", s.get("bytes", 0)) for s in curated_manifest["shards"])
        most_sequences = text_bytes // (packing.seq_len * MIN_BYTES_PER_TOKEN)
        if most_sequences < global_batch:
            problems.append(
                f"packing.seq_len {packing.seq_len} × train.micro_batch_size {train.micro_batch_size} × "
                f"{scaling.num_workers} worker(s): the curated corpus ({text_bytes:,} bytes of text) holds at most "
                f"{most_sequences:,} sequences, fewer than one global batch ({global_batch}). Lower seq_len or "
                "micro_batch_size, or curate more data."
            )
    if token_manifest is not None:
        train_seqs = token_manifest["splits"]["train"]["sequences"]
        val_seqs = token_manifest["splits"]["val"]["sequences"]
        if train_seqs < global_batch:
            problems.append(
                f"train.micro_batch_size {train.micro_batch_size} × {scaling.num_workers} worker(s) = {global_batch} "
                f"sequences per step, but only {train_seqs} training sequences exist. Lower micro_batch_size, "
                "packing.seq_len or num_workers, or curate more data."
            )
        if val_seqs < scaling.num_workers:
            problems.append(
                f"packing.validation_fraction {packing.validation_fraction}: only {val_seqs} validation sequences "
                f"for {scaling.num_workers} worker(s). Raise validation_fraction or lower packing.seq_len."
            )
    return problems


def check(problems: list[str]) -> None:
    """Raise PreflightError listing every problem."""
    if problems:
        raise PreflightError("the pretrain spec cannot run:\n" + "\n".join(f"  - {p}" for p in problems))


def resume_mismatch(saved: dict[str, Any], *, num_workers: int, micro_batch_size: int, grad_accum: int) -> str | None:
    """Why checkpoints written in the layout `saved` (world_size, micro_batch_size, grad_accum from the checkpoint
    metadata) cannot be resumed with this one, and the fix; None when they can (or `saved` predates the layout).

    A checkpoint holds each rank's data position (micro-batches consumed from that rank's stream) and RNG
    states: with another worker count the ranks, their streams and their RNGs are different ones, and with
    another micro_batch_size or grad_accum the position counts other batches. Refusing keeps the job intact:
    rerun with the old values to resume it, or start a new job.
    """
    wrote = {k: saved.get(k) for k in ("world_size", "micro_batch_size", "grad_accum")}
    if wrote["world_size"] is None:
        return None
    fixes = []
    if wrote["world_size"] != num_workers:
        fixes.append(f"set scaling.num_workers: {wrote['world_size']}")
    for key, now in (("micro_batch_size", micro_batch_size), ("grad_accum", grad_accum)):
        if wrote[key] != now:
            fixes.append(f"set train.{key}: {wrote[key]}")
    if not fixes:
        return None
    return (f"it was written by {wrote['world_size']} worker(s) with micro_batch_size {wrote['micro_batch_size']} "
            f"and grad_accum {wrote['grad_accum']}, this run asks for {num_workers} worker(s) with "
            f"{micro_batch_size} and {grad_accum}; each rank's data position and RNG state belong to the layout "
            f"that wrote them. {' and '.join(fixes)} to resume, or rerun with --new-run to start a new job "
            "(a new run_name when calling run_pretraining).")


def tokens_mismatch(saved: dict[str, Any], tokens_sha256: str | None) -> str | None:
    """Why checkpoints trained on the token shards whose manifest hashed to `saved["tokens_sha256"]` cannot be
    resumed on the shards whose manifest hashes to `tokens_sha256` now, with the fix; None when they can (or
    either side is unknown: checkpoints written before the hash was recorded).

    Each rank's position is a count of micro-batches into *those* shards: on rebuilt shards (a curate rerun, a
    changed mixture or tokenizer) it points at other rows, so a resume would silently skip and repeat data.
    """
    old = saved.get("tokens_sha256")
    if old is None or tokens_sha256 is None or old == tokens_sha256:
        return None
    return (f"it was trained on token shards whose manifest had sha256 {old[:16]}…, and the token shards were "
            f"rebuilt since (manifest sha256 now {tokens_sha256[:16]}…); its data position means nothing in the new "
            "shards. Rerun with --new-run to start a new job on the new tokens (a new run_name when calling "
            "run_pretraining), or restore the old curated output and token shards to resume it.")


@dataclass
class JobState:
    """The latest job of one spec: its run name, MLflow run id and whether it finished."""

    run_name: str
    status: str  # "running" | "finished"
    mlflow_run_id: str | None = None


def job_dir(storage_path: str, spec_name: str, fingerprint: str) -> str:
    return f"{storage_path.rstrip('/')}/{spec_name}-{fingerprint}"


def new_run_name(spec_name: str, fingerprint: str) -> str:
    """Unique per job: a new job never reuses (and so never silently resumes) an older one's name."""
    return f"{spec_name}-{fingerprint[:8]}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"


def read_job_state(directory: str) -> JobState | None:
    data = read_json_or_none(f"{directory}/LATEST.json")
    return JobState(**data) if data else None


def write_job_state(directory: str, state: JobState) -> None:
    write_bytes_atomic(f"{directory}/LATEST.json", json.dumps(asdict(state), indent=2).encode("utf-8"))
