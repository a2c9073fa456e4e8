"""The curate spec: sources in, clean + dedup settings, sharded Parquet out.

A minimal spec is `name`, `sources` and `output`; everything else has a documented default.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from data_specs._base import StrictModel
from data_specs.clean import CleanSpec
from data_specs.dedup import DedupSpec
from data_specs.sources import SourceSpec


class ShardSpec(StrictModel):
    """How the curated Parquet shards are laid out."""

    target_mb: float = Field(
        128, gt=0, description="Target uncompressed text per shard in MB; shards are balanced around it."
    )
    row_group_rows: int = Field(1024, ge=1, description="Rows per Parquet row group (rank-strided reading).")
    compression_level: int = Field(3, ge=1, le=22, description="zstd level.")


class RunSpec(StrictModel):
    """Execution settings. They never change results, so they are left out of the fingerprint."""

    workers: int = Field(2, ge=1, description="Processes working on input units at once.")
    task_runner: Literal["threads", "ray"] = Field(
        "threads",
        description="'threads' = Prefect's thread pool driving a local process pool; 'ray' = prefect-ray's "
        "RayTaskRunner (cluster from `ray_address` or RAY_ADDRESS, else a local Ray). The environment "
        "variable LMPIPE_TASK_RUNNER overrides this.",
    )
    ray_address: str | None = Field(None, description="Ray cluster address (ray://host:10001); RAY_ADDRESS wins.")
    dedup_engine: Literal["auto", "local", "ray"] = Field(
        "auto",
        description="Where global near-dedup runs: 'local' = streamed on this node; 'ray' = a Ray Data job on the "
        "Ray cluster (RAY_ADDRESS / ray_address, else a local Ray with `workers` CPUs); 'auto' = 'ray' when "
        "the task runner is 'ray', else 'local'. Same decisions either way. LMPIPE_DEDUP_ENGINE overrides this.",
    )
    retries: int = Field(2, ge=0, description="Prefect retries for I/O-bound tasks.")


class DataCardSpec(StrictModel):
    """The markdown data card written beside the manifest and published as a Prefect artifact."""

    examples_per_source: int = Field(2, ge=0, description="Example documents quoted per source.")
    example_chars: int = Field(400, ge=0, description="Characters quoted per example.")


class CurateSpec(StrictModel):
    """A curated corpus: what to read, how to clean and deduplicate it, and where to write it."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", description="Corpus name (lower case, no spaces).")
    version: int = Field(1, ge=1, description="Bump when the recipe's behaviour changes.")
    sources: list[SourceSpec] = Field(min_length=1, description="Inputs, read in this order.")
    output: str = Field(description="Output folder (local path or fsspec URL); manifest.json lands at its root.")
    clean: CleanSpec = Field(default_factory=CleanSpec)
    dedup: DedupSpec = Field(default_factory=DedupSpec)
    shards: ShardSpec = Field(default_factory=ShardSpec)
    data_card: DataCardSpec = Field(default_factory=DataCardSpec)
    run: RunSpec = Field(default_factory=RunSpec)

    @model_validator(mode="after")
    def _priority_names_every_source(self) -> CurateSpec:
        missing = {s.kind for s in self.sources} - set(self.dedup.source_priority)
        if missing:
            raise ValueError(
                f"dedup.source_priority {list(self.dedup.source_priority)} does not list {sorted(missing)}: "
                "add every source kind you read"
            )
        return self
