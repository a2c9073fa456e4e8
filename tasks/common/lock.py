"""One writer per output: an exclusive lock at the output root, held for a whole run.

    with output_lock("/data/corpus"):      # raises OutputLocked at once if another run holds it
        ...write shards, manifest...

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
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from fsspec.core import url_to_fs

LOCK_NAME = ".lmpipe.lock"


class OutputLocked(RuntimeError):
    """Another run holds the output's lock; the message says who, since when, and where the lock is."""

    def __init__(self, message: str, holder: dict[str, Any] | None = None):
        super().__init__(message)  # one positional arg: the exception pickles (Prefect stores failed states)
        self.holder = holder


def locked_message(output: str, holder: dict[str, Any] | None, lock_path: str, remedy: str) -> str:
    """The error a second run gets: what is locked, by whom, the lock's path, what to do."""
    return f"output {output} is locked by {describe_holder(holder)} (lock {lock_path}); {remedy}"


def describe_holder(holder: dict[str, Any] | None) -> str:
    """'pid 123 on host h since 2026-12-01T14:00:00Z (lmpipe curate spec.yaml)', or a note when unknown."""
    if not holder:
        return "another process (it has not written its name yet)"
    text = f"pid {holder.get('pid')} on host {holder.get('host')} since {holder.get('since')}"
    return f"{text} ({holder['command']})" if holder.get("command") else text


def owner_record() -> dict[str, Any]:
    """Who is taking the lock: pid, host, start time (UTC), command line and a unique token."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]) if sys.argv else "",
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
def output_lock(output: str) -> Iterator[dict[str, Any]]:
    """Hold the output's exclusive lock for the `with` body; yields the owner record written into it."""
    locker = _remote_lock if is_remote(output) else _local_lock
    with locker(output) as owner:
        yield owner


@contextmanager
def _local_lock(output: str) -> Iterator[dict[str, Any]]:
    root = output.removeprefix("file://")
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = _parse(os.pread(fd, 1 << 16, 0))
            raise OutputLocked(locked_message(output, holder, path, "wait for that run to end"), holder) from None
        owner = owner_record()
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode("utf-8"), 0)
        try:
            yield owner
        finally:
            os.ftruncate(fd, 0)  # not ours any more: the next reader must not see a departed holder
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


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


@contextmanager
def _remote_lock(output: str) -> Iterator[dict[str, Any]]:
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
            remedy = "a remote lock outlives a crashed run: if that run is gone, delete the lock object"
            raise OutputLocked(locked_message(output, holder, url, remedy), holder)
        why = _take_over(fs, path, raw, data)
        if not why:
            break  # its holder died on this host: the lock is ours now
    else:
        remedy = (f"its holder is dead but the takeover did not go through ({why}); if no other run is starting, "
                  f"delete the lock object and {url}.takeover-*")
        raise OutputLocked(locked_message(output, holder, url, remedy), holder)
    try:
        yield owner
    finally:
        if (_parse(_read_raw(fs, path) or b"") or {}).get("token") == owner["token"]:
            fs.rm(path)


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
