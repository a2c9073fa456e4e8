"""Which checkpoint a training job resumes from, when the newest one may be cut short or unreadable.

A checkpoint folder (`<storage>/<run>/checkpoint_*`) is written by several ranks: rank 0 its weights and
optimizer (`checkpoint.pt`), `train_state.json` and `run_meta.json`, every rank its `rank_<r>.pt`. Files
that merely exist prove nothing: a power loss can leave `checkpoint.pt` under its name with zero bytes,
and a crash can stop one rank's upload half way. So each rank writes a *completion marker* last
(`complete_rank_<r>.json`: the step, the world size, and the size of every file that rank wrote), and:

- `is_complete(folder)`: every rank's marker is there, readable, for the same step, and every file it
  names has the recorded size. Folders written before markers existed fall back to the old rule (the
  files are there) and are still guarded by the load fallback below.
- `complete_checkpoints(run_dir)`: the complete folders, newest step first.
- `first_loadable(candidates, load, agree)`: the first candidate whose `load` succeeds (a file that
  passes the marker check but fails to unpickle, e.g. garbled bytes, is skipped with a warning), so a
  damaged newest checkpoint costs the steps since the previous one, never the job. `agree` lets all
  ranks take the same decision (an all-reduce in the Ray worker).

Pure: no Ray; the Ray worker (`cluster.train.ray_entry`) wires it up.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from tasks.common.durable import write_bytes_durably

STATE_FILE = "train_state.json"  # same name as cluster.train.loop.STATE_FILE (no torch import here)
_MARKER_PREFIX = "complete_rank_"

log = logging.getLogger(__name__)
T = TypeVar("T")


def marker_name(rank: int) -> str:
    """One rank's completion marker inside a checkpoint folder."""
    return f"{_MARKER_PREFIX}{rank}.json"


def write_completion_marker(directory: str | Path, rank: int, step: int, world_size: int) -> None:
    """Record, last, what this rank wrote into `directory`: the step, the world size and each file's size
    (paths relative to `directory`; other ranks' markers excluded)."""
    directory = Path(directory)
    files = {
        str(p.relative_to(directory)): p.stat().st_size
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not p.name.startswith(_MARKER_PREFIX)
    }
    marker = {"rank": rank, "step": int(step), "world_size": int(world_size), "files": files}
    write_bytes_durably(directory / marker_name(rank), json.dumps(marker, indent=1, sort_keys=True).encode())


def _read_marker(path: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads(path.read_text())
        return marker if isinstance(marker, dict) and isinstance(marker.get("files"), dict) else None
    except (OSError, ValueError):
        return None


def checkpoint_step(directory: Path) -> int | None:
    """The step in a checkpoint's `train_state.json`, or None when it is missing or unreadable."""
    try:
        return int(json.loads((directory / STATE_FILE).read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_complete(directory: Path, legacy: Callable[[Path], bool]) -> bool:
    """True when every rank's marker is there for one step and every file it names has its recorded size.

    A folder with no marker at all was written before markers existed: `legacy(directory)` decides.
    """
    markers = sorted(directory.glob(f"{_MARKER_PREFIX}*.json"))
    if not markers:
        return legacy(directory)
    first = _read_marker(directory / marker_name(0))
    if first is None:
        return False
    for rank in range(int(first.get("world_size", 1))):
        marker = first if rank == 0 else _read_marker(directory / marker_name(rank))
        if marker is None or marker.get("step") != first.get("step"):
            return False
        for name, size in marker["files"].items():
            try:
                if (directory / name).stat().st_size != size:
                    return False
            except OSError:
                return False
    return checkpoint_step(directory) == first.get("step")


def complete_checkpoints(run_dir: Path, legacy: Callable[[Path], bool]) -> list[Path]:
    """The complete `checkpoint_*` folders in `run_dir`, highest step first (folder names need not sort)."""
    found = []
    for d in run_dir.glob("checkpoint_*"):
        step = checkpoint_step(d)
        if step is not None and d.is_dir() and is_complete(d, legacy):
            found.append((step, str(d), d))
    return [d for _, _, d in sorted(found, reverse=True)]


def first_loadable(candidates: Iterable[Path], load: Callable[[Path], T],
                   agree: Callable[[bool], bool] = lambda ok: ok) -> tuple[Path, T] | None:
    """`(folder, load(folder))` for the first candidate that loads (on every rank, per `agree`), else None.

    A candidate whose load raises is logged and skipped: the job resumes from the previous checkpoint. Every
    rank must walk the same candidates; `agree(ok)` returns whether all ranks loaded theirs.
    """
    for directory in candidates:
        try:
            value, ok = load(directory), True
        except Exception as exc:  # noqa: BLE001 (torch.load raises RuntimeError, EOFError, UnpicklingError, ...)
            value, ok = None, False
            log.warning("checkpoint %s cannot be loaded (%s: %s); trying the previous one",
                        directory, type(exc).__name__, exc)
            print(f"[lmpipe] checkpoint {directory} cannot be loaded ({type(exc).__name__}); "
                  "resuming from the previous one", flush=True)
        if agree(ok):
            return directory, value  # type: ignore[return-value]
    return None


def fsync_persisted(run_dir: Path, rank: int, step: int) -> None:
    """fsync the files this rank's marker names in the checkpoint folder Ray copied them to (best effort).

    Ray copies the reported folder into storage without fsync; doing it here, after the report returned,
    shrinks the window in which a power loss can cut the checkpoint to the time of the copy itself (and
    `is_complete` catches a cut inside it).
    """
    from tasks.common.durable import fsync_path

    for d in run_dir.glob("checkpoint_*"):
        marker = _read_marker(d / marker_name(rank))
        if marker is None or marker.get("step") != step:
            continue
        try:
            for name in [*marker["files"], marker_name(rank)]:
                fsync_path(d / name)
            fsync_path(d)
        except OSError as exc:
            log.warning("could not fsync checkpoint %s: %s", d, exc)


def unique_by_step(paths: Iterable[Path]) -> list[Path]:
    """`paths` without duplicates (same folder twice), highest step first; unreadable steps dropped."""
    seen: dict[str, tuple[int, Path]] = {}
    for p in paths:
        step = checkpoint_step(p)
        if step is not None:
            seen.setdefault(os.path.realpath(p), (step, p))
    return [p for _, p in sorted(seen.values(), key=lambda sp: sp[0], reverse=True)]


__all__ = ["checkpoint_step", "complete_checkpoints", "first_loadable", "fsync_persisted", "is_complete", "marker_name",
           "unique_by_step", "write_completion_marker"]
