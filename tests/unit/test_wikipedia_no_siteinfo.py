"""Dumps without `<siteinfo>` (an excerpt cut from a dump): named by the spec's `wiki`, else by a dump-convention
file name, read with MediaWiki's canonical namespace names and noted `wikipedia/no_siteinfo` on each Document;
otherwise a `ReaderError` that names the spec field. A siteinfo `<dbname>` that contradicts `wiki` is an error.

Fixture: tests/fixtures/wiki_excerpt/excerpt-no-siteinfo.xml, an export-0.10 excerpt written for this project
(4 pages: 2 articles with File/Image/Media/Category/interlanguage links, a redirect, a category page).
"""

from __future__ import annotations

import bz2
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from data_specs.sources import WikipediaSource
from tasks.common.documents import Document, Dropped
from tasks.sources.core import ReaderError, plan_units, read_unit
from tests.fixtures.make_sample_corpus import SITEINFO_HEADER

EXCERPT = Path(__file__).resolve().parents[1] / "fixtures" / "wiki_excerpt" / "excerpt-no-siteinfo.xml"


def read(path: Path, **kw) -> list[Document | Dropped]:
    source = WikipediaSource(kind="wikipedia", paths=[str(path)], **kw)
    units, problems = plan_units(source, 0)
    assert not problems
    return [r for u in units for r in read_unit(source, u)]


def summary(records) -> list[tuple[str, str]]:
    return [(r.id, "doc" if isinstance(r, Document) else r.reason) for r in records]


def expected(wiki: str) -> list[tuple[str, str]]:
    return [(f"wikipedia/{wiki}/311", "doc"), (f"wikipedia/{wiki}/312", "wikipedia/redirect"),
            (f"wikipedia/{wiki}/313", "wikipedia/namespace"), (f"wikipedia/{wiki}/314", "doc")]


def test_excerpt_is_read_with_the_spec_wiki_canonical_namespaces_and_a_note():
    # Before: ReaderError "no complete <siteinfo> header before the first <page>", 0 pages.
    records = read(EXCERPT, wiki="enwiki")
    assert summary(records) == expected("enwiki")
    mill, wheel = (r for r in records if isinstance(r, Document))
    assert mill.notes == wheel.notes == ("wikipedia/no_siteinfo",)
    assert mill.title == "Tide mill" and mill.date == "2016-02-11T08:14:52Z" and mill.url is None
    assert mill.text.startswith("A tide mill is a water mill driven by tidal rise and fall.")
    assert "History\nTide mills were built along the coasts of Europe from the early Middle Ages" in mill.text
    for gone in ("File:", "thumb", "low water", "Category", "Watermills", "Moulin", "Short description", "<ref"):
        assert gone not in mill.text, gone
    for gone in ("Image", "Schematic", "Media", "Wheel sound", "Category"):  # canonical names and the alias
        assert gone not in wheel.text, gone
    assert wheel.text.endswith("suits a tide mill or a river with little fall.")


@pytest.mark.parametrize(
    ("name", "wiki"),
    [("enwiki-20160301-pages-articles1.xml", "enwiki"),
     ("simplewiki-latest-pages-articles-multistream.xml.bz2", "simplewiki"),
     ("zh_classicalwiki-20240101-pages-meta-current.xml", "zh_classicalwiki")],
)
def test_a_dump_convention_file_name_names_the_wiki(tmp_path, name, wiki):
    path = tmp_path / name
    data = EXCERPT.read_bytes()
    path.write_bytes(bz2.compress(data) if name.endswith(".bz2") else data)
    records = read(path)
    assert summary(records) == expected(wiki)
    assert all(r.notes == ("wikipedia/no_siteinfo",) for r in records if isinstance(r, Document))
    assert summary(read(path, wiki="other")) == expected("other")  # the spec's `wiki` comes first


def test_byte_ranges_of_an_excerpt_equal_the_whole_read(tmp_path):
    path = tmp_path / "enwiki-20160301-pages-articles.xml"
    shutil.copy(EXCERPT, path)
    assert summary(read(path, split_bytes=1024)) == summary(read(path)) == expected("enwiki")


@pytest.mark.parametrize("name", ["excerpt-no-siteinfo.xml", "enwiki-2016-pages-articles.xml", "enwiki.xml"])
def test_without_a_name_the_error_names_the_spec_field(tmp_path, name):
    path = tmp_path / name
    shutil.copy(EXCERPT, path)
    got = []
    with pytest.raises(ReaderError, match=r"no complete <siteinfo> header before the first <page>.*set `wiki:`"):
        got.extend(read(path))
    assert got == []


def test_a_siteinfo_dbname_that_contradicts_the_spec_is_an_error(tmp_path):
    path = tmp_path / "dump.xml"
    path.write_bytes(EXCERPT.read_bytes().replace(b"\n  <page>", SITEINFO_HEADER.split("\n", 1)[1].encode() + b"  <page>", 1))
    with pytest.raises(ReaderError, match=r"siteinfo names the wiki 'enwiki' but the source's `wiki` is 'dewiki'"):
        read(path, wiki="dewiki")
    records = read(path, wiki="enwiki")  # agreeing: read as usual, with no note
    assert summary(records) == expected("enwiki")
    assert all(r.notes == () for r in records if isinstance(r, Document))
    assert records[0].url == "https://en.wikipedia.org/wiki/Tide_mill"


def test_a_siteinfo_without_dbname_or_base_takes_the_spec_wiki(tmp_path):
    header = SITEINFO_HEADER.replace("    <dbname>enwiki</dbname>\n", "").replace(
        "    <base>https://en.wikipedia.org/wiki/Main_Page</base>\n", "")
    path = tmp_path / "dump.xml"
    path.write_bytes(EXCERPT.read_bytes().replace(b"\n  <page>", header.split("\n", 1)[1].encode() + b"  <page>", 1))
    with pytest.raises(ReaderError, match="names no usable wiki.*set `wiki:`"):
        read(path)
    assert summary(read(path, wiki="ltgwiki")) == expected("ltgwiki")


@pytest.mark.parametrize("bad", ["en wiki", "", "enwiki/../x"])
def test_the_wiki_field_is_checked(bad):
    with pytest.raises(ValidationError, match="wiki"):
        WikipediaSource(kind="wikipedia", paths=["x.xml"], wiki=bad)
