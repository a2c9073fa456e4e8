"""Deduplication spec: exact dedup on normalised text, then MinHash LSH near-dedup across sources."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from data_specs._base import StrictModel
from data_specs.sources import SourceKind


class ExactDedupSpec(StrictModel):
    """Exact dedup: documents whose normalised text (NFKC, casefolded, whitespace collapsed) is equal."""

    enabled: bool = Field(True, description="Remove exact duplicates.")


class MinHashSpec(StrictModel):
    """MinHash LSH near-dedup; signatures are datasketch 2.0 "affine32" MinHash values (LeanMinHash / MinHashLSH).

    Pipeline: word n-gram shingles -> `num_perm` MinHash values -> LSH with `bands` x `rows` (the
    first bands*rows values) gives candidate pairs -> `verify` keeps pairs whose estimated Jaccard
    over all `num_perm` values is >= `threshold` -> union-find clusters.
    """

    enabled: bool = Field(True, description="Remove near-duplicates.")
    ngram: int = Field(5, ge=1, le=64, description="Word n-gram shingle size (words = \\w+ runs of NFKC+casefolded text).")
    # Defaults for "Jaccard about 0.8 on word 5-grams". LSH S-curve P(s) = 1-(1-s^r)^b, with b=18, r=7
    # (126 of the 128 values):
    #   S-curve threshold (1/b)^(1/r) = (1/18)^(1/7) = 0.662
    #   P(0.9) = 1.000   P(0.85) = 0.999   P(0.8) = 0.986   P(0.7) = 0.787   P(0.5) = 0.132   P(0.3) = 0.004
    # So the candidate stage catches ~99% of pairs at s >= 0.8 (recall), and `verify="signature"`
    # at `threshold`=0.8 restores precision for the 0.6-0.8 pairs it also lets through.
    # Compare 16x8 (threshold 0.707, P(0.8) = 0.947) and FineWeb's 14x8 of 112 (0.719, P(0.8) = 0.924):
    # both lose 5-8% of the pairs at 0.8 before verification even starts.
    # The verification itself is an estimate: with 128 values its standard deviation is
    # sqrt(s(1-s)/128) = 0.035 at s = 0.8, so pairs within ~0.05 of the threshold fall on either side
    # (a pair at s = 0.8 passes 50% of the time, at 0.85 94%, at 0.9 99.96%); transitive clustering recovers
    # some of them. Raise num_perm (e.g. 256 with 32x8) to sharpen the boundary at 2x the cost.
    num_perm: int = Field(128, ge=8, description="MinHash values (permutations) per signature.")
    bands: int = Field(18, ge=1, description="LSH bands b (see the S-curve derivation above).")
    rows: int = Field(7, ge=1, description="Rows per band r; the LSH S-curve is 1-(1-s^r)^b.")
    threshold: float = Field(0.8, gt=0, le=1, description="Jaccard similarity at which two documents are duplicates.")
    verify: Literal["exact", "signature", "none"] = Field(
        "exact",
        description="Check each LSH candidate pair: 'signature' keeps pairs whose estimated Jaccard "
        "(share of equal signature values over all num_perm) is at least `threshold`; 'exact' does the same "
        "but settles the ambiguous pairs (estimate within `exact_margin` of the threshold) with the exact "
        "Jaccard of their shingle sets, re-read from the text; 'none' trusts the LSH bucket.",
    )
    # 0.15 is over 4 standard deviations of the 128-value estimate at s = 0.8 (0.035): a pair outside the
    # margin is on the right side of the threshold with probability > 0.99999, so only pairs inside it
    # need their text; on web text these are a small share of the candidates.
    exact_margin: float = Field(
        0.15, ge=0, le=1, description="With verify='exact': estimates this close to the threshold are checked exactly."
    )
    seed: int = Field(1, description="Permutation seed (datasketch's `seed`); identical on every worker.")
    bucket_cap: int = Field(
        64,
        ge=2,
        description="An LSH bucket with up to this many members yields all its pairs; a larger one "
        "(templated pages) pairs each member only with the bucket's `bucket_anchors` highest-priority members.",
    )
    bucket_anchors: int = Field(4, ge=1, description="Anchors per oversized LSH bucket (see `bucket_cap`).")

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
