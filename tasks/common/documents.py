"""The document contract shared by every stage.

A reader yields `Document`s and `Dropped` records; every record a reader sees is one or the other,
so `documents in = kept + dropped + duplicates` reconciles. Ids are `{source}/{native id}` and never
change across versions (dolma's data format, STYLE habit 5).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

Verdict = tuple[bool, str | None]
"""(keep, reason-if-dropped); reasons look like `gopher_quality/min_words`."""


@dataclass(slots=True)
class Document:
    """One text document on its way through the pipeline.

    `signals` holds cheap-to-store quality signals computed on the way (word counts, ratios, PII
    redactions, ...); the shard writer turns them into columns. `notes` are counted remarks on a kept
    document (`{source}/{note}`, e.g. `common_crawl/stale_content_encoding`: a header that did not
    describe the body was read past); a note is not a drop, so the counts still reconcile.
    """

    id: str
    text: str
    source: str
    url: str | None = None
    title: str | None = None
    date: str | None = None
    origin: str = ""
    lang: str | None = None
    lang_score: float | None = None
    signals: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Dropped:
    """A record a reader saw but that is not a document we keep: counted under `reason`."""

    id: str | None
    reason: str


Record = Document | Dropped


@dataclass(frozen=True, slots=True)
class FilterStep:
    """A named document filter: applies `verdict` and counts every drop as `{reason}`."""

    name: str
    verdict: Callable[[Document], Verdict]

    def __call__(self, docs: Iterable[Document], stats: Counter[str]) -> Iterator[Document]:
        for doc in docs:
            keep, reason = self.verdict(doc)
            if keep:
                yield doc
            else:
                stats[reason or f"{self.name}/dropped"] += 1


def signal(doc: Document, name: str, value: Any) -> None:
    """Record a numeric quality signal on a document."""
    doc.signals[name] = float(value)
