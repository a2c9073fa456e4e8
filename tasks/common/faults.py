"""Named fault-injection points for the fault suite (`tests/faults/`); inert unless `LMPIPE_FAULTS` is set.

Production code calls `fault_point("curate.unit_written", unit.label)` at the moments where a crash is
interesting. A test sets

    LMPIPE_FAULTS="curate.unit_written@books=killpg,curate.shard_written=kill"
    LMPIPE_FAULTS_DIR=/tmp/somewhere   # required: where "already fired" markers live

Each entry is `point[@substring]=action`. It fires at the first hit of `point` whose detail contains
`substring` (any detail when omitted), once across every process of the run and its reruns: the first
process to create the marker file `LMPIPE_FAULTS_DIR/<entry hash>` fires, no other process does. So a
rerun (or a retry in another worker) gets past the point, which is what the suite needs to check recovery.

Actions: `killpg` (SIGKILL the caller's whole process group, as a machine losing power would),
`kill` (SIGKILL the calling process only: an OOM-killed worker), `raise` (raise `InjectedFault`, a
`MemoryError` subclass: an exception in the middle of a stream).
"""

from __future__ import annotations

import hashlib
import os
import signal

ENV = "LMPIPE_FAULTS"
DIR_ENV = "LMPIPE_FAULTS_DIR"


class InjectedFault(MemoryError):
    """Raised by the `raise` action; a MemoryError so code paths treat it as a real resource failure."""


def _entries(raw: str) -> list[tuple[str, str, str, str]]:
    """(entry text, point, substring, action) for each comma-separated entry."""
    out = []
    for entry in filter(None, (e.strip() for e in raw.split(","))):
        target, _, action = entry.partition("=")
        point, _, substring = target.partition("@")
        if action not in ("killpg", "kill", "raise"):
            raise ValueError(f"{ENV}: unknown action {action!r} in {entry!r} (killpg, kill or raise)")
        out.append((entry, point, substring, action))
    return out


def armed(name: str) -> bool:
    """Whether `LMPIPE_FAULTS` names the point `name`: lets a hot loop check once instead of per record."""
    return any(point == name for _, point, _, _ in _entries(os.environ.get(ENV, "")))


def fault_point(name: str, detail: str = "") -> None:
    """Fire the configured fault for `name` (once per run), or do nothing (the normal case)."""
    raw = os.environ.get(ENV)
    if not raw:
        return
    for entry, point, substring, action in _entries(raw):
        if point != name or substring not in detail:
            continue
        directory = os.environ.get(DIR_ENV)
        if not directory:
            raise RuntimeError(f"{ENV} is set but {DIR_ENV} is not: nowhere to remember fired faults")
        os.makedirs(directory, exist_ok=True)
        marker = os.path.join(directory, hashlib.sha256(entry.encode()).hexdigest()[:16])
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            continue  # fired already (this run or an earlier one)
        with os.fdopen(fd, "w") as f:
            f.write(f"{entry} fired in pid {os.getpid()} at {name} ({detail})\n")
        if action == "killpg":
            os.killpg(os.getpgrp(), signal.SIGKILL)
        elif action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        else:
            raise InjectedFault(f"injected fault at {name} ({detail})")
