"""Stage bookkeeping for `flows/pipeline.py`, pure (no Prefect, Ray or MLflow).

A pipeline run keeps `<state>/<name>-<fingerprint>/run.json`:

    {"status": "running" | "partial" | "complete" | "failed", "attempts": 2,
     "stages": {"curate": {"status": "done", "output": {...}}, ...}}

A run is `complete` only when every stage of its pipeline spec is done (`run_status`): a run of some stages
(`--stages glue`) that leaves others undone ends `partial`, and the next run of the same specs continues it,
skipping the stages marked done. So does a rerun after a crash, a kill or a failed stage. A stage that runs again
drops the records of the stages after it (`mark_stage`): they were made from the old output (a GLUE score of the
previous candidate must not stand for the model just pretrained). Once a run completes, the next run starts afresh
(a nightly run rebuilds; the stages' own caches make unchanged work cheap). Files are written to a temporary
name and renamed durably (fsync before and after), so neither a kill nor a power loss leaves a half-written state.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from data_specs.pipeline import STAGES
from tasks.common.durable import replace_durably

RUN_FILE = "run.json"


def run_dir(state_root: str | Path, name: str, spec_fingerprint: str) -> Path:
    return Path(state_root) / f"{name}-{spec_fingerprint}"


def read_run(directory: str | Path) -> dict[str, Any] | None:
    path = Path(directory) / RUN_FILE
    if not path.is_file():
        return None
    try:
        run = json.loads(path.read_bytes().decode("utf-8"))
    except ValueError as exc:  # cut short by a power loss: no run to continue, rather than failing every rerun
        logging.getLogger(__name__).warning("%s cannot be read (%s): starting a new run", path, exc)
        return None
    return run if isinstance(run, dict) else None


def _write(directory: str | Path, run: dict[str, Any]) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{RUN_FILE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(run, indent=2, sort_keys=True), encoding="utf-8")
    replace_durably(tmp, directory / RUN_FILE)


def start_run(directory: str | Path, fresh: bool = False) -> dict[str, Any]:
    """The run to continue (the last one, if it did not complete and `fresh` is false) or a new one."""
    previous = read_run(directory)
    if previous is not None and previous.get("status") != "complete" and not fresh:
        previous["status"] = "running"
        previous["attempts"] = previous.get("attempts", 1) + 1
        _write(directory, previous)
        return previous
    run = {"status": "running", "attempts": 1, "stages": {}}
    _write(directory, run)
    return run


def stage_done(run: dict[str, Any], stage: str) -> dict[str, Any] | None:
    """What a finished stage of this run produced, or None if it has to run."""
    entry = run["stages"].get(stage)
    return entry["output"] if entry and entry.get("status") == "done" else None


def mark_stage(directory: str | Path, run: dict[str, Any], stage: str, output: dict[str, Any]) -> None:
    """Record `stage` done with `output`; the records of later stages go (they were built on the old output)."""
    for later in STAGES[STAGES.index(stage) + 1:]:
        run["stages"].pop(later, None)
    run["stages"][stage] = {"status": "done", "output": output}
    _write(directory, run)


def remaining_stages(run: dict[str, Any], required: list[str] | tuple[str, ...]) -> list[str]:
    """The stages of `required` (the pipeline spec's) that this run has not finished, in pipeline order."""
    return [s for s in STAGES if s in required and stage_done(run, s) is None]


def run_status(run: dict[str, Any], required: list[str] | tuple[str, ...]) -> str:
    """'complete' when every required stage is done, else 'partial' (the next run continues this one)."""
    return "partial" if remaining_stages(run, required) else "complete"


def _local_path(path: str) -> str:
    return os.path.normpath(path.removeprefix("file://")) if "://" not in path or path.startswith("file://") \
        else path.rstrip("/")


def curated_mismatch(curate_output: str, pretrain_curated: str, *, curate_spec: str, pretrain_spec: str) -> str | None:
    """Why the pretrain stage would not read what the curate stage writes, with the fix; None when it would.

    Both paths come resolved as the stages resolve them (absolute local paths, URLs as given)."""
    if _local_path(curate_output) == _local_path(pretrain_curated):
        return None
    return (f"the pretrain spec's data.curated ({pretrain_curated}, in {pretrain_spec}) is not the curate stage's "
            f"output ({curate_output}, in {curate_spec}): pretraining would read another corpus than the one this "
            f"pipeline curates. Set data.curated to {curate_output} in {pretrain_spec} (or the curate spec's output "
            "to the pretrain spec's data.curated), or leave curate out of the pipeline's stages")


def finish_run(directory: str | Path, run: dict[str, Any], status: str) -> None:
    run["status"] = status
    _write(directory, run)
