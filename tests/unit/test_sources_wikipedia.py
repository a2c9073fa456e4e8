"""Wikipedia reader: sample dump, wikitext stripping, compressions, byte ranges and damaged inputs."""

from __future__ import annotations

import bz2
import gzip
import lzma
import random
import time
from pathlib import Path

import pytest
import zstandard

from data_specs.sources import WikipediaSource
from tasks.common.documents import Document, Dropped
from tasks.sources.core import ReaderError, WorkUnit, plan_units, read_unit, unit_content_fingerprint
from tasks.sources.wikipedia import wikitext_to_text, wikitext_to_text_mwparserfromhell
from tests.fixtures.make_sample_corpus import LIGHTHOUSE, SITEINFO_HEADER, page_xml

WIKI = Path(__file__).resolve().parents[1] / "fixtures" / "sample_corpus" / "wiki" / "sample-pages-articles.xml.bz2"


def spec(paths, **kw) -> WikipediaSource:
    return WikipediaSource(kind="wikipedia", paths=[str(p) for p in paths], **kw)


def read_all(source: WikipediaSource) -> list[Document | Dropped]:
    units, problems = plan_units(source, 0)
    assert not problems
    return [r for u in units for r in read_unit(source, u)]


def docs(records):
    return [r for r in records if isinstance(r, Document)]


def xml_dump(pages: list[tuple], footer: bool = True) -> bytes:
    body = SITEINFO_HEADER + "".join(page_xml(*p) for p in pages) + ("</mediawiki>\n" if footer else "")
    return body.encode()


def prose(rng: random.Random, n_words: int) -> str:
    words = "the river and a stone of light to which many old people have seen with care at night".split()
    return " ".join(rng.choice(words) for _ in range(n_words)) + "."


def test_sample_dump_records():
    records = read_all(spec([WIKI]))
    reasons = sorted(r.reason for r in records if isinstance(r, Dropped))
    assert reasons == ["wikipedia/namespace"] * 3 + ["wikipedia/redirect"] * 2
    d = docs(records)
    assert [x.id for x in d] == [f"wikipedia/enwiki/{i}" for i in (12, 25, 39, 58, 70, 81, 96)]
    light = d[0]
    assert light.title == "Lighthouse" and light.date == "2016-03-01T10:00:00Z"
    assert light.url == "https://en.wikipedia.org/wiki/Lighthouse"
    assert light.source == "wikipedia" and light.origin == str(WIKI)
    assert light.lang is None and light.signals == {}
    assert all(len(x.text.split()) >= 150 for x in d)


@pytest.mark.parametrize("convert", [wikitext_to_text, wikitext_to_text_mwparserfromhell])
def test_wikitext_stripping(convert):
    text = convert(LIGHTHOUSE)
    for gone in ("{{", "}}", "Infobox", "cite book", "Keeper's notes", "wikitable", "nmi", "Category:",
                 "Leuchtturm", "Phare", "thumb", "File:", "[[", "'''", "Reflist", "<ref"):
        assert gone not in text, gone
    for kept in ("A lighthouse is a tower", "lenses", "maritime pilots", "Pharos of Alexandria", "History",
                 "Modern use", "Lightvessel", "Before the development of clearly defined ports"):
        assert kept in text, kept


def test_wikitext_edge_cases():
    assert wikitext_to_text("a [[b|c]] d [[e]]s [[:Category:X|cats]] [http://x.org site] [http://y.org]") == \
        "a c d es cats site"
    assert wikitext_to_text("x {{a|{{b}}|c}} y {{unclosed z") == "x y unclosed z"
    assert wikitext_to_text("p<!-- hidden -->q <ref>r</ref>s<ref name=a />t") == "pq st"
    assert wikitext_to_text("== Head ==\n* one\n# two\n&nbsp;&amp;") == "Head\none\ntwo\n&"


