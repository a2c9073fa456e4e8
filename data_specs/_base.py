"""Shared base for every spec model: strict, frozen and documented (STYLE habit 6)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A spec section: unknown keys fail loudly, values never change after validation."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
