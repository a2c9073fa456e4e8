"""`flows.bounded.run_bounded` on a real Prefect server: at most `at_once` tasks in flight, started in key order,
every finished result kept, the first failure stops new starts and is raised, and `at_once` 1 runs in the flow's
own thread."""

from __future__ import annotations

import asyncio
import threading
import time
from uuid import UUID

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.context import get_run_context

from flows import bounded
from flows.bounded import run_bounded

LOG: list[tuple[str, str, float, str]] = []  # (key, "start" | "end", wall clock, thread name)
LOCK = threading.Lock()
FLOW_RUNS: list[str] = []


@task
def sleepy(key: str, seconds: float, fail: bool = False) -> str:
    with LOCK:
        LOG.append((key, "start", time.monotonic(), threading.current_thread().name))
    time.sleep(seconds)
    with LOCK:
        LOG.append((key, "end", time.monotonic(), threading.current_thread().name))
    if fail:
        raise ValueError(f"{key} failed on purpose")
    return key.upper()


def _run(keys: list[str], at_once: int, seconds: dict[str, float], fail: set[str] = frozenset()):
    results: dict[str, str] = {}

    @flow
    def many() -> str:
        run_bounded(sleepy, keys, lambda k: {"key": k, "seconds": seconds[k], "fail": k in fail}, at_once, results)
        FLOW_RUNS.append(str(get_run_context().flow_run.id))
        return threading.current_thread().name

    LOG.clear()
    try:
        flow_thread, error = many(), None
    except ValueError as exc:
        flow_thread, error = None, exc
    return results, list(LOG), flow_thread, error


def _most_in_flight(log) -> int:
    most = now = 0
    for _, event, _, _ in sorted(log, key=lambda e: (e[2], e[1] == "start")):
        now += 1 if event == "start" else -1
        most = max(most, now)
    return most


def test_at_most_at_once_in_flight_in_key_order():
    keys = ["a", "b", "c", "d"]
    results, log, _, error = _run(keys, 2, {"a": 0.6, "b": 0.2, "c": 0.2, "d": 0.2})
    assert error is None
    assert results == {k: k.upper() for k in keys}
    assert _most_in_flight(log) == 2
    starts = [k for k, event, _, _ in sorted(log, key=lambda e: e[2]) if event == "start"]
    assert set(starts[:2]) == {"a", "b"} and starts[2:] == ["c", "d"]  # c starts once b finished, while a runs
    first_end = {k: t for k, event, t, _ in log if event == "end"}
    start = {k: t for k, event, t, _ in log if event == "start"}
    assert start["c"] < first_end["a"], "a slow task held back the next start"

    async def task_runs():  # the calls in threads are task runs of this flow run, all Completed
        async with get_client() as client:
            return await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(FLOW_RUNS[-1])])))

    assert sorted(r.state.name for r in asyncio.run(task_runs())) == ["Completed"] * 4


def test_the_first_failure_stops_new_starts_keeps_results_and_is_raised():
    results, log, _, error = _run(["a", "b", "c"], 2, {"a": 0.8, "b": 0.1, "c": 0.1}, fail={"b"})
    assert isinstance(error, ValueError) and "b failed on purpose" in str(error)
    assert results == {"a": "A"}  # a was in flight: it finished and its result is kept
    assert "c" not in {k for k, *_ in log}  # nothing started after the failure


def test_one_at_a_time_runs_in_the_flow_thread():
    results, log, flow_thread, error = _run(["a", "b"], 1, {"a": 0.1, "b": 0.1})
    assert error is None and results == {"a": "A", "b": "B"}
    assert _most_in_flight(log) == 1
    assert {thread for *_, thread in log} == {flow_thread}


@pytest.mark.parametrize("at_once", [1, 3])
def test_every_key_once(at_once):
    keys = [f"k{i}" for i in range(5)]
    results, log, _, error = _run(keys, at_once, dict.fromkeys(keys, 0.05))
    assert error is None and list(sorted(results)) == keys
    assert sorted(k for k, event, *_ in log if event == "start") == keys


def test_a_flow_timeout_stops_the_tasks_in_flight_and_ends_at_once():
    """The limit lands in the flow's wait: `on_abort` runs, and the flow ends without waiting for the two
    30-second tasks (their threads are daemons; Prefect's task runner would have waited)."""
    aborted = []

    @flow(timeout_seconds=2)
    def slow() -> None:
        FLOW_RUNS.append(str(get_run_context().flow_run.id))
        run_bounded(sleepy, ["a", "b", "c"], lambda k: {"key": k, "seconds": 30}, 2, {},
                    on_abort=lambda: aborted.append(time.monotonic()))

    bounded.ABORT_GRACE_S = 1.0  # the sleeps are not stopped by on_abort: do not wait the 20 s for them

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        slow()
    assert len(aborted) == 1 and time.monotonic() - started < 15

    async def task_runs():  # the two still sleeping are marked Crashed; c never started
        async with get_client() as client:
            return await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(FLOW_RUNS[-1])])))

    assert sorted(r.state.name for r in asyncio.run(task_runs())) == ["Crashed", "Crashed"]
    bounded.ABORT_GRACE_S = 20.0
