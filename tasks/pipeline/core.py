"""Stage bookkeeping for `flows/pipeline.py`, pure (no Prefect, Ray or MLflow).

A pipeline run keeps `<state>/<name>-<fingerprint>/run.json`:

    {"status": "running" | "complete" | "failed", "stages": {"curate": {"status": "done", "output": {...}}, ...}}

A rerun of the same specs while the last run is unfinished (a crash, a kill, a failed stage) skips the stages
marked done and starts at the first one that is not. Once a run completes, the next run starts afresh (a
nightly run rebuilds; the stages' own caches make unchanged work cheap). Files are written to a temporary
name and renamed durably (fsync before and after), so neither a kill nor a power loss leaves a half-written state.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

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
    run["stages"][stage] = {"status": "done", "output": output}
    _write(directory, run)


def finish_run(directory: str | Path, run: dict[str, Any], status: str) -> None:
    run["status"] = status
    _write(directory, run)
