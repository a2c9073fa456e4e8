"""Real WARCs the reader must not lose: stale coding headers, one bad record, records without an id.

Fixtures are written with warcio (the reference writer) and read back with warcio (the reference
reader): a record warcio reads whole must be kept with the same payload, unless its body really is
encoded and damaged, which is that record's drop.
"""

from __future__ import annotations

import gzip
import io
import zlib

import pytest
import zstandard
from warcio.archiveiterator import ArchiveIterator

from data_specs.sources import CommonCrawlSource
from tasks.common.documents import Document, Dropped
from tasks.sources import common_crawl as cc
from tasks.sources.core import WorkUnit, read_unit
from tests.unit._warc_build import Rec, page, warc_bytes, warcio_payloads

HTML = [("Content-Type", "text/html; charset=utf-8")]
CE_GZIP = [*HTML, ("Content-Encoding", "gzip")]
TE_CHUNKED = [*HTML, ("Transfer-Encoding", "chunked")]
STALE_CE, STALE_TE = "common_crawl/stale_content_encoding", "common_crawl/stale_transfer_encoding"


def words(rid: str) -> str:
    return f"The {rid} page keeps its long and quiet paragraph about gardens, rivers and old trains. " * 4


def chunked(data: bytes, size: int = 64) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(data[i : i + size]), data[i : i + size]) for i in range(0, len(data), size)]
    return b"".join(parts) + b"0\r\n\r\n"


def deflate_raw(data: bytes) -> bytes:
    comp = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return comp.compress(data) + comp.flush()


