"""The pipeline spec: one file that ties the stage specs together (curate → pretrain → GLUE → promote).

Each stage is named by the path of its own spec (relative to the working directory, or to this file's folder)
or embedded as a mapping. `stages` picks which stages a run executes; the others are skipped.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from data_specs._base import StrictModel

Stage = Literal["curate", "pretrain", "glue", "promote"]
STAGES: tuple[str, ...] = ("curate", "pretrain", "glue", "promote")  # run order


class PipelineSpec(StrictModel):
    """Raw corpora to a champion model: which stage specs, which stages."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", description="Pipeline name (lower case, no spaces).")
    version: int = Field(1, ge=1, description="Bump when the recipe's behaviour changes.")
    curate: str | dict[str, Any] = Field(description="Curate spec: a path, or the spec embedded as a mapping.")
    pretrain: str | dict[str, Any] = Field(description="Pretrain spec (path or mapping); its data.curated must be "
                                           "the curate stage's output (checked before any work).")
    glue: str | dict[str, Any] = Field(description="GLUE spec (path or mapping): tasks, data, hyperparameters, gate.")
    glue_tasks: list[str] | None = Field(None, description="Override the GLUE spec's tasks for this pipeline.")
    stages: list[Stage] = Field(default_factory=lambda: list(STAGES),
                                description="Stages to run, in pipeline order. A run is complete once all of them are "
                                "done; a run of fewer (`--stages`) stays open and the next run continues it.")

    @field_validator("stages")
    @classmethod
    def _known_and_ordered(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("stages is empty: name at least one of curate, pretrain, glue, promote")
        return [s for s in STAGES if s in value]  # always run in pipeline order
