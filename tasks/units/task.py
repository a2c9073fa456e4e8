"""Prefect wrapper for one work unit. CPU-heavy work runs in a process pool when one is open
(thread runner), or inline (Ray runner: each task already is a Ray worker process)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

from prefect import task
from prefect.cache_policies import NO_CACHE

from data_specs import CleanSpec, MinHashSpec, SourceSpec
from tasks.sources.core import WorkUnit
from tasks.units.core import UnitResult, process_unit

_POOL: ProcessPoolExecutor | None = None


@contextmanager
def unit_process_pool(workers: int) -> Iterator[None]:
    """Run unit work in `workers` spawned processes while the context is open (1 = in-process)."""
    global _POOL
    if workers <= 1:
        yield
        return
    _POOL = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        yield
    finally:
        _POOL.shutdown(cancel_futures=True)
        _POOL = None


@task(task_run_name="unit-{unit.label}", cache_policy=NO_CACHE, retry_delay_seconds=[5, 30])
def process_unit_task(
    source: SourceSpec, unit: WorkUnit, clean: CleanSpec, minhash: MinHashSpec, work_dir: str,
    row_group_rows: int, compression_level: int,
) -> UnitResult:
    """Read, clean and sign one input file or byte range; returns its summary, never documents."""
    args = (source, unit, clean, minhash, work_dir, row_group_rows, compression_level)
    if _POOL is None:
        return process_unit(*args)
    return _POOL.submit(process_unit, *args).result()
