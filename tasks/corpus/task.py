"""Prefect wrappers for corpus assembly: global dedup and one task per shard."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from data_specs import DedupSpec
from tasks.corpus.core import DedupOutcome, deduplicate_units
from tasks.shards.core import ShardPlan, write_shard
from tasks.units.core import UnitResult


@task(cache_policy=NO_CACHE)
def deduplicate_task(results: list[UnitResult], spec: DedupSpec, work_dir: str, engine: str = "local") -> DedupOutcome:
    """Exact + MinHash dedup across all sources (near dedup on this node, or as a Ray Data job on the Ray
    this process is connected to); returns the surviving rows and counts."""
    return deduplicate_units(results, spec, work_dir, engine=engine)


@task(task_run_name="write-{plan.name}", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[5, 30])
def write_shard_task(plan: ShardPlan, row_group_rows: int, compression_level: int) -> dict:
    """Write one balanced shard (tmp name, then rename); returns its manifest entry."""
    return write_shard(plan, row_group_rows, compression_level)
