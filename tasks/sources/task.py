"""Prefect wrapper: expand every source's paths into work units."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from data_specs import RunSpec, SourceSpec
from tasks.sources.core import WorkUnit, plan_units
from tasks.sources.planning import planner_map


@task(cache_policy=NO_CACHE, retry_delay_seconds=[5, 30])
def plan_work_units(sources: list[SourceSpec], run: RunSpec | None = None
                    ) -> tuple[list[tuple[int, WorkUnit]], list[tuple[str, str]]]:
    """All work units of all sources, in spec order, and the patterns that matched nothing.

    Planned once, from the flow's process: each input file is fingerprinted here, once, and the units
    carry it (`WorkUnit.content`), so the unit workers never hash their input again. The files are hashed in
    parallel, by threads or by Ray tasks as `run` says (`tasks.sources.planning.planner_map`).
    """
    mapper = planner_map(run)
    units: list[tuple[int, WorkUnit]] = []
    problems: list[tuple[str, str]] = []
    for index, source in enumerate(sources):
        found, bad = plan_units(source, index, mapper)
        units.extend((index, u) for u in found)
        problems.extend(bad)
    return units, problems
