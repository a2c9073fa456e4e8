"""Prefect wrapper for one work unit. CPU-heavy work runs in a process pool when one is open
(thread runner), or inline (Ray runner: each task already is a Ray worker process).

The pool (`tasks/common/pool.py`) gives each worker its own executor, so a worker that dies (OOM kill,
segfault) fails only the unit it was running, with `WorkerDied` naming the unit and the signal, and the
Prefect retry of that one task runs it again on a fresh worker. (With one shared `ProcessPoolExecutor`,
one dead worker broke the pool and every remaining unit failed with `BrokenProcessPool`.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect import task
from prefect.cache_policies import NO_CACHE

from data_specs import CleanSpec, MinHashSpec, SourceSpec
from tasks.common.pool import WorkerPool
from tasks.sources.core import WorkUnit
from tasks.units.core import UnitResult, process_unit
from tasks.units.worker import unit_worker

# A retry waits 5 s, then 30 s: long enough for a flaky remote input or for the memory pressure that got a
# worker OOM-killed to ease (the other units finish meanwhile), short next to a real run.
UNIT_RETRY_DELAYS_S = [5, 30]

_POOL: WorkerPool | None = None


@contextmanager
def unit_process_pool(workers: int) -> Iterator[None]:
    """Run unit work in `workers` spawned processes while the context is open (1 = in-process)."""
    global _POOL
    if workers <= 1:
        yield
        return
    _POOL = WorkerPool(workers)
    try:
        yield
    finally:
        _POOL.close()
        _POOL = None


@task(task_run_name="unit-{unit.label}", cache_policy=NO_CACHE, retry_delay_seconds=UNIT_RETRY_DELAYS_S)
def process_unit_task(
    source: SourceSpec, unit: WorkUnit, clean: CleanSpec, minhash: MinHashSpec, work_dir: str,
    row_group_rows: int, compression_level: int,
) -> UnitResult:
    """Read, clean and sign one input file or byte range; returns its summary, never documents."""
    args = (source, unit, clean, minhash, work_dir, row_group_rows, compression_level)
    if _POOL is None:
        return process_unit(*args)
    return _POOL.run(f"unit {unit.label}", unit_worker, *args)