def test_compressions_give_same_pages(tmp_path):
    raw = WIKI.read_bytes()
    xml = bz2.decompress(raw)
    variants = {
        "plain.xml": xml,
        "g.xml.gz": gzip.compress(xml, mtime=0),
        "x.xml.xz": lzma.compress(xml),
        "z.xml.zst": zstandard.ZstdCompressor().compress(xml),
        "b.xml.bz2": bz2.compress(xml),
        "multistream.bin": raw,  # name says nothing: compression comes from content
    }
    expected = [(r.id, (r.text if isinstance(r, Document) else r.reason)) for r in read_all(spec([WIKI]))]
    for name, data in variants.items():
        (tmp_path / name).write_bytes(data)
        got = [(r.id, (r.text if isinstance(r, Document) else r.reason)) for r in read_all(spec([tmp_path / name]))]
        assert got == expected, name


def test_mwparserfromhell_option_reads_sample():
    d = docs(read_all(spec([WIKI], wikitext="mwparserfromhell")))
    assert len(d) == 7 and "Pharos of Alexandria" in d[0].text


@pytest.fixture(scope="module")
def many_pages():
    rng = random.Random(7)
    return [(1000 + i, 0 if i % 7 else 1, f"Page {i}", "2020-01-01T00:00:00Z",
             "Page 0" if i % 5 == 4 else None, prose(rng, rng.randint(30, 120))) for i in range(80)]


def multistream(pages, per_stream: int) -> bytes:
    parts = [SITEINFO_HEADER.encode()]
    for i in range(0, len(pages), per_stream):
        parts.append("".join(page_xml(*p) for p in pages[i : i + per_stream]).encode())
    parts.append(b"</mediawiki>\n")
    return b"".join(bz2.compress(p) for p in parts)


@pytest.mark.parametrize("split", [1024, 1500, 4096])
def test_multistream_byte_ranges_equal_whole_read(tmp_path, many_pages, split):
    path = tmp_path / "ms.xml.bz2"
    path.write_bytes(multistream(many_pages, per_stream=3))
    whole = [r.id for r in read_all(spec([path], split_bytes=None))]
    assert len(whole) == 80
    units, _ = plan_units(spec([path], split_bytes=split), 0)
    assert len(units) > 3 and units[0].start == 0 and units[-1].end == path.stat().st_size
    split_ids = [r.id for u in units for r in read_unit(spec([path], split_bytes=split), u)]
    assert split_ids == whole
    assert units[1].label == f"ms.xml.bz2[{split}:{2 * split}]"


def test_uncompressed_byte_ranges_equal_whole_read(tmp_path, many_pages):
    path = tmp_path / "dump.xml"
    path.write_bytes(xml_dump(many_pages))
    whole = [r.id for r in read_all(spec([path], split_bytes=None))]
    source = spec([path], split_bytes=1024)
    units, _ = plan_units(source, 0)
    assert len(units) > 10
    assert [r.id for u in units for r in read_unit(source, u)] == whole
    fps = {unit_content_fingerprint(source, u) for u in units}
    assert len(fps) == len(units)


def test_single_stream_bz2_is_owned_by_first_unit(tmp_path, many_pages):
    path = tmp_path / "single.xml.bz2"
    path.write_bytes(bz2.compress(xml_dump(many_pages)))
    source = spec([path], split_bytes=1024)
    units, _ = plan_units(source, 0)
    per_unit = [len(list(read_unit(source, u))) for u in units]
    assert per_unit[0] == 80 and sum(per_unit[1:]) == 0


