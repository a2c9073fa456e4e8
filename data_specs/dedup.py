"""Deduplication spec: exact dedup on normalised text, then MinHash LSH near-dedup across sources."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from data_specs._base import StrictModel
from data_specs.sources import SourceKind


class ExactDedupSpec(StrictModel):
    """Exact dedup: documents whose normalised text (NFKC, lower case, collapsed whitespace) is equal."""

    enabled: bool = Field(True, description="Remove exact duplicates.")


class MinHashSpec(StrictModel):
    """MinHash LSH near-dedup, signatures compatible with datasketch (LeanMinHash / MinHashLSH)."""

    enabled: bool = Field(True, description="Remove near-duplicates.")
    ngram: int = Field(5, ge=1, description="Word n-gram shingle size.")
    num_perm: int = Field(128, ge=8, description="Permutations per signature.")
    bands: int = Field(16, ge=1, description="LSH bands b.")
    rows: int = Field(8, ge=1, description="Rows per band r; the LSH S-curve is 1-(1-s^r)^b.")
    threshold: float = Field(0.8, gt=0, le=1, description="Jaccard similarity at which two documents are duplicates.")
    verify: Literal["signature", "none"] = Field(
        "signature",
        description="Check each LSH candidate pair: 'signature' keeps pairs whose estimated Jaccard "
        "(share of equal signature values) is at least `threshold`; 'none' trusts the LSH bucket.",
    )
    seed: int = Field(1, description="Permutation seed (datasketch's `seed`); identical on every worker.")

    @model_validator(mode="after")
    def _bands_fit(self) -> MinHashSpec:
        if self.bands * self.rows > self.num_perm:
            raise ValueError(
                f"bands*rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}: "
                "lower bands or rows, or raise num_perm"
            )
        return self


class DedupSpec(StrictModel):
    """Which duplicates to remove and which member of a cluster survives."""

    exact: ExactDedupSpec = Field(default_factory=ExactDedupSpec)
    minhash: MinHashSpec = Field(default_factory=MinHashSpec)
    source_priority: tuple[SourceKind, ...] = Field(
        ("wikipedia", "books", "common_crawl", "hf_dataset"),
        description="Survivor of a duplicate cluster: the first source kind in this list, then the smallest id.",
    )
