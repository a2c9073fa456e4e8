"""Shared builders for the cleaning tests: a good English document and a one-call runner."""

from __future__ import annotations

import random
from collections import Counter

from data_specs.clean import (
    C4Spec,
    CleanSpec,
    FilterSetSpec,
    FineWebSpec,
    GopherQualitySpec,
    GopherRepetitionSpec,
    LanguageSpec,
)
from tasks.clean.core import Cleaner
from tasks.common.documents import Document

GOOD_LINES = [
    "The old lighthouse keeper climbed the spiral stairs every evening before the sun went down.",
    "He carried a small lantern and a notebook in which he wrote the weather of each day.",
    "Ships passing the rocky point relied on the beam to find their way into the harbour.",
    "During the winter storms the waves crashed against the walls with tremendous force.",
    "His daughter often joined him, bringing bread, cheese and a flask of hot tea.",
    "Together they watched the horizon and counted the fishing boats returning home.",
    "Years later she wrote a book about those nights, and it became quite popular in town.",
    "The lighthouse itself was eventually automated, but the notebooks were kept in a museum.",
    "Visitors still come to read the careful handwriting and imagine the long quiet watches.",
    "Some say that on calm evenings you can still see a faint light moving up the stairs.",
]
GOOD = "\n".join(GOOD_LINES)

NO_LANG = CleanSpec(language=LanguageSpec(enabled=False))


def only(**enabled: object) -> FilterSetSpec:
    """A FilterSetSpec with every filter off except the ones given (as specs)."""
    base = dict(
        gopher_quality=GopherQualitySpec(enabled=False),
        gopher_repetition=GopherRepetitionSpec(enabled=False),
        c4=C4Spec(enabled=False),
        fineweb=FineWebSpec(enabled=False),
    )
    base.update(enabled)
    return FilterSetSpec(**base)


def run(
    text: str, filters: FilterSetSpec, clean: CleanSpec = NO_LANG, languages: tuple[str, ...] | None = None
) -> tuple[Document | None, Counter[str]]:
    """Clean one document; return (the kept document or None, the drop counter)."""
    stats: Counter[str] = Counter()
    kept = list(Cleaner(clean, filters, languages)([Document(id="t/1", text=text, source="t")], stats))
    assert len(kept) + sum(stats.values()) == 1
    return (kept[0] if kept else None), stats


def reason(text: str, filters: FilterSetSpec, **kw: object) -> str | None:
    """The single drop reason for `text`, or None if kept."""
    doc, stats = run(text, filters, **kw)
    return None if doc is not None else next(iter(stats))


def unique_words(n: int, seed: int = 0, length: int = 7) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice("abcdefghijklmnoprstuvw") for _ in range(length)) for _ in range(n)]
