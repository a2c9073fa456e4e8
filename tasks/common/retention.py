"""Retention of finished training runs: which run folders (checkpoints + final model) to keep and which to delete.

    runs, downloads = scan_storage("/repo/.lmpipe/glue/runs")          # what is on disk (reads only)
    plan = plan_retention(runs, downloads, keep=3, registered={...})    # pure: every folder, keep|delete, why
    apply_plan(plan)                                                    # deletes the "delete" ones, re-checked

**Layout read** (the same for pretraining and GLUE storage roots, `tasks.pretrain.core` / `tasks.glue.job`):

    <root>/<run name>/checkpoint_*/, final_model/      one Ray Train run (the big part: weights, optimizer)
    <root>/<spec>-<fp>/LATEST.json                     pretraining job: {"run_name", "status": running|finished}
    <root>/jobs/<base>-<task>/<fp>/LATEST.json         GLUE job (+ result.json naming its final_model)
    <root>/model-XXXXXXXX/                             a GLUE flow's registry download (removed by the flow;
                                                       one left here is from a killed or older run)

A run name is `<kind>-<fingerprint[:8]>-<UTC yyyymmddTHHMMSS>-<hex4>` (`tasks.pretrain.core.new_run_name`):
the kind is the spec name for pretraining (`sample-minilm`), `<task>-s<seed>` for GLUE (`sst2-s0`); the time
orders runs of one kind.

**The rule** (`plan_retention`), for each run folder, first match wins:
1. locked: a live `.lmpipe.lock` in the root, the run folder or one of its job folders -> keep;
2. running: a LATEST.json names it with status running (it is in progress, or resumable after a crash) -> keep;
3. registered: a model version still in the registry came from a folder inside it (tag `lmpipe.source_dir`,
   set at registration; older versions: tag `lmpipe.ray_run_name`) -> keep;
4. finished (LATEST.json says so, or it holds final_model/config.json): the `keep` newest of its kind -> keep,
   older ones -> delete, with the job folders whose LATEST.json names it (a later run of that job trains afresh
   instead of reusing a deleted model);
5. unfinished and not resumable (no LATEST.json names it running, e.g. a run killed and then restarted with
   `--new-run`): delete if a newer run of its kind exists, else keep.
Roots looked in: `<state>/glue/runs`, the roots of registered versions' run folders (pretraining writes beside
its token shards, wherever the spec put them), those remembered from earlier gc runs, and `--root`.
Downloads (`model-*`) are deleted when unlocked and older than `min_download_age_s` (a day): a running flow's
download is younger. Nothing else is touched: not token shards, curated data, the MLflow store or pipeline
state.

A lock is live when `.lmpipe.lock` names a holder (`tasks.common.lock` empties it on release) that is not a dead
process on this host; gc only reads the file, it never takes the lock (a run starting then would fail).
`apply_plan` checks the lock and the LATEST.json status again just before deleting a folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tasks.common.lock import LOCK_NAME, record_is_live

RUN_NAME = re.compile(r"^(?P<kind>.+)-(?P<fp>[0-9a-f]{8})-(?P<stamp>\d{8}T\d{6})-(?P<hex>[0-9a-f]{4})$")
DOWNLOAD = re.compile(r"^model-[A-Za-z0-9_]{8}$")  # tempfile.mkdtemp(prefix="model-") in flows/glue.py
FINAL_MODEL = "final_model"
DAY_S = 24 * 3600.0
# Registered-version tags gc reads: the folder a version was logged from, and (older versions) the run name.
SOURCE_DIR_TAG = "lmpipe.source_dir"
RUN_NAME_TAG = "lmpipe.ray_run_name"

Status = Literal["finished", "running", "unfinished"]


@dataclass(frozen=True)
class RunFolder:
    """One Ray Train run folder under a storage root, as found on disk."""

    path: str
    kind: str  # the run name without fingerprint, time and suffix: "sample-minilm", "sst2-s0"
    stamp: str  # UTC yyyymmddTHHMMSS from the run name: what "newest" means
    status: Status
    job_dirs: tuple[str, ...] = ()  # job folders whose LATEST.json names this run
    locked: bool = False
    size_bytes: int = 0


@dataclass(frozen=True)
class Download:
    """A leftover registry download (`model-*`) in a GLUE storage root."""

    path: str
    mtime: float
    locked: bool = False
    size_bytes: int = 0


@dataclass(frozen=True)
class Decision:
    """What the rule says about one folder, and why."""

    path: str
    action: Literal["keep", "delete"]
    reason: str
    kind: str = ""
    also: tuple[str, ...] = ()  # deleted with it: the job folders that name the run
    size_bytes: int = 0


@dataclass
class GcReport:
    """What `apply_plan` did: deleted paths, skipped ones (re-check failed) with why, bytes freed."""

    deleted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    freed_bytes: int = 0


def lock_is_live(folder: str | Path) -> bool:
    """True when `<folder>/.lmpipe.lock` names a holder that may be alive (read only, never flock'd).

    Released locks are emptied by `tasks.common.lock`; a record naming a dead pid on this host is a killed run
    (the kernel dropped its flock). Unreadable records and other hosts' holders count as live: keep."""
    path = Path(folder) / LOCK_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return record_is_live(data)


def _locked_up_to(path: Path, root: Path) -> bool:
    """A live lock in `path` or any folder above it up to `root` (inclusive)."""
    chain = [path, *(p for p in path.parents if p == root or root in p.parents)]
    return any(lock_is_live(p) for p in chain)


def folder_size(path: str | Path) -> int:
    """Bytes of the regular files below `path` (links not followed)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def _read_latest(job_dir: Path) -> tuple[str, str] | None:
    try:
        data = json.loads((job_dir / "LATEST.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("run_name"), str):
        return None
    return data["run_name"], str(data.get("status", ""))


def _job_dirs(root: Path) -> list[Path]:
    """Pretraining job folders (`<root>/<spec>-<fp>/`) and GLUE ones (`<root>/jobs/<base>-<task>/<fp>/`)."""
    found = [p.parent for p in root.glob("*/LATEST.json")]
    found += [p.parent for p in root.glob("jobs/*/*/LATEST.json")]
    return sorted(found)


def scan_storage(root: str | Path, *, sizes: bool = True) -> tuple[list[RunFolder], list[Download]]:
    """The run folders and leftover downloads of one storage root, with their status and locks (reads only)."""
    root = Path(root).resolve()
    if not root.is_dir():
        return [], []
    named: dict[str, list[tuple[Path, str]]] = defaultdict(list)
    for job in _job_dirs(root):
        latest = _read_latest(job)
        if latest is not None:
            named[latest[0]].append((job, latest[1]))
    runs: list[RunFolder] = []
    downloads: list[Download] = []
    for child in sorted(root.iterdir()):
        if not child.is_dir() or child.is_symlink():
            continue
        if DOWNLOAD.match(child.name):
            downloads.append(Download(str(child), child.stat().st_mtime, _locked_up_to(child, root),
                                      folder_size(child) if sizes else 0))
            continue
        m = RUN_NAME.match(child.name)
        if not m:
            continue
        jobs = named.get(child.name, [])
        statuses = {s for _, s in jobs}
        if "running" in statuses:
            status: Status = "running"
        elif "finished" in statuses or (child / FINAL_MODEL / "config.json").is_file():
            status = "finished"
        else:
            status = "unfinished"
        locked = _locked_up_to(child, root) or any(_locked_up_to(j, root) for j, _ in jobs)
        runs.append(RunFolder(str(child), m["kind"], m["stamp"], status, tuple(str(j) for j, _ in jobs), locked,
                              folder_size(child) if sizes else 0))
    return runs, downloads


def _inside(path: str, folder: str) -> bool:
    p, f = Path(path), Path(folder)
    return p == f or f in p.parents


def plan_retention(runs: Iterable[RunFolder], downloads: Iterable[Download] = (), *, keep: int,
                   registered: Mapping[str, str] | None = None, registered_runs: Mapping[str, str] | None = None,
                   now: float | None = None, min_download_age_s: float = DAY_S) -> list[Decision]:
    """Every folder with keep|delete and the reason (the rule in the module docstring). Pure: no disk access.

    `registered`: source folder -> "name vN" of each version in the registry; `registered_runs`: run name ->
    "name vN" for versions without a source folder tag. `keep` >= 1 finished runs are kept per kind."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1 (the newest finished run of each kind), got {keep}")
    registered, registered_runs = registered or {}, registered_runs or {}
    now = time.time() if now is None else now
    decisions: list[Decision] = []
    by_kind: dict[str, list[RunFolder]] = defaultdict(list)
    for run in runs:
        by_kind[run.kind].append(run)
    for kind in sorted(by_kind):
        ordered = sorted(by_kind[kind], key=lambda r: (r.stamp, r.path), reverse=True)  # newest first
        finished_seen = 0
        for i, run in enumerate(ordered):
            holders = sorted({v for src, v in registered.items() if _inside(src, run.path)}
                             | ({registered_runs[Path(run.path).name]} if Path(run.path).name in registered_runs
                                else set()))

            def decide(action: str, reason: str, also: tuple[str, ...] = (), run=run) -> None:
                decisions.append(Decision(run.path, action, reason, kind, also, run.size_bytes))  # type: ignore[arg-type]

            if run.status == "finished":
                finished_seen += 1
            if run.locked:
                decide("keep", "locked: a live .lmpipe.lock (a run holds it)")
            elif run.status == "running":
                decide("keep", "running: its LATEST.json says running (in progress or resumable)")
            elif holders:
                decide("keep", f"registered: {', '.join(holders)} came from it")
            elif run.status == "finished" and finished_seen <= keep:
                decide("keep", f"finished: among the {keep} newest finished runs of {kind}")
            elif run.status == "finished":
                decide("delete", f"finished: older than the {keep} newest finished runs of {kind}", run.job_dirs)
            elif i > 0:
                decide("delete", f"unfinished and not resumable, superseded by {Path(ordered[0].path).name}",
                       run.job_dirs)
            else:
                decide("keep", f"unfinished: the newest run of {kind}")
    for dl in sorted(downloads, key=lambda d: d.path):
        age = now - dl.mtime
        if dl.locked:
            decisions.append(Decision(dl.path, "keep", "locked: a live .lmpipe.lock", "download", (), dl.size_bytes))
        elif age < min_download_age_s:
            decisions.append(Decision(dl.path, "keep", f"download younger than {min_download_age_s / 3600:g} h: a "
                                      "running GLUE flow may use it", "download", (), dl.size_bytes))
        else:
            decisions.append(Decision(dl.path, "delete", f"leftover registry download, {age / 3600:.0f} h old",
                                      "download", (), dl.size_bytes))
    return decisions


