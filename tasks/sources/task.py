"""Prefect wrapper: expand every source's paths into work units."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from data_specs import SourceSpec
from tasks.sources.core import WorkUnit, plan_units


@task(cache_policy=NO_CACHE, retry_delay_seconds=[5, 30])
def plan_work_units(sources: list[SourceSpec]) -> tuple[list[tuple[int, WorkUnit]], list[tuple[str, str]]]:
    """All work units of all sources, in spec order, and the patterns that matched nothing.

    Planned once, in the flow's process: each input file is fingerprinted here, once, and the units
    carry it (`WorkUnit.content`), so the unit workers never hash their input again.
    """
    units: list[tuple[int, WorkUnit]] = []
    problems: list[tuple[str, str]] = []
    for index, source in enumerate(sources):
        found, bad = plan_units(source, index)
        units.extend((index, u) for u in found)
        problems.extend(bad)
    return units, problems
