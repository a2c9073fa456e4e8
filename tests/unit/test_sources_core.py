"""Dispatch API: work-unit labels, planning problems, fingerprints, and reading over http://127.0.0.1."""

from __future__ import annotations

from pathlib import Path

from data_specs.sources import BooksSource, CommonCrawlSource, WikipediaSource
from tasks.common.documents import Document
from tasks.sources.core import WorkUnit, plan_units, read_unit, unit_content_fingerprint
from tests.unit._sources_http import http_server  # noqa: F401 - fixture

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "sample_corpus"


def test_labels():
    assert WorkUnit(0, "books", "/a/b/c.txt").label == "c.txt"
    assert WorkUnit(0, "wikipedia", "https://h/x/enwiki.xml.bz2", 0, 268435456).label == "enwiki.xml.bz2[0:268435456]"


def test_plan_units_globs_and_problems(tmp_path):
    src = BooksSource(kind="books", paths=[str(CORPUS / "books" / "*.txt"), str(tmp_path / "nope.txt")])
    units, problems = plan_units(src, 2)
    assert len(units) == 3 and all(u.source_index == 2 and u.kind == "books" for u in units)
    assert problems == [(str(tmp_path / "nope.txt"), "file not found")]


def test_fingerprint_is_content_and_range():
    src = WikipediaSource(kind="wikipedia", paths=["x"])
    url = str(CORPUS / "wiki" / "sample-pages-articles.xml.bz2")
    whole = unit_content_fingerprint(src, WorkUnit(0, "wikipedia", url))
    assert whole.startswith("sha256:")
    assert unit_content_fingerprint(src, WorkUnit(0, "wikipedia", url, 0, 1024)) == whole + "[0:1024]"


def test_remote_wiki_and_wet_over_http(http_server):
    base = http_server(CORPUS)
    wiki = WikipediaSource(kind="wikipedia", paths=[f"{base}/wiki/sample-pages-articles.xml.bz2"], split_bytes=2048)
    units, problems = plan_units(wiki, 0)
    assert not problems and len(units) > 1  # byte ranges through HTTP range requests
    ids = [r.id for u in units for r in read_unit(wiki, u) if isinstance(r, Document)]
    assert ids == [f"wikipedia/enwiki/{i}" for i in (12, 25, 39, 58, 70, 81, 96)]
    # The remote dump (no ETag here) was fetched for its hash once, by the planner, for all its units.
    assert {u.content.rsplit("[", 1)[0] for u in units} == {units[0].content.rsplit("[", 1)[0]}
    assert all(unit_content_fingerprint(wiki, u) == u.content for u in units)
    wet = CommonCrawlSource(kind="common_crawl", paths=[f"{base}/cc/sample.warc.wet.gz"])
    (unit,), _ = plan_units(wet, 1)
    docs = list(read_unit(wet, unit))
    assert len(docs) == 5 and docs[0].origin == f"{base}/cc/sample.warc.wet.gz"


def test_common_crawl_path_listing_over_http(http_server, tmp_path):
    """A crawl's `wet.paths.gz` listing, read like data.commoncrawl.org serves it, on a loopback server."""
    import gzip
    import shutil

    rel = ["crawl-data/CC-TEST/segments/1/wet/a.warc.wet.gz", "crawl-data/CC-TEST/segments/2/wet/b.warc.wet.gz"]
    for r in rel:
        (tmp_path / r).parent.mkdir(parents=True)
        shutil.copy(CORPUS / "cc" / "sample.warc.wet.gz", tmp_path / r)
    (tmp_path / "wet.paths.gz").write_bytes(gzip.compress(("\n".join(rel) + "\n").encode()))
    base = http_server(tmp_path)
    source = CommonCrawlSource(kind="common_crawl", paths_file=f"{base}/wet.paths.gz", base_url=base, max_files=1)
    units, problems = plan_units(source, 0)
    assert not problems and [u.url for u in units] == [f"{base}/{rel[0]}"]
    assert len([r for r in read_unit(source, units[0]) if isinstance(r, Document)]) == 5
    missing = CommonCrawlSource(kind="common_crawl", paths_file=f"{base}/nope.paths.gz")
    units, problems = plan_units(missing, 0)
    assert units == [] and "path listing" in problems[0][1]


def test_common_crawl_source_needs_paths_or_listing():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="paths_file"):
        CommonCrawlSource(kind="common_crawl")