def _still_deletable(decision: Decision) -> str | None:
    """Why `decision` must not be applied any more (a run took a lock or resumed since planning), else None."""
    for folder in (decision.path, *decision.also):
        if lock_is_live(folder) or lock_is_live(Path(folder).parent):
            return "locked since planning"
    for job in decision.also:
        latest = _read_latest(Path(job))
        if latest is not None and latest[1] == "running":
            return "running since planning"
    return None


def apply_plan(plan: Iterable[Decision]) -> GcReport:
    """Delete the folders the plan marks "delete" (and their job folders), each re-checked just before."""
    report = GcReport()
    for decision in plan:
        if decision.action != "delete":
            continue
        why = _still_deletable(decision)
        if why:
            report.skipped[decision.path] = why
            continue
        for folder in (decision.path, *decision.also):
            if os.path.isdir(folder):
                shutil.rmtree(folder)
                report.deleted.append(folder)
            parent = Path(folder).parent  # a GLUE job's `jobs/<base>-<task>/`, once its last job is gone
            if parent.parent.name == "jobs" and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
        report.freed_bytes += decision.size_bytes
    return report


def registered_sources(tracking_uri: str) -> tuple[dict[str, str], dict[str, str]]:
    """({source folder: "name vN"}, {run name: "name vN"}) of every model version in the registry."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    sources: dict[str, str] = {}
    run_names: dict[str, str] = {}
    token = None
    while True:
        page = client.search_model_versions(max_results=1000, page_token=token)
        for mv in page:
            label = f"{mv.name} v{mv.version}"
            tags = mv.tags or {}
            if tags.get(SOURCE_DIR_TAG):
                sources[tags[SOURCE_DIR_TAG]] = label
            elif tags.get(RUN_NAME_TAG):
                run_names[tags[RUN_NAME_TAG]] = label
        token = page.token
        if not token:
            return sources, run_names


def storage_roots(state_glue_runs: str | Path, sources: Iterable[str], extra: Iterable[str] = ()) -> list[str]:
    """The storage roots gc looks in: the state root's GLUE runs, the roots holding registered versions'
    run folders (`<root>/<run name>/final_model`: where pretraining wrote, wherever its spec put it), and
    `extra` (--root)."""
    roots = {str(Path(state_glue_runs).resolve())}
    for src in sources:
        p = Path(src)
        if p.name == FINAL_MODEL and RUN_NAME.match(p.parent.name):
            roots.add(str(p.parent.parent))
    roots |= {str(Path(r).resolve()) for r in extra}
    return sorted(r for r in roots if os.path.isdir(r))


def plan_gc(keep: int, tracking_uri: str, extra_roots: Iterable[str] = (), *, now: float | None = None,
            min_download_age_s: float = DAY_S) -> tuple[list[str], list[Decision]]:
    """(the roots looked in, the plan) for `lmpipe gc`: the registry read first, so a registry that cannot be
    read fails here, before anything could be deleted. The roots found are remembered in
    `<state>/gc/roots.json` for the next gc."""
    from tasks.common.io import write_text_atomically
    from tasks.common.state import state_path

    sources, run_names = registered_sources(tracking_uri)
    # Roots seen by an earlier gc stay in: a root whose versions were all deleted is still cleaned.
    memory = state_path("gc", "roots.json")
    try:
        remembered = [str(r) for r in json.loads(memory.read_text(encoding="utf-8"))]
    except (OSError, ValueError, TypeError):
        remembered = []
    roots = storage_roots(state_path("glue", "runs"), sources, [*remembered, *extra_roots])
    if sorted(remembered) != roots:
        write_text_atomically(memory, json.dumps(roots, indent=2))
    runs: list[RunFolder] = []
    downloads: list[Download] = []
    for root in roots:
        r, d = scan_storage(root)
        runs += r
        downloads += d
    return roots, plan_retention(runs, downloads, keep=keep, registered=sources, registered_runs=run_names,
                                 now=now, min_download_age_s=min_download_age_s)
