"""Common Crawl reader: WARC HTML responses (charset, boilerplate, non-HTML), WET, damaged inputs."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import pytest
import zstandard

from data_specs.sources import CommonCrawlSource
from tasks.common.documents import Document, Dropped
from tasks.sources.common_crawl import RECORD_HEADROOM, decode_html, iter_warc_records
from tasks.sources.http_payload import Payload, dechunk, decode_http_payload, inflate_bounded
from tasks.sources.core import ReaderError, WorkUnit, plan_units, read_unit

CC = Path(__file__).resolve().parents[1] / "fixtures" / "sample_corpus" / "cc"


def spec(path, **kw) -> CommonCrawlSource:
    return CommonCrawlSource(kind="common_crawl", paths=[str(path)], **kw)


def read_all(source):
    units, problems = plan_units(source, 0)
    assert not problems
    return [r for u in units for r in read_unit(source, u)]


def test_sample_warc():
    records = read_all(spec(CC / "sample.warc.gz"))
    drops = [r for r in records if isinstance(r, Dropped)]
    assert drops == [Dropped("common_crawl/00000000-0000-4000-8000-000000000115", "common_crawl/not_html")]
    docs = {d.url: d for d in records if isinstance(d, Document)}
    assert len(docs) == 9  # warcinfo and request records are skipped, not counted
    garden = docs["https://www.example-news.com/garden"]
    assert garden.id == "common_crawl/00000000-0000-4000-8000-000000000101"
    assert garden.date == "2024-05-18T01:00:00Z" and garden.origin == str(CC / "sample.warc.gz")
    assert "Starting a vegetable garden" in garden.text
    assert "Privacy policy" not in garden.text and "Log in" not in garden.text  # main content only
    cafe = docs["http://www.example-food.com/cafe.html"].text  # windows-1252 declared in the HTTP header
    assert "café" in cafe and "naïve" in cafe and "Zoë" in cafe and "crème brûlée" in cafe and "\ufffd" not in cafe
    assert "help.desk@example-support.org" in docs["https://www.example-news.com/support"].text
    assert docs["https://mirror.example-copies.net/garden-copy"].text == garden.text


def test_sample_wet():
    records = read_all(spec(CC / "sample.warc.wet.gz"))
    assert len(records) == 5 and all(isinstance(r, Document) for r in records)
    assert records[0].id == "common_crawl/00000000-0000-4000-9000-000000000010"
    assert records[0].text.startswith("The quiet return of the night train")


def test_html_too_large_and_max_documents():
    records = read_all(spec(CC / "sample.warc.gz", max_html_bytes=1000))
    assert {r.reason for r in records if isinstance(r, Dropped)} == {"common_crawl/not_html", "common_crawl/html_too_large"}
    assert len(read_all(spec(CC / "sample.warc.gz", max_documents=3))) == 3


def test_trafilatura_missing_says_how_to_install():
    pytest.importorskip("resiliparse")
    try:
        import trafilatura  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"lmpipe\[extract\]"):
            read_all(spec(CC / "sample.warc.gz", extractor="trafilatura"))
    else:
        pytest.skip("trafilatura is installed")


def warc_record(kind: str, rid: str, block: bytes, extra: str = "") -> bytes:
    head = f"WARC/1.0\r\nWARC-Type: {kind}\r\nWARC-Record-ID: <urn:uuid:{rid}>\r\n{extra}Content-Length: {len(block)}\r\n\r\n"
    return head.encode() + block + b"\r\n\r\n"


def test_truncated_warc_yields_complete_records_then_raises(tmp_path):
    data = gzip.decompress((CC / "sample.warc.wet.gz").read_bytes())
    for cut, match in ((data.rfind(b"WARC/1.0") + 30, "header truncated"), (len(data) - 40, "body truncated")):
        path = tmp_path / f"cut{cut}.warc.gz"
        path.write_bytes(gzip.compress(data[:cut], mtime=0))
        got = []
        with pytest.raises(ReaderError, match=match):
            got.extend(read_unit(spec(path), WorkUnit(0, "common_crawl", str(path))))
        assert len(got) == 4


def test_gzip_cut_mid_member(tmp_path):
    raw = (CC / "sample.warc.gz").read_bytes()
    path = tmp_path / "cut.warc.gz"
    path.write_bytes(raw[: len(raw) - 500])
    got = []
    with pytest.raises(ReaderError):
        got.extend(read_unit(spec(path), WorkUnit(0, "common_crawl", str(path))))
    assert 5 <= len(got) <= 10


def test_invalid_utf8_wet_and_undeclared_charset(tmp_path):
    html = "<html><head><title>t</title></head><body><p>Le café était très agréable et élégant.</p></body></html>"
    http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n" + html.encode("latin-1")
    data = warc_record("conversion", "a", b"bad \xff\xfe bytes") + warc_record(
        "response", "b", http, "WARC-Target-URI: http://x.fr/\r\nContent-Type: application/http; msgtype=response\r\n"
    ) + warc_record("metadata", "c", b"x: y")
    path = tmp_path / "mixed.warc"
    path.write_bytes(data)
    wet, page = read_all(spec(path, main_content=False))
    assert wet.text == "bad \ufffd\ufffd bytes" and wet.id == "common_crawl/a"
    assert "café était très agréable" in page.text and page.url == "http://x.fr/"


def test_decode_html_never_raises():
    assert decode_html(b"caf\xe9", "text/html; charset=utf-8")  # wrong declared charset: detected instead
    assert decode_html(b"abc", "text/html; charset=no-such-codec") == "abc"
    for charset in ("punycode", "undefined"):  # they raise UnicodeError, not UnicodeDecodeError: detected instead
        assert decode_html(b"<p>Le menu du jour</p>", f"text/html; charset={charset}") == "<p>Le menu du jour</p>"
    assert decode_html(b"<p>+2D8-</p>", "text/html; charset=UTF7") == "<p>\ufffd</p>"  # a lone surrogate, replaced


def test_not_a_warc(tmp_path):
    path = tmp_path / "x.warc"
    path.write_bytes(b"hello world\n")
    with pytest.raises(ReaderError, match="not a WARC record"):
        read_all(spec(path))


PAGE = ("<html><head><title>Garden</title></head><body><p>"
        + "A quiet garden by the river keeps its roses through the long and windy autumn. " * 4
        + "</p></body></html>").encode()


def chunked(data: bytes, size: int = 50, ext: bytes = b"") -> bytes:
    parts = [b"%x%s\r\n%s\r\n" % (len(data[i : i + size]), ext, data[i : i + size]) for i in range(0, len(data), size)]
    return b"".join(parts) + b"0\r\nX-Trailer: t\r\n\r\n"


def http_response(rid: str, body: bytes, headers: str = "") -> bytes:
    http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n" + headers.encode() + b"\r\n" + body
    extra = f"WARC-Target-URI: http://x.org/{rid}\r\nContent-Type: application/http; msgtype=response\r\n"
    return warc_record("response", rid, http, extra)


def deflate_raw(data: bytes) -> bytes:
    comp = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return comp.compress(data) + comp.flush()


def test_http_payload_faults_each_have_a_reason(tmp_path):
    # Before: a broken gzip/deflate body and malformed chunking went on as raw bytes, br was kept as
    # text, and a bomb was decompressed whole before the size check.
    gz = gzip.compress(PAGE, mtime=0)
    cases = {
        "gzip-chunked": (chunked(gz), "Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", None),
        "deflate-raw": (deflate_raw(PAGE), "Content-Encoding: deflate\r\n", None),
        "deflate-zlib": (zlib.compress(PAGE), "Content-Encoding: Deflate\r\n", None),
        "identity-ext": (chunked(PAGE, 7, b";x=1").replace(b"\r\n", b"\n"), "Transfer-Encoding: chunked\r\n", None),
        "gzip-cut": (gz[:-30], "Content-Encoding: gzip\r\n", "bad_content_encoding"),
        "gzip-binary": (deflate_raw(PAGE)[5:], "Content-Encoding: x-gzip\r\n", "bad_content_encoding"),
        "chunk-cut": (chunked(PAGE)[:-60], "Transfer-Encoding: chunked\r\n", "bad_chunking"),
        "chunk-short": (b"ff\r\n" + PAGE[:100] + b"\r\n0\r\n\r\n", "Transfer-Encoding: chunked\r\n", "bad_chunking"),
        "zstd": (zstandard.compress(PAGE), "Content-Encoding: zstd\r\n", "unsupported_content_encoding"),
        "bomb": (gzip.compress(b"<p>" + b"\0" * 3_000_000), "Content-Encoding: gzip\r\n", "html_too_large"),
        "huge-record": (PAGE + b" " * (RECORD_HEADROOM + 200_000), "", "record_too_large"),
    }
    path = tmp_path / "faults.warc.gz"
    path.write_bytes(gzip.compress(b"".join(http_response(rid, body, h) for rid, (body, h, _) in cases.items())))
    got = {r.id.removeprefix("common_crawl/"): r for r in read_all(spec(path, max_html_bytes=100_000))}
    assert set(got) == set(cases)
    for rid, (_, _, reason) in cases.items():
        if reason is None:
            assert isinstance(got[rid], Document) and got[rid].text.startswith("A quiet garden"), rid
        else:
            assert got[rid] == Dropped(f"common_crawl/{rid}", f"common_crawl/{reason}"), rid


def test_decompression_is_bounded():
    bomb = gzip.compress(b"\0" * 10_000_000)
    assert len(inflate_bounded(bomb, 32 + zlib.MAX_WBITS, 1001)) == 1001
    assert decode_http_payload({"content-encoding": "gzip"}, bomb, 1000) == Payload(b"", "html_too_large")
    assert decode_http_payload({"content-encoding": "gzip"}, gzip.compress(b"x" * 1000), 1000) == Payload(b"x" * 1000)
    assert decode_http_payload({"content-encoding": "gzip"}, b"", 1000) == Payload(b"")  # empty: nothing to decode
    with pytest.raises(zlib.error):
        inflate_bounded(zlib.compress(b"abc" * 100)[:-5], zlib.MAX_WBITS, 10_000)


def test_dechunk():
    assert dechunk(b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n") == b"abcde"
    assert dechunk(b"3\nabc\n0\n") == b"abc"
    for bad in (b"", b"3\r\nabc\r\n", b"3\r\nabcX\r\n0\r\n\r\n", b"0x3\r\nabc\r\n0\r\n", b"-1\r\n", b"zz\r\n"):
        assert dechunk(bad) is None, bad


def test_oversized_record_is_skipped_in_bounded_reads(tmp_path):
    big = warc_record("conversion", "big", b"word " * 300_000)
    path = tmp_path / "big.warc"
    path.write_bytes(warc_record("conversion", "a", b"first") + big + warc_record("conversion", "b", b"last"))
    with open(path, "rb") as f:
        records = list(iter_warc_records(f, max_block_bytes=1_000_000))
    assert [(r.headers["warc-record-id"], r.block) for r in records] == [
        ("<urn:uuid:a>", b"first"), ("<urn:uuid:big>", None), ("<urn:uuid:b>", b"last")]
    path.write_bytes(big[: len(big) // 2])
    with open(path, "rb") as f, pytest.raises(ReaderError, match="body truncated"):
        list(iter_warc_records(f, max_block_bytes=1_000_000))


def test_negative_content_length_is_an_error(tmp_path):
    path = tmp_path / "neg.warc"
    path.write_bytes(b"WARC/1.0\r\nWARC-Type: conversion\r\nContent-Length: -1\r\n\r\nxyz\r\n\r\n")
    with pytest.raises(ReaderError, match="no valid Content-Length"):
        read_all(spec(path))
