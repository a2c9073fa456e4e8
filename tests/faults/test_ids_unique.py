"""Document ids stay unique across wikis and book folders, and a remaining collision stops the run.

Fault: two wikis whose dumps use the same page ids (5 and 6) for different pages, and two book
folders holding files of the same names. Must survive: every document, once, under its own id
(`wikipedia/<dbname>/<page id>`, `books/<folder>/<name>`). Output must equal: the shards hold exactly
the six expected ids, each with its own text.

Fault: a forced collision, two sources whose books have the same path below their own roots, beside a wiki.
Must survive: the run, and every other input: the two books are failed inputs in the manifest (error
`DuplicateDocumentId` naming the id and both inputs), their documents counted as `corpus/id_clash` drops; the
wiki's pages ship. (Before: the whole run failed with `DuplicateDocumentId`, on every rerun.)
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data_specs import CleanSpec, DedupSpec
from data_specs.sources import BooksSource
from flows.curate import curate
from tasks.corpus.core import deduplicate_units
from tasks.sources.core import plan_units
from tasks.sources.wikipedia import wikitext_to_text
from tasks.units.core import process_unit
from tests.fixtures.make_sample_corpus import (
    BOOKS,
    HONEY_BEE,
    LIGHTHOUSE,
    PRINTING_PRESS,
    SITEINFO_HEADER,
    SOURDOUGH,
    book_text,
    page_xml,
)
from tests.flows.helpers import write_spec

RUN = {"run": {"workers": 1, "task_runner": "threads"}}


def wiki_dump(dbname: str, host: str, texts: dict[int, str]) -> str:
    head = SITEINFO_HEADER.replace("enwiki", dbname).replace("en.wikipedia.org", host)
    pages = "".join(page_xml(pid, 0, f"Page {pid}", "2020-01-01T00:00:00Z", None, t) for pid, t in texts.items())
    return head + pages + "</mediawiki>\n"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """Two wikis with page ids 5 and 6 each, and books/f1/a.txt, books/f2/a.txt; returns (root, id -> text start)."""
    root = tmp_path_factory.mktemp("ids")
    articles = [LIGHTHOUSE, HONEY_BEE, SOURDOUGH, PRINTING_PRESS]  # the sample corpus's articles: they pass the filters
    (root / "wiki").mkdir()
    (root / "wiki" / "en.xml").write_text(wiki_dump("enwiki", "en.wikipedia.org", {5: articles[0], 6: articles[1]}))
    (root / "wiki" / "de.xml").write_text(wiki_dump("dewiki", "de.wikipedia.org", {5: articles[2], 6: articles[3]}))
    books = [book_text(spec, seed=7, words_target=2000) for spec in list(BOOKS.values())[:2]]
    for folder, text in zip(("f1", "f2"), books):
        (root / "books" / folder).mkdir(parents=True)
        (root / "books" / folder / "a.txt").write_text(text)
    starts = [wikitext_to_text(a) for a in articles] + [b.removeprefix("CHAPTER 1").strip() for b in books]
    ids = ["wikipedia/enwiki/5", "wikipedia/enwiki/6", "wikipedia/dewiki/5", "wikipedia/dewiki/6", "books/f1/a",
           "books/f2/a"]
    return root, {i: t[:60] for i, t in zip(ids, starts)}


def test_same_native_ids_in_two_wikis_and_two_folders_are_all_kept(inputs, tmp_path):
    root, expected = inputs
    sources = [
        {"kind": "wikipedia", "paths": [str(root / "wiki" / "*.xml")]},
        {"kind": "books", "paths": [str(root / "books" / "f1" / "*.txt"), str(root / "books" / "f2" / "*.txt")]},
    ]
    manifest = curate(str(write_spec(tmp_path / "spec.yaml", tmp_path / "out", sources, **RUN)))
    assert manifest["counts"]["failed_inputs"] == 0 and manifest["counts"]["duplicates_removed"] == 0
    table = pq.read_table(tmp_path / "out" / "data", columns=["id", "text"])
    got = dict(zip(table["id"].to_pylist(), table["text"].to_pylist()))
    assert sorted(got) == sorted(expected)  # each document once, under its own id
    for doc_id, start in expected.items():
        assert start in got[doc_id][:200], doc_id  # and each id holds its own input's text


def test_two_sources_with_the_same_book_paths_fail_those_inputs_not_the_run(inputs, tmp_path):
    root, expected = inputs
    sources = [{"kind": "books", "paths": [str(root / "books" / f / "*.txt")]} for f in ("f1", "f2")]
    sources.append({"kind": "wikipedia", "paths": [str(root / "wiki" / "*.xml")]})
    manifest = curate(str(write_spec(tmp_path / "spec.yaml", tmp_path / "out", sources, **RUN)))
    failed = manifest["failed_inputs"]
    assert sorted(f["url"] for f in failed) == sorted(str(root / "books" / f / "a.txt") for f in ("f1", "f2"))
    for f in failed:
        assert f["error"].startswith("DuplicateDocumentId: document id 'books/a'")
        assert str(root / "books" / "f1" / "a.txt") in f["error"] and str(root / "books" / "f2" / "a.txt") in f["error"]
    assert manifest["counts"]["failed_inputs"] == 2 and manifest["drop_reasons"]["corpus/id_clash"] == 2
    table = pq.read_table(tmp_path / "out" / "data", columns=["id"])
    assert sorted(table["id"].to_pylist()) == sorted(i for i in expected if i.startswith("wikipedia/"))


def test_identical_copies_in_two_folders_are_duplicates_not_a_collision(tmp_path):
    """Fault: the same book under two folders of one source. Must survive: one copy, the other removed as
    an exact duplicate. Output must equal: ids books/f1/a kept, books/f2/a in removed.parquet."""
    text = book_text(BOOKS["the-lantern-keeper"], seed=3, words_target=1500)
    for folder in ("f1", "f2"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "a.txt").write_text(text)
    source = BooksSource(kind="books", paths=[str(tmp_path / "f1" / "*.txt"), str(tmp_path / "f2" / "*.txt")])
    dedup = DedupSpec()
    units, _ = plan_units(source, 0)
    results = [process_unit(source, u, CleanSpec(), dedup.minhash, str(tmp_path / "work")) for u in units]
    outcome = deduplicate_units(results, dedup, str(tmp_path / "work"))
    assert outcome.removed == {"dedup/exact": 1}
    assert pq.read_table(outcome.removed_path).to_pylist() == [
        {"id": "books/f2/a", "reason": "dedup/exact", "survivor_id": "books/f1/a"}]
