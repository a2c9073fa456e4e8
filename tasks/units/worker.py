"""What a unit pool worker runs: kept apart from the Prefect wrapper so spawned workers never import Prefect."""

from __future__ import annotations

from data_specs import CleanSpec, MinHashSpec, SourceSpec
from tasks.common.faults import fault_point
from tasks.sources.core import WorkUnit
from tasks.units.core import UnitResult, process_unit


def unit_worker(
    source: SourceSpec, unit: WorkUnit, clean: CleanSpec, minhash: MinHashSpec, work_dir: str,
    row_group_rows: int, compression_level: int,
) -> UnitResult:
    """A unit in a pool worker; `curate.unit_worker` is the fault suite's "the worker dies mid-unit" point."""
    fault_point("curate.unit_worker", unit.label)
    return process_unit(source, unit, clean, minhash, work_dir, row_group_rows, compression_level)