def test_truncated_bz2_yields_complete_pages_then_raises(tmp_path, many_pages):
    # bz2 decodes whole blocks (900 kB at level 9): cut a multistream file so that complete streams remain.
    data = multistream(many_pages, per_stream=3)
    path = tmp_path / "cut.xml.bz2"
    path.write_bytes(data[: len(data) * 2 // 3])
    got = []
    with pytest.raises(ReaderError, match="complete pages"):
        for r in read_unit(spec([path]), WorkUnit(0, "wikipedia", str(path))):
            got.append(r.id)
    assert 10 < len(got) < 80
    assert got == [f"wikipedia/enwiki/{1000 + i}" for i in range(len(got))]


def test_xml_cut_mid_page_raises_after_complete_pages(tmp_path, many_pages):
    data = xml_dump(many_pages)
    path = tmp_path / "cut.xml.xz"
    path.write_bytes(lzma.compress(data[: data.index(b"<title>Page 40</title>") + 30]))
    got = []
    with pytest.raises(ReaderError, match="40 complete pages"):
        got.extend(read_unit(spec([path]), WorkUnit(0, "wikipedia", str(path))))
    assert len(got) == 40


def test_malformed_page_and_invalid_utf8(tmp_path):
    good = (1, 0, "Good", "2020-01-01T00:00:00Z", None, "Some text here.")
    data = xml_dump([good, (2, 0, "Bad", "2020-01-01T00:00:00Z", None, "x"), (3, 0, "Bytes", "2020", None, "caf\u00e9 ZZ")])
    data = data.replace(b"<title>Bad</title>", b"<title>Bad<title>")  # not well-formed
    data = data.replace(b"ZZ", b"\xff\xfe")  # invalid UTF-8
    path = tmp_path / "bad.xml"
    path.write_bytes(data)
    records = read_all(spec([path]))
    assert records[0].text == "Some text here."
    assert records[1] == Dropped("wikipedia/enwiki/2", "wikipedia/malformed_page")
    assert records[2].text.startswith("caf\u00e9 \ufffd")


def test_empty_file_raises(tmp_path):
    path = tmp_path / "empty.xml"
    path.write_bytes(b"")
    with pytest.raises(ReaderError, match="empty input"):
        read_all(spec([path]))


def test_keep_redirects_namespaces_and_max_documents():
    records = read_all(spec([WIKI], keep_redirects=True, namespaces=(0, 1)))
    assert len(docs(records)) == 10
    assert len(docs(read_all(spec([WIKI], max_documents=2)))) == 2


def test_20mb_page_reads_quickly(tmp_path):
    rng = random.Random(1)
    sentence = " ".join(prose(rng, 20) for _ in range(50)) + "\n\n"
    text = sentence * (20_000_000 // len(sentence) + 1)
    path = tmp_path / "big.xml.bz2"
    path.write_bytes(bz2.compress(xml_dump([(9, 0, "Big", "2020-01-01T00:00:00Z", None, text)]), 1))
    start = time.perf_counter()
    (doc,) = read_all(spec([path]))
    assert len(doc.text) > 19_000_000
    assert time.perf_counter() - start < 20


def test_plan_units_reports_problems(tmp_path):
    units, problems = plan_units(spec([tmp_path / "missing.xml", tmp_path / "*.nothing"]), 3)
    assert units == []
    assert [p[1] for p in problems] == ["file not found", "no files match this pattern"]


GERMAN_SITEINFO = (
    SITEINFO_HEADER.replace("enwiki", "dewiki")
    .replace("en.wikipedia.org/wiki/Main_Page", "de.wikipedia.org/wiki/Wikipedia:Hauptseite")
    .replace(">Media<", ">Medium<").replace(">File<", ">Datei<").replace(">Category<", ">Kategorie<")
)
GERMAN_TEXT = (
    "Ein '''Leuchtturm''' ist ein Turm.\n[[Datei:Turm.jpg|mini|Ein Turm bei Nacht]]\n"
    "[[Bild:Alt.png|mini|Altes Bild]] [[Medium:Ton.ogg]] Er steht am [[Meer]].\n"
    "[[Kategorie:Turm]]\n[[kategorie: Seefahrt]]\n[[:Kategorie:Turm|alle Türme]]\n[[en:Lighthouse]]"
)


def dump_with(siteinfo: str, pages: list[tuple]) -> bytes:
    return (siteinfo + "".join(page_xml(*p) for p in pages) + "</mediawiki>\n").encode()


@pytest.mark.parametrize("wikitext", ["fast", "mwparserfromhell"])
def test_localized_file_and_category_links_are_dropped(tmp_path, wikitext):
    # `Bild:` is dewiki's legacy alias of `Datei:`; dumps do not list aliases, the file extension gives it away.
    path = tmp_path / "dewiki.xml"
    path.write_bytes(dump_with(GERMAN_SITEINFO, [(7, 0, "Leuchtturm", "2020-01-01T00:00:00Z", None, GERMAN_TEXT)]))
    (doc,) = read_all(spec([path], wikitext=wikitext))
    assert doc.id == "wikipedia/dewiki/7" and doc.url == "https://de.wikipedia.org/wiki/Leuchtturm"
    for gone in ("Datei", "Turm.jpg", "mini", "bei Nacht", "Bild", "Ton.ogg", "Kategorie", "Seefahrt", "Lighthouse"):
        assert gone not in doc.text, gone
    assert doc.text.split() == "Ein Leuchtturm ist ein Turm. Er steht am Meer. alle Türme".split()


def test_ids_carry_the_wiki_name(tmp_path):
    page = (5, 0, "Same", "2020-01-01T00:00:00Z", None, "Some text.")
    no_dbname = SITEINFO_HEADER.replace("    <dbname>enwiki</dbname>\n", "").replace("en.wikipedia", "ltg.wikipedia")
    ids = {}
    for name, siteinfo in (("en", SITEINFO_HEADER), ("de", GERMAN_SITEINFO), ("old", no_dbname)):
        (tmp_path / f"{name}.xml").write_bytes(dump_with(siteinfo, [page]))
        (ids[name],) = [r.id for r in read_all(spec([tmp_path / f"{name}.xml"]))]
    assert ids == {"en": "wikipedia/enwiki/5", "de": "wikipedia/dewiki/5", "old": "wikipedia/ltg.wikipedia.org/5"}


@pytest.mark.parametrize(
    ("siteinfo", "match"),
    [
        ("<mediawiki>\n", "no complete <siteinfo> header before the first <page>"),
        (GERMAN_SITEINFO.replace('<namespace key="6"', '<namespace key="6"<'), "malformed <siteinfo>"),
        (GERMAN_SITEINFO.replace("<dbname>dewiki</dbname>", "").replace(
            "<base>https://de.wikipedia.org/wiki/Wikipedia:Hauptseite</base>", ""), "names no usable wiki"),
        (GERMAN_SITEINFO.replace("</siteinfo>", ""), "no complete <siteinfo> header"),
    ],
)
def test_unreadable_siteinfo_is_an_error_not_english_defaults(tmp_path, siteinfo, match):
    # Before: any siteinfo problem fell back silently to English names and the German links leaked.
    path = tmp_path / "bad.xml"
    path.write_bytes(dump_with(siteinfo, [(7, 0, "Leuchtturm", "2020-01-01T00:00:00Z", None, GERMAN_TEXT)]))
    with pytest.raises(ReaderError, match=match):
        read_all(spec([path]))


def test_a_page_the_converter_cannot_handle_is_dropped_and_the_file_goes_on(tmp_path, monkeypatch):
    # Before: the converter's exception left the reader: the unit failed, and every retry failed again.
    from tasks.sources import wikipedia

    def convert(text, drop_prefixes):  # noqa: ANN001, ANN202
        if "BOOM" in text:
            raise ValueError("a page this converter cannot handle")
        return wikitext_to_text(text, drop_prefixes)

    monkeypatch.setattr(wikipedia, "wikitext_to_text", convert)
    pages = [(1, 0, "A", "2020", None, "First."), (2, 0, "B", "2020", None, "BOOM"), (3, 0, "C", "2020", None, "Third.")]
    path = tmp_path / "d.xml"
    path.write_bytes(xml_dump(pages))
    records = read_all(spec([path]))
    assert [(r.id, r.text if isinstance(r, Document) else r.reason) for r in records] == [
        ("wikipedia/enwiki/1", "First."), ("wikipedia/enwiki/2", "wikipedia/convert_error"),
        ("wikipedia/enwiki/3", "Third.")]
    monkeypatch.setattr(wikipedia, "wikitext_to_text", lambda *_: (_ for _ in ()).throw(MemoryError()))
    with pytest.raises(MemoryError):  # not the page's fault: the unit is retried
        read_all(spec([path]))


def test_vandalised_pages_convert_instead_of_failing_the_file(tmp_path):
    # Before: `&#` and 5000 digits raised ValueError in html.unescape (int() refuses over 4300 digits), and
    # links nested 2000 deep a RecursionError: either failed the whole file, on every retry.
    pages = [(1, 0, "A", "2020", None, "x &#" + "1" * 5000 + "; y"), (2, 0, "B", "2020", None, "[[a|" * 2000 + "z"),
             (3, 0, "C", "2020", None, "Fine.")]
    path = tmp_path / "d.xml"
    path.write_bytes(xml_dump(pages))
    records = read_all(spec([path]))
    assert [r.text for r in records] == ["x \ufffd y", "[[a|" * 2000 + "z", "Fine."]
