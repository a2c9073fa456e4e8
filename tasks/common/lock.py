"""One writer per output: an exclusive lock at the output root, held for a whole run.

    with output_lock("/data/corpus"):      # raises OutputLocked at once if another run holds it
        ...write shards, manifest...
    with output_lock(job_folder, wait_s=600):   # or waits up to 10 min for the holder to finish

Used by every run that writes a shared folder: curate (its output), tokenize (the token folder), pretrain (its
job folder), each GLUE fine-tuning job (its job folder) and the pipeline (its run folder). A second run fails
fast by default, naming the holder (pid, host, start, command, Prefect flow run id) and how to get past it;
`wait_s` or `$LMPIPE_LOCK_WAIT_S` (seconds) makes it wait that long for the lock first, polling once a second.

Local outputs: `fcntl.flock` on `<output>/.lmpipe.lock`. The kernel drops the lock when the holding
process exits, SIGKILL and power loss included, so a crashed run never blocks the next one. The file
itself stays (deleting a flock'd file races with a run that just opened it); while held it names its
holder (pid, host, since), which is what the next run's error message shows. The lock is per open file,
so it is not inherited by spawned workers and a second `output_lock` on the same output in the same
process fails too: take it once, at the top of a run.

Remote outputs (any other fsspec URL: s3://, gs://, memory://): an object store has no lock that dies
with its holder. The lock is an advisory object `<output>/.lmpipe.lock` holding the same owner record,
created with fsspec's `pipe_file(mode="create")`: atomic where the store supports conditional writes
(s3fs uses If-None-Match), check-then-write elsewhere, so two runs started within the same instant may
both get it there. It is deleted when the run ends normally. A run killed outright leaves it behind:
it is taken over only when it names a dead process on this same host; otherwise the error names the
object to delete once you know that run is gone.

Takeover of a stale remote lock deletes only that exact object, never a newer holder's lock. fsspec's
`rm` has no condition (S3's DeleteObject If-Match and GCS's ifGenerationMatch exist, but no fsspec
filesystem passes them), so takeovers are serialised with the same primitive as the lock itself: a run
first creates the claim `<lock>.takeover-<sha256 of the stale lock's bytes>` with `mode="create"` (only one
run gets it), then re-reads the lock and deletes it only if its bytes are still the stale ones, creates
its own lock with `mode="create"`, and removes the claim. A run that loses the claim, or finds the lock
changed, looks again and names the new holder. Where the store's create is atomic, so is the takeover;
where it is check-then-write (see above), two runs starting a takeover within the same instant may both
get the claim. A run killed between creating its claim and finishing leaves the claim behind: the error
then names both objects to delete.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from fsspec.core import url_to_fs

LOCK_NAME = ".lmpipe.lock"
WAIT_ENV = "LMPIPE_LOCK_WAIT_S"  # seconds a run waits for a held lock before failing (default 0: fail fast)
POLL_S = 1.0  # how often a waiting run tries again


class OutputLocked(RuntimeError):
    """Another run holds the output's lock; the message says who, since when, and where the lock is."""

    def __init__(self, message: str, holder: dict[str, Any] | None = None):
        super().__init__(message)  # one positional arg: the exception pickles (Prefect stores failed states)
        self.holder = holder


def locked_message(output: str, holder: dict[str, Any] | None, lock_path: str, remedy: str) -> str:
    """The error a second run gets: what is locked, by whom, the lock's path, what to do."""
    return f"output {output} is locked by {describe_holder(holder)} (lock {lock_path}); {remedy}"


def describe_holder(holder: dict[str, Any] | None) -> str:
    """'pid 123 on host h since 2026-12-01T14:00:00Z (lmpipe curate spec.yaml; Prefect flow run <id>)', or a
    note when unknown."""
    if not holder:
        return "another process (it has not written its name yet)"
    text = f"pid {holder.get('pid')} on host {holder.get('host')} since {holder.get('since')}"
    extra = [holder["command"]] if holder.get("command") else []
    if holder.get("flow_run_id"):
        extra.append(f"Prefect flow run {holder['flow_run_id']}")
    return f"{text} ({'; '.join(extra)})" if extra else text


def local_remedy(holder: dict[str, Any] | None) -> str:
    """How to get past a held local lock: wait (here, with the variable), or stop the holder."""
    stop = "stop that run"
    if holder and holder.get("pid"):
        stop += f" (`kill {holder['pid']}` on {holder.get('host')}"
        stop += f", or `prefect flow-run cancel {holder['flow_run_id']}`)" if holder.get("flow_run_id") else ")"
    return (f"wait for that run to end (set {WAIT_ENV}=<seconds> to have this run wait for it), or {stop}; "
            "the lock goes with its process, so a killed run never blocks the next one")


def lock_wait_s() -> float:
    """Seconds to wait for a held lock: `$LMPIPE_LOCK_WAIT_S`, default 0 (fail fast)."""
    raw = os.environ.get(WAIT_ENV, "").strip()
    try:
        value = float(raw) if raw else 0.0
    except ValueError:
        raise ValueError(f"{WAIT_ENV}={raw!r}: use a number of seconds (0 fails at once)") from None
    if value < 0:
        raise ValueError(f"{WAIT_ENV}={raw!r}: use a number of seconds >= 0")
    return value


