"""The cleaner on the real samples under ../shared/data: books kept as English, the WET sample reconciles."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import pytest

from data_specs.clean import C4Spec, CleanSpec, FilterSetSpec, FineWebSpec, GopherQualitySpec, GopherRepetitionSpec
from tasks.clean.core import SIGNAL_NAMES, Cleaner
from tasks.common.documents import Document

pytestmark = pytest.mark.real_data

# the books defaults (data_specs/sources.py): datatrove's letter ratio counts punctuation tokens and would drop
# Alice's dialogue (0.798 of its tokens hold a letter), so books leave punctuation out of it
BOOKS_FILTERS = FilterSetSpec(
    gopher_quality=GopherQualitySpec(max_words=None, alpha_ratio_ignores_punctuation=True),
    gopher_repetition=GopherRepetitionSpec(enabled=False),
    c4=C4Spec(enabled=False),
    fineweb=FineWebSpec(enabled=False),
)
WET = "commoncrawl/CC-MAIN-20201129214615-20201130004615-00404.warc.wet.first319records.gz"


def test_books_all_kept_as_english(shared_data: Path):
    paths = sorted((shared_data / "books").glob("*.txt"))
    assert len(paths) == 5
    docs = [Document(id=f"books/{p.stem}", text=p.read_text(encoding="utf-8"), source="books") for p in paths]
    stats: Counter[str] = Counter()
    kept = list(Cleaner(CleanSpec(), BOOKS_FILTERS)(docs, stats))
    assert not stats and len(kept) == 5
    for doc in kept:
        assert doc.lang == "en" and doc.lang_score > 0.9, doc.id
        assert doc.signals["n_words"] > 20_000


def test_wet_sample_reconciles_and_keeps_a_minority(shared_data: Path):
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    path = shared_data / WET
    if not path.exists():
        pytest.skip(f"{path} not found")
    with gzip.open(path, "rb") as f:
        texts = [
            r.reader.read().decode("utf-8", "replace")
            for r in ArchiveIterator(f, record_types=WarcRecordType.conversion)
        ]
    docs = [Document(id=f"cc/{i}", text=t, source="cc") for i, t in enumerate(texts)]
    stats: Counter[str] = Counter()
    kept = list(Cleaner(CleanSpec(), FilterSetSpec())(docs, stats))
    assert len(docs) == len(kept) + sum(stats.values())
    assert 0.03 * len(docs) < len(kept) < 0.5 * len(docs)
    assert all(d.lang == "en" and set(d.signals) == set(SIGNAL_NAMES) for d in kept)
