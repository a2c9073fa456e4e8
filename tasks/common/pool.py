"""A pool of worker processes in which a dead worker fails only the call it was running.

`concurrent.futures.ProcessPoolExecutor` with N workers breaks as a whole when one worker dies (an OOM
kill, a segfault): every call in flight and every later call fails with `BrokenProcessPool`. Here each of
the N slots is its own one-worker executor. A call checks out a free slot, runs, and gives it back; when
the slot's worker dies, only that call fails (with `WorkerDied`, naming the label and the signal) and the
slot gets a fresh executor. The other slots, and the calls on them, never notice.

No Prefect or Ray here: the curate flow wraps it (tasks/units/task.py) and Prefect's retry reruns the one
call that failed. Workers are spawned (the parent has threads: fork is unsafe) and started lazily.
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

T = TypeVar("T")


class WorkerDied(RuntimeError):
    """The worker process running this call died (OOM kill, segfault); only this call failed."""


def describe_exit(exitcode: int | None) -> str:
    """'SIGKILL, exit -9' for a death by signal (multiprocessing reports -signum), 'exit 3', or 'exit unknown'."""
    if exitcode is None:
        return "exit unknown"
    if exitcode < 0:
        try:
            return f"{signal.Signals(-exitcode).name}, exit {exitcode}"
        except ValueError:
            return f"signal {-exitcode}, exit {exitcode}"
    return f"exit {exitcode}"


class _Slot:
    """One worker process (a one-worker executor, so its death breaks nothing else)."""

    def __init__(self) -> None:
        self.executor = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        self.processes: list[Any] = []

    def submit(self, function: Callable[..., T], *args: Any) -> Future[T]:
        future = self.executor.submit(function, *args)
        # The worker's Process object, for its exit code if it dies: the executor forgets it once broken.
        self.processes = list((getattr(self.executor, "_processes", None) or {}).values()) or self.processes
        return future

    def replace(self) -> int | None:
        """Swap in a fresh executor; returns the dead worker's exit code (-9 for SIGKILL), or None if unknown.

        The broken executor's own thread reaps its worker: shut it down (which waits for that) before reading
        the exit code, or the two threads race for the child's status and one of them sees none.
        """
        self.executor.shutdown(wait=True, cancel_futures=True)
        codes = [p.exitcode for p in self.processes if p.exitcode is not None]
        self.executor = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        self.processes = []
        return codes[0] if codes else None


class WorkerPool:
    """`workers` spawned processes; a call whose worker dies raises `WorkerDied`, other calls go on."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._free: queue.Queue[_Slot] = queue.Queue()
        for _ in range(workers):
            self._free.put(_Slot())
        self._closed = threading.Event()

    def run(self, label: str, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` in a worker process (function and args must pickle); blocks until it is done."""
        if self._closed.is_set():
            raise RuntimeError("the worker pool is closed")
        slot = self._free.get()
        try:
            return slot.submit(function, *args).result()
        except BrokenProcessPool:
            exitcode = slot.replace()
            raise WorkerDied(f"{label}: its worker process died ({describe_exit(exitcode)}); only this call "
                             "failed, and a retry runs it on a fresh worker") from None
        finally:
            self._free.put(slot)

    def close(self) -> None:
        """Stop the workers; a call still running is abandoned (unit outputs are written atomically)."""
        self._closed.set()
        for _ in range(self.workers):
            slot = self._free.get()
            slot.executor.shutdown(wait=True, cancel_futures=True)