def current_flow_run_id() -> str | None:
    """The Prefect flow run this process is in (for the holder record), or None outside a run.

    Prefect is only asked when it is already imported: the lock adds no Prefect start-up to plain scripts.
    """
    if "prefect" not in sys.modules:
        return None
    try:
        from prefect.runtime import flow_run

        run_id = flow_run.id
    except Exception:  # noqa: BLE001 - the name is a courtesy in the error message, never a reason to fail
        return None
    return str(run_id) if run_id else None


def owner_record() -> dict[str, Any]:
    """Who is taking the lock: pid, host, start time (UTC), command line, Prefect flow run id (None outside a
    run) and a unique token."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]) if sys.argv else "",
        "flow_run_id": current_flow_run_id(),
        "token": uuid.uuid4().hex,
    }


def _parse(data: bytes) -> dict[str, Any] | None:
    try:
        holder = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def is_remote(output: str) -> bool:
    """True for any fsspec URL other than a local path or file:// URL."""
    return "://" in output and not output.startswith("file://")


@contextmanager
def output_lock(output: str, *, wait_s: float | None = None) -> Iterator[dict[str, Any]]:
    """Hold the output's exclusive lock for the `with` body; yields the owner record written into it.

    A held lock raises `OutputLocked` at once, or after waiting up to `wait_s` seconds (default:
    `$LMPIPE_LOCK_WAIT_S`, else 0) for its holder to let go.
    """
    acquire = _remote_acquire if is_remote(output) else _local_acquire
    wait = lock_wait_s() if wait_s is None else max(0.0, float(wait_s))
    deadline = time.monotonic() + wait
    while True:
        try:
            owner, release = acquire(output)
            break
        except OutputLocked as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                if wait > 0:
                    raise OutputLocked(f"{exc} (waited {wait:g} s)", exc.holder) from None
                raise
            time.sleep(min(POLL_S, left))
    try:
        yield owner
    finally:
        release()


def _local_acquire(output: str) -> tuple[dict[str, Any], Any]:
    """Take the flock (or raise `OutputLocked` naming the holder); returns the owner record and the release."""
    root = output.removeprefix("file://")
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = _parse(os.pread(fd, 1 << 16, 0))
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        raise OutputLocked(locked_message(output, holder, path, local_remedy(holder)), holder) from None
    try:
        owner = owner_record()
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode("utf-8"), 0)
    except BaseException:
        os.close(fd)  # closing drops the flock
        raise

    def release() -> None:
        try:
            os.ftruncate(fd, 0)  # not ours any more: the next reader must not see a departed holder
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    return owner, release


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_stale(holder: dict[str, Any] | None) -> bool:
    """A remote lock is provably stale only when it names a dead process on this host."""
    if not holder or holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    return not _pid_alive(holder["pid"])


def record_is_live(data: bytes) -> bool:
    """Whether a lock file's bytes name a holder that may still run: empty (released) and a dead process on this
    host are not; an unreadable record or another host's holder is (it cannot be proven gone)."""
    return bool(data.strip()) and not _is_stale(_parse(data))


def _remote_acquire(output: str) -> tuple[dict[str, Any], Any]:
    """Create the lock object (or take a provably stale one over); returns the owner record and the release."""
    fs, root = url_to_fs(output)
    path = f"{root.rstrip('/')}/{LOCK_NAME}"
    url = f"{output.rstrip('/')}/{LOCK_NAME}"
    owner = owner_record()
    data = json.dumps(owner).encode("utf-8")
    holder, why = None, "it was released and taken again while we looked"
    for _ in range(3):  # each look-again follows a change by another run; three in a row: give up and say so
        if _create(fs, path, data):
            break
        raw = _read_raw(fs, path)
        if raw is None:
            continue  # released since our create: try again
        holder = _parse(raw)
        if not _is_stale(holder):
            remedy = (f"wait for that run to end (set {WAIT_ENV}=<seconds> to have this run wait for it); a remote "
                      "lock outlives a crashed run: if that run is gone, delete the lock object")
            raise OutputLocked(locked_message(output, holder, url, remedy), holder)
        why = _take_over(fs, path, raw, data)
        if not why:
            break  # its holder died on this host: the lock is ours now
    else:
        remedy = (f"its holder is dead but the takeover did not go through ({why}); if no other run is starting, "
                  f"delete the lock object and {url}.takeover-*")
        raise OutputLocked(locked_message(output, holder, url, remedy), holder)

    def release() -> None:
        if (_parse(_read_raw(fs, path) or b"") or {}).get("token") == owner["token"]:
            fs.rm(path)

    return owner, release


def _create(fs: Any, path: str, data: bytes) -> bool:
    """Create the object only if it does not exist (atomic where the store supports conditional writes)."""
    try:
        fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        return False
    return True


def _take_over(fs: Any, path: str, stale: bytes, data: bytes) -> str:
    """Replace the stale lock object whose bytes are `stale` by ours; '' on success, else why not.

    Only the run holding the claim for these exact bytes may delete them, and only while they are still there,
    so a run never deletes a lock that another run took over in the meantime (module docstring).
    """
    claim = f"{path}.takeover-{hashlib.sha256(stale).hexdigest()[:16]}"
    if not _create(fs, claim, data):
        return f"another run holds the takeover claim {claim}"
    try:
        if _read_raw(fs, path) != stale:
            return "the lock changed while we looked"
        fs.rm(path)
        if not _create(fs, path, data):
            return "another run created the lock first"
        return ""
    finally:
        try:
            fs.rm(claim)
        except FileNotFoundError:
            pass


def _read_raw(fs: Any, path: str) -> bytes | None:
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        return None
