"""Run one Prefect task over several keys, a bounded number at a time, keeping every result that finished.

The GLUE flow fine-tunes its tasks this way: each is a Ray Train job, and as many run at once as the cluster
holds (`tasks.glue.task_run.preflight_resources` says how many).
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from prefect import Task


ABORT_GRACE_S = 20.0  # after on_abort, how long the tasks in flight get to fail and record their final state


def run_bounded(task: Task, keys: Iterable[Hashable], kwargs_for: Callable[[Any], dict[str, Any]], at_once: int,
                results: dict[Any, Any], on_abort: Callable[[], None] | None = None) -> None:
    """`task(**kwargs_for(key))` for every key, at most `at_once` in flight, started in key order; each result
    goes into `results[key]` as soon as that task finished (a caller's cleanup sees every finished one).

    With `at_once` 1 the task is called in this thread, one key after another, as a plain flow would. Otherwise
    each call runs in a daemon thread of its own with this flow's context (so it is a task run of this flow):
    after the first failure nothing new starts, the tasks in flight finish, and the failure is raised (the
    earliest key's, if several failed). When the wait itself is interrupted (a flow timeout, Ctrl-C),
    `on_abort()` stops the work in flight and the interruption is raised: a sync task's thread cannot be
    interrupted, and being a daemon it never holds the process open (Prefect's task runner would wait for it).
    """
    keys = list(keys)
    if at_once <= 1:
        for key in keys:
            results[key] = task(**kwargs_for(key))
        return
    finished: queue.Queue = queue.Queue()

    def start(key: Any) -> None:
        context, kwargs = contextvars.copy_context(), kwargs_for(key)

        def run() -> None:
            try:
                finished.put((key, True, context.run(task, **kwargs)))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting flow thread
                finished.put((key, False, exc))

        threading.Thread(target=run, name=f"{task.name}-{key}", daemon=True).start()

    pending, in_flight, failed = list(keys), set(), {}
    try:
        while pending or in_flight:
            while pending and not failed and len(in_flight) < at_once:
                key = pending.pop(0)
                in_flight.add(key)
                start(key)
            if not in_flight:
                break
            try:  # short waits: a flow timeout raised from Prefect's watcher thread (not SIGALRM) lands between them
                key, ok, value = finished.get(timeout=0.5)
            except queue.Empty:
                continue
            in_flight.discard(key)
            if ok:
                results[key] = value
            else:
                failed[key] = value
    except BaseException:
        if on_abort is not None and in_flight:
            on_abort()
            _let_finish(finished, in_flight, ABORT_GRACE_S)  # their task runs record Failed, not Running
            if in_flight:
                _mark_crashed(task.name, in_flight)
        raise
    if failed:
        raise failed[min(failed, key=keys.index)]


def _let_finish(finished: queue.Queue, in_flight: set, seconds: float) -> None:
    """Wait at most `seconds` for the tasks in flight to end (after `on_abort` they fail within seconds)."""
    deadline = time.monotonic() + seconds
    while in_flight and time.monotonic() < deadline:
        try:
            in_flight.discard(finished.get(timeout=0.5)[0])
        except queue.Empty:
            pass


def _mark_crashed(task_name: str, keys: set) -> None:
    """Set this flow run's task runs still Running to Crashed: their threads did not end within the grace time
    (they die with the process), and the UI must not show them running for ever."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterState,
                                                TaskRunFilterStateType)
    from prefect.client.schemas.objects import StateType
    from prefect.context import FlowRunContext
    from prefect.states import Crashed

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    try:
        with get_client(sync_client=True) as client:
            running = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[context.flow_run.id])),
                task_run_filter=TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(
                    any_=[StateType.RUNNING]))))
            for run in running:
                client.set_task_run_state(run.id, Crashed(message=f"stopped with its flow ({task_name}, still "
                                                                  f"running: {sorted(map(str, keys))})"), force=True)
    except Exception:  # noqa: BLE001 - the flow is ending with its own error; this is bookkeeping only
        pass
