"""Planted near-duplicates at a known shingle Jaccard, and the exact Jaccard to check them by.

Used by the dedup tests and `benchmarks/bench_dedup_quality.py` (the tiny twin of a real corpus).
A variant replaces k words of a base document at positions at least n apart, so each replacement
removes n of the base's shingles and adds n new ones: J = (S - n k) / (S + n k) for S shingles,
hence k = S (1 - J) / (n (1 + J)). The exact Jaccard of the shingle sets is always recomputed.
"""

from __future__ import annotations

import numpy as np

from tasks.dedup.minhash import shingles


def random_doc(rng: np.random.Generator, n_words: int, vocab: int = 50_000, prefix: str = "w") -> list[str]:
    """Words drawn from a large synthetic vocabulary: unrelated documents share almost no n-grams."""
    return [f"{prefix}{i}" for i in rng.integers(0, vocab, n_words)]


def plant_variant(base: list[str], target: float, ngram: int, rng: np.random.Generator, tag: str) -> list[str]:
    """A copy of `base` with spaced word replacements so the shingle Jaccard is close to `target`."""
    n_sh = len(base) - ngram + 1
    k = int(round(n_sh * (1 - target) / (ngram * (1 + target))))
    slots = len(base) // ngram
    if k > slots:
        raise ValueError(f"a {len(base)}-word document cannot reach Jaccard {target} with {ngram}-grams")
    out = list(base)
    chosen = np.sort(rng.choice(slots, size=k, replace=False))
    for j, slot in enumerate(chosen):
        out[slot * ngram + ngram // 2] = f"{tag}r{j}"
    return out


def jaccard(a: str, b: str, ngram: int) -> float:
    """Exact Jaccard of the two texts' shingle sets (1.0 for two documents without shingles)."""
    sa, sb = set(shingles(a, ngram)), set(shingles(b, ngram))
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)
