"""Readers on the real samples in ../shared/data (counts from SOURCES.md, checked here).

Counting rule: a page outside the kept namespaces is a 'wikipedia/namespace' drop even when it is also
a redirect. So enwiki's 206 pages are 106 articles + 99 'wikipedia/redirect' + 1 'wikipedia/namespace'
(the one non-article page, `Wikipedia:Adding Wikipedia articles to Nupedia`, is itself one of the 100
redirects of SOURCES.md); ltgwiki's 2004 pages are 903 + 147 redirects (ns0 1050 = 903 + 147; the other
48 of its 195 redirects are outside ns0) + 954 namespace drops.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from data_specs.sources import BooksSource, CommonCrawlSource, WikipediaSource
from tasks.common.documents import Document, Dropped
from tasks.sources.core import ReaderError, plan_units, read_unit

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

pytestmark = [
    pytest.mark.real_data,
    pytest.mark.skipif(not DATA.is_dir(), reason=f"real data samples not found at {DATA}"),
]


def count(source) -> tuple[Counter, list[Document], Exception | None]:
    units, problems = plan_units(source, 0)
    assert not problems and units
    counts: Counter = Counter()
    docs: list[Document] = []
    error = None
    try:
        for unit in units:
            for record in read_unit(source, unit):
                if isinstance(record, Document):
                    counts["documents"] += 1
                    docs.append(record)
                else:
                    assert isinstance(record, Dropped)
                    counts[record.reason] += 1
    except ReaderError as exc:
        error = exc
    return counts, docs, error


def wiki(name: str, **kw) -> WikipediaSource:
    return WikipediaSource(kind="wikipedia", paths=[str(DATA / "wikipedia" / name)], **kw)


def cc(pattern: str) -> CommonCrawlSource:
    return CommonCrawlSource(kind="common_crawl", paths=[str(DATA / "commoncrawl" / pattern)])


def test_enwiki():
    start = time.perf_counter()
    counts, docs, error = count(wiki("enwiki-2016-pages-articles1-shortened.xml.bz2"))
    assert error is None
    assert counts == {"documents": 106, "wikipedia/redirect": 99, "wikipedia/namespace": 1}
    assert sum(counts.values()) == 206
    autism = next(d for d in docs if d.id == "wikipedia/enwiki/25")
    assert autism.title == "Autism" and autism.date == "2016-04-25T11:26:03Z"
    assert "{{" not in autism.text and "<ref" not in autism.text and "Category:" not in autism.text
    assert time.perf_counter() - start < 10


def test_enwiki_byte_ranges_match_whole_read():
    # a single-stream bz2: the unit starting at 0 owns it, the others find no stream in their range
    counts, _, error = count(wiki("enwiki-2016-pages-articles1-shortened.xml.bz2", split_bytes=400_000))
    assert error is None and counts["documents"] == 106


def test_ltgwiki_whole_and_split():
    counts, _, error = count(wiki("ltgwiki-2017-pages-articles.xml", split_bytes=None))
    assert error is None
    assert counts == {"documents": 903, "wikipedia/redirect": 147, "wikipedia/namespace": 954}
    split_counts, _, error = count(wiki("ltgwiki-2017-pages-articles.xml", split_bytes=300_000))
    assert error is None and split_counts == counts


@pytest.mark.parametrize(
    ("name", "complete"),
    [
        ("jawiki-20230501-pages-articles-multistream-truncated-100k.xml.xz", 238),
        ("viwiki-20230501-pages-articles-multistream-truncated-100k.xml.xz", 970),
    ],
)
def test_truncated_wikis(name, complete):
    counts, _, error = count(wiki(name))
    assert sum(counts.values()) == complete
    assert isinstance(error, ReaderError) and f"{complete} complete pages" in str(error)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("CC-MAIN-2020-34_resiliparse-sample.warc.gz", 16),
        ("CC-MAIN-2024-22_whirlwind.warc.gz", 1),
        ("CC-MAIN-2024-22_whirlwind.warc.wet.gz", 1),
        ("*first319records.gz", {"documents": 317, "common_crawl/empty_extraction": 1}),
    ],
)
def test_common_crawl_counts(pattern, expected):
    # One of the 318 WET conversion records holds only a byte-order mark: an empty document, counted.
    counts, docs, error = count(cc(pattern))
    expected = {"documents": expected} if isinstance(expected, int) else expected
    assert error is None and counts == expected
    assert all(d.id.startswith("common_crawl/") and "urn:uuid" not in d.id and d.url and d.date for d in docs)


def test_truncated_wet_yields_318_then_raises():
    counts, _, error = count(cc("*TRUNCATED.gz"))
    assert counts == {"documents": 317, "common_crawl/empty_extraction": 1}  # 318 conversion records
    assert isinstance(error, ReaderError) and "header truncated at offset 2482251" in str(error)


def test_books_stripped():
    counts, docs, error = count(BooksSource(kind="books", paths=[str(DATA / "books" / "*.txt")]))
    assert error is None and counts == {"documents": 5}
    titles = {d.id: d.title for d in docs}
    assert titles["books/pg1342_pride-and-prejudice"] == "Pride and Prejudice"
    assert titles["books/pg2701_moby-dick"] == "Moby Dick; or The Whale"
    for doc in docs:
        assert "Project Gutenberg-tm" not in doc.text and "License" not in doc.text, doc.id
        assert "START OF TH" not in doc.text and "END OF TH" not in doc.text, doc.id
        # Moby-Dick's own transcriber note names "Project Gutenberg's archives" once, inside the book
        assert doc.text.count("Project Gutenberg") <= (1 if "moby" in doc.id else 0), doc.id