def damaged(data: bytes) -> bytes:
    """Zero every 5th byte of the second half: the start still decodes, the rest does not."""
    out = bytearray(data)
    out[len(out) // 2 :: 5] = bytes(len(out[len(out) // 2 :: 5]))
    return bytes(out)


def spec(path) -> CommonCrawlSource:
    return CommonCrawlSource(kind="common_crawl", paths=[str(path)])


def read(path) -> dict[str, Document | Dropped]:
    return {r.id.removeprefix("common_crawl/"): r for r in read_unit(spec(path), WorkUnit(0, "common_crawl", str(path)))}


def build(rid: str, http: list[tuple[str, str]], encode) -> Rec:  # noqa: ANN001
    return Rec(rid, encode(page(words(rid))), http=http)


# rid: (HTTP headers, how the body is made from the page, expected outcome: notes of a kept page, or a drop)
CASES = {
    # The crawler stored the decoded page and kept the server's header: read as identity, noted.
    "gzip-stale": (CE_GZIP, lambda p: p, (STALE_CE,)),
    "x-gzip-stale": ([*HTML, ("Content-Encoding", "x-gzip")], lambda p: p, (STALE_CE,)),
    "deflate-stale": ([*HTML, ("Content-Encoding", "deflate")], lambda p: p, (STALE_CE,)),
    "br-stale": ([*HTML, ("Content-Encoding", "br")], lambda p: p, (STALE_CE,)),
    "chunked-stale": (TE_CHUNKED, lambda p: p, (STALE_TE,)),
    "both-stale": ([*TE_CHUNKED, ("Content-Encoding", "gzip")], lambda p: p, (STALE_TE, STALE_CE)),
    "chunked-stale-over-gzip": ([*TE_CHUNKED, ("Content-Encoding", "gzip")], gzip.compress, (STALE_TE,)),
    # Really encoded: decoded, no note.
    "gzip-real": (CE_GZIP, gzip.compress, ()),
    "deflate-real": ([*HTML, ("Content-Encoding", "deflate")], deflate_raw, ()),
    "zlib-real": ([*HTML, ("Content-Encoding", "deflate")], zlib.compress, ()),
    "chunked-real": (TE_CHUNKED, chunked, ()),
    "chunked-gzip-real": ([*TE_CHUNKED, ("Content-Encoding", "gzip")], lambda p: chunked(gzip.compress(p)), ()),
    # Really encoded but damaged: that record's drop, never a page of compressed bytes.
    "gzip-corrupt": (CE_GZIP, lambda p: damaged(gzip.compress(p)), "common_crawl/bad_content_encoding"),
    "gzip-cut": (CE_GZIP, lambda p: gzip.compress(p)[:-30], "common_crawl/bad_content_encoding"),
    # zlib has a checksum; raw deflate has none, so only a cut (not every flipped byte) is seen in it.
    "zlib-corrupt": ([*HTML, ("Content-Encoding", "deflate")], lambda p: damaged(zlib.compress(p)),
                     "common_crawl/bad_content_encoding"),
    "deflate-cut": ([*HTML, ("Content-Encoding", "deflate")], lambda p: deflate_raw(p)[:-20],
                    "common_crawl/bad_content_encoding"),
    "chunked-cut": (TE_CHUNKED, lambda p: chunked(p)[:-60], "common_crawl/bad_chunking"),
}


@pytest.fixture(scope="module")
def stale_warc(tmp_path_factory):
    data = warc_bytes(build(rid, http, encode) for rid, (http, encode, _) in CASES.items())
    path = tmp_path_factory.mktemp("stale") / "stale.warc.gz"
    path.write_bytes(data)
    return path, data


def test_stale_headers_are_noted_real_codings_decoded_damage_dropped(stale_warc):
    # Before: every stale case was dropped as bad_content_encoding / bad_chunking /
    # unsupported_content_encoding, though warcio reads each of them whole.
    path, data = stale_warc
    got = read(path)
    assert set(got) == set(CASES)
    reference = warcio_payloads(data)
    for rid, (_, _, expected) in CASES.items():
        if isinstance(expected, str):
            assert got[rid] == Dropped(f"common_crawl/{rid}", expected), rid
            continue
        if rid != "br-stale":  # warcio 1.8.1 with brotli 1.1 installed raises on any `br` body (AttributeError)
            assert reference[rid] == page(words(rid)), rid  # warcio reads the page itself: the reference agrees
        doc = got[rid]
        assert isinstance(doc, Document), (rid, doc)
        assert doc.text == words(rid).strip() and doc.notes == expected, rid


def test_stale_header_sniff_is_on_the_body_not_the_header():
    from tasks.sources.http_payload import Payload, decode_http_payload, looks_plain

    body = page(words("sniff"))
    assert looks_plain(body) and not looks_plain(gzip.compress(body)) and not looks_plain(deflate_raw(body))
    assert looks_plain("<p>café</p>".encode("utf-16"))  # UTF-16 text has NUL bytes but a BOM
    # A binary body under a coding that is not decoded stays a drop, never text.
    assert decode_http_payload({"content-encoding": "br"}, zstandard.compress(body), 10**6) == Payload(
        b"", "unsupported_content_encoding")
    # A first line that is a chunk size makes the body chunked: cut, it is bad_chunking, not identity.
    assert decode_http_payload({"transfer-encoding": "chunked"}, b"1a\r\n<html>", 10**6).problem == "bad_chunking"
    # Common Crawl's own renamed header is not a coding header: nothing to note.
    assert decode_http_payload({"x-crawler-content-encoding": "gzip"}, body, 10**6) == Payload(body)


def test_utf7_page_with_lone_surrogates_is_kept_and_the_file_read_on(tmp_path):
    # Before: the utf-7 page decoded to lone surrogates, resiliparse raised TypeError and the whole file
    # failed (on every retry). Now it is kept, the surrogates replaced; the pages after it are read.
    from resiliparse.extract.html2text import extract_plain_text

    body = page("Plus signs in utf-7 open base64 runs: +2D8- and +3gA- are lone surrogates. " + words("utf7"))
    with pytest.raises(TypeError):
        extract_plain_text(body.decode("utf-7"))  # the hazard is real: resiliparse refuses such strings
    records = [
        Rec("utf7", body, http=[("Content-Type", "text/html; charset=utf-7")]),
        Rec("punycode", page(words("punycode")), http=[("Content-Type", "text/html; charset=punycode")]),
        Rec("undefined", page(words("undefined")), http=[("Content-Type", "text/html; charset=undefined")]),
        Rec("after", page(words("after"))),
    ]
    path = tmp_path / "charsets.warc.gz"
    path.write_bytes(warc_bytes(records))
    got = read(path)
    assert all(isinstance(d, Document) for d in got.values()) and set(got) == {r.rid for r in records}
    assert "\ufffd" in got["utf7"].text and "lone surrogates" in got["utf7"].text
    assert not any(0xD800 <= ord(ch) <= 0xDFFF for ch in got["utf7"].text)
    for rid in ("punycode", "undefined", "after"):
        assert got[rid].text == words(rid).strip(), rid


@pytest.mark.parametrize(("target", "stage"), [("decode_html", "decode_error"), ("_extractor", "extraction_error")])
def test_any_error_in_one_record_is_that_records_drop(tmp_path, monkeypatch, target, stage):
    records = [Rec("before", page(words("before"))), Rec("boom", page(words("boom"))), Rec("after", page(words("after")))]
    path = tmp_path / "boom.warc.gz"
    path.write_bytes(warc_bytes(records))

    def explode_on_boom(fail: BaseException):  # noqa: ANN202
        real_decode, real_extractor = cc.decode_html, cc._extractor

        if target == "decode_html":
            def decode(body: bytes, content_type: str = "") -> str:
                if b"boom page" in body:
                    raise fail
                return real_decode(body, content_type)
            monkeypatch.setattr(cc, "decode_html", decode)
        else:
            def extractor(source):  # noqa: ANN001, ANN202
                extract = real_extractor(source)

                def run(html: str) -> str:
                    if "boom page" in html:
                        raise fail
                    return extract(html)
                return run
            monkeypatch.setattr(cc, "_extractor", extractor)

    explode_on_boom(RuntimeError("a parser bug"))
    got = read(path)
    assert got["boom"] == Dropped("common_crawl/boom", f"common_crawl/{stage}")
    assert isinstance(got["before"], Document) and isinstance(got["after"], Document)
    # MemoryError and I/O errors are not the record's fault: they fail the unit, which is retried.
    for fail in (MemoryError(), ConnectionResetError(104, "Connection reset by peer")):
        monkeypatch.undo()
        explode_on_boom(fail)
        with pytest.raises(type(fail)):
            read(path)


def raw_record(kind: str, block: bytes, rid: str | None = None) -> bytes:
    rid_line = f"WARC-Record-ID: <urn:uuid:{rid}>\r\n" if rid else ""
    http = "Content-Type: application/http; msgtype=response\r\n" if kind == "response" else ""
    head = (f"WARC/1.0\r\nWARC-Type: {kind}\r\n{rid_line}WARC-Target-URI: http://x.org/{kind}\r\n{http}"
            f"Content-Length: {len(block)}\r\n\r\n")
    return head.encode() + block + b"\r\n\r\n"


def test_records_without_record_id_get_file_and_offset_ids(tmp_path):
    # Before: every such record was `common_crawl/`; two of them raised DuplicateDocumentId in the run.
    http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n" + page(words("noid-page"))
    data = (raw_record("conversion", words("first").encode()) + raw_record("conversion", words("second").encode())
            + raw_record("response", http) + raw_record("conversion", b"with id", rid="has-id"))
    plain = tmp_path / "noid.warc"
    plain.write_bytes(data)
    records = ArchiveIterator(io.BytesIO(data))
    offsets = [records.get_record_offset() for _ in records][:3]
    expected = [f"noid.warc@{offset}" for offset in offsets] + ["has-id"]  # warcio's offsets of the records
    got = read(plain)
    assert list(got) == expected and len(set(got)) == 4
    assert got[expected[0]].text == words("first").strip() and got[expected[2]].text == words("noid-page").strip()
    # Offsets are in the decompressed stream: the same records recompressed keep their ids.
    for name, packed in (("noid.warc.gz", gzip.compress(data)), ("noid.warc.zst", zstandard.compress(data))):
        (tmp_path / "copy").mkdir(exist_ok=True)
        path = tmp_path / "copy" / name
        path.write_bytes(packed)
        assert [i.replace(name, "noid.warc") for i in read(path)] == expected


def test_raw_deflate_that_ends_before_its_body_is_damaged():
    from tasks.sources.http_payload import decode_http_payload, inflate_bounded

    body = page(words("raw"))
    assert inflate_bounded(deflate_raw(body) + b"\r\n", -zlib.MAX_WBITS, 10**6) == body  # whitespace after: fine
    with pytest.raises(zlib.error, match="ends 5 bytes before"):
        inflate_bounded(deflate_raw(body) + b"\x00junk", -zlib.MAX_WBITS, 10**6)
    assert decode_http_payload({"content-encoding": "deflate"}, deflate_raw(body) + b"\x00junk", 10**6).problem == (
        "bad_content_encoding")
