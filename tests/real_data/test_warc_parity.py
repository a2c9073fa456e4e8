"""The Common Crawl reader keeps what warcio (the reference) reads, on every real WARC/WET sample.

For each sample in `shared/data/commoncrawl`, the reference outcome of every response, resource and
conversion record is derived from warcio's reading alone: warcio's `content_stream()` payload, and
warcio's headers for the content type. A payload becomes the expected text through lmpipe's own charset
decoding and extractor, so what is compared is the *payload*; the reasons lmpipe may legitimately drop
a record warcio reads (`not_html`, `html_too_large`, `empty_extraction`) are derived from warcio's
reading too, never taken from lmpipe's output.

Variants built from the samples in the test (never stored):
- the truncated WET: warcio refuses its single gzip member, so the reference reads the decompressed
  complete records before the cut (the decompressed bytes up to the last `WARC/1.0` line), and lmpipe must give exactly
  those and then a `ReaderError` at that offset;
- "restored crawler headers": Common Crawl renames the server's `Content-Encoding` / `Transfer-Encoding`
  to `X-Crawler-*` because it stores decoded payloads; naming them back gives what other crawlers
  write (stale headers over decoded bodies: Heritrix/IA replays, ClueWeb09). warcio reads those records
  whole; so must lmpipe, with a note per stale header;
- zstd: each sample decompressed and recompressed with zstd reads as its gzip original.

Set `LMPIPE_SHARED_DATA` to the samples' folder when the checkout is not beside `shared/` (a worktree).
"""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

import pytest
import zstandard
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from data_specs.sources import CommonCrawlSource
from tasks.common.documents import Document, Dropped
from tasks.sources.common_crawl import _extractor, decode_html
from tasks.sources.core import ReaderError, WorkUnit, read_unit

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("LMPIPE_SHARED_DATA") or REPO.parent / "shared" / "data") / "commoncrawl"
TRUNCATED = "CC-MAIN-20201129214615-20201130004615-00404.warc.wet.head50000lines.TRUNCATED.gz"
SAMPLES = sorted(p.name for p in DATA.glob("*.gz") if p.name != TRUNCATED) if DATA.is_dir() else []
WARCS_WITH_CRAWLER_HEADERS = ["CC-MAIN-2020-34_resiliparse-sample.warc.gz", "CC-MAIN-2024-22_whirlwind.warc.gz"]

pytestmark = [
    pytest.mark.real_data,
    pytest.mark.skipif(not DATA.is_dir(), reason=f"real data samples not found at {DATA} (set LMPIPE_SHARED_DATA)"),
]

Outcome = tuple[str, str]  # ("doc", text) or ("drop", reason)
SOURCE = CommonCrawlSource(kind="common_crawl", paths=["unused"])
EXTRACT = _extractor(SOURCE)


def _uuid(record) -> str:  # noqa: ANN001
    return record.rec_headers.get_header("WARC-Record-ID").strip("<>").removeprefix("urn:uuid:")


def reference(data: bytes) -> dict[str, Outcome]:
    """The outcome of every response/resource/conversion record, from warcio's reading of `data`."""
    out: dict[str, Outcome] = {}
    for record in ArchiveIterator(io.BytesIO(data)):
        kind = record.rec_type
        if kind not in ("response", "resource", "conversion"):
            continue
        rid = f"common_crawl/{_uuid(record)}"
        payload = record.content_stream().read()
        if kind == "conversion":
            text = payload.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
        else:
            headers = record.http_headers or record.rec_headers
            content_type = headers.get_header("Content-Type") or ""
            if content_type.split(";")[0].strip().lower() not in ("text/html", "application/xhtml+xml"):
                out[rid] = ("drop", "common_crawl/not_html")
                continue
            if len(payload) > SOURCE.max_html_bytes:
                out[rid] = ("drop", "common_crawl/html_too_large")
                continue
            text = EXTRACT(decode_html(payload, content_type)).strip()
        out[rid] = ("doc", text) if text else ("drop", "common_crawl/empty_extraction")
    return out


def lmpipe(path: Path) -> tuple[dict[str, Outcome], dict[str, tuple[str, ...]], ReaderError | None]:
    """lmpipe's outcome per record, the notes of kept records, and the ReaderError if the file ended in one."""
    outcomes: dict[str, Outcome] = {}
    notes: dict[str, tuple[str, ...]] = {}
    error = None
    try:
        for record in read_unit(CommonCrawlSource(kind="common_crawl", paths=[str(path)]),
                                WorkUnit(0, "common_crawl", str(path))):
            assert record.id not in outcomes, f"id {record.id} twice"
            if isinstance(record, Document):
                outcomes[record.id] = ("doc", record.text)
                notes[record.id] = getattr(record, "notes", ())  # getattr: the same harness runs on older code
            else:
                assert isinstance(record, Dropped)
                outcomes[record.id] = ("drop", record.reason)
    except ReaderError as exc:
        error = exc
    return outcomes, notes, error


def assert_same(got: dict[str, Outcome], expected: dict[str, Outcome]) -> None:
    assert list(got) == list(expected)  # the same records, in the same order
    for rid, outcome in expected.items():
        assert got[rid] == outcome, rid


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_matches_warcio(name):
    data = (DATA / name).read_bytes()
    expected = reference(data)
    got, notes, error = lmpipe(DATA / name)
    assert error is None
    assert_same(got, expected)
    assert not any(notes.values())  # none of these samples has a header that disagrees with its body


def test_dolma_chunked_responses_are_kept():
    # wget keeps `Transfer-Encoding: chunked` and the chunk framing in 4 of the 15 responses: dechunked and kept
    # (today's main did too; this pins it).
    path = DATA / "dolma_wget-sample-0001.warc.gz"
    chunked = []
    for record in ArchiveIterator(io.BytesIO(path.read_bytes())):
        if record.rec_type == "response" and record.http_headers.get_header("Transfer-Encoding") == "chunked":
            raw = record.raw_stream.read()
            assert raw.split(b"\r\n", 1)[0].strip().isalnum()  # the body really starts with a chunk-size line
            chunked.append(f"common_crawl/{_uuid(record)}")
    got, notes, _ = lmpipe(path)
    assert len(chunked) == 4
    assert all(got[rid][0] == "doc" and got[rid][1] and notes[rid] == () for rid in chunked)
    assert sum(outcome[0] == "doc" for outcome in got.values()) == 15


def test_truncated_wet_matches_warcio_up_to_the_damage():
    # One whole gzip member (`head -n 50000 | gzip`) whose content ends inside a record header; warcio
    # refuses a single-member file with several records ("non-chunked gzip file"), so it reads the bytes.
    data = gzip.decompress((DATA / TRUNCATED).read_bytes())
    cut = data.rfind(b"WARC/1.0\r\n")  # the start of the record the file ends inside
    expected = reference(data[:cut])
    got, _, error = lmpipe(DATA / TRUNCATED)
    assert_same(got, expected)
    assert len(expected) == 318
    assert isinstance(error, ReaderError) and f"header truncated at offset {cut} " in str(error)


def restore_crawler_headers(data: bytes) -> tuple[bytes, dict[str, tuple[str, ...]]]:
    """The response records with `X-Crawler-Content-Encoding` / `-Transfer-Encoding` named back, written by
    warcio, and the notes each record must get."""
    out = io.BytesIO()
    writer = WARCWriter(out, gzip=True)
    notes: dict[str, tuple[str, ...]] = {}
    for record in ArchiveIterator(io.BytesIO(data)):
        if record.rec_type != "response":
            continue
        renamed, expect = [], []
        for key, value in record.http_headers.headers:
            lower = key.lower()
            if lower == "x-crawler-transfer-encoding":
                renamed.append(("Transfer-Encoding", value))
                expect.append("common_crawl/stale_transfer_encoding")
            elif lower == "x-crawler-content-encoding":
                renamed.append(("Content-Encoding", value))
                expect.append("common_crawl/stale_content_encoding")
            else:
                renamed.append((key, value))
        body = record.raw_stream.read()  # Common Crawl's stored (decoded) payload
        keep = [(k, v) for k, v in record.rec_headers.headers
                if k.lower() not in ("content-length", "warc-block-digest", "content-type")]
        http = StatusAndHeaders(record.http_headers.statusline, renamed, protocol=record.http_headers.protocol)
        writer.write_record(writer.create_warc_record(
            record.rec_headers.get_header("WARC-Target-URI"), "response", payload=io.BytesIO(body),
            length=len(body), warc_headers_dict=dict(keep), http_headers=http))
        notes[f"common_crawl/{_uuid(record)}"] = tuple(sorted(expect, reverse=True))  # transfer first
    return out.getvalue(), notes


@pytest.mark.parametrize("name", WARCS_WITH_CRAWLER_HEADERS)
def test_restored_crawler_headers_are_stale_headers_read_as_warcio_does(name, tmp_path):
    # Before: every response with a restored header was dropped (bad_content_encoding, bad_chunking).
    original = (DATA / name).read_bytes()
    data, expected_notes = restore_crawler_headers(original)
    assert sum(bool(n) for n in expected_notes.values()) >= 1
    path = tmp_path / name
    path.write_bytes(data)
    expected = reference(data)
    assert expected == reference(original)  # warcio reads the restored records exactly as the originals
    got, notes, error = lmpipe(path)
    assert error is None
    assert_same(got, expected)
    assert {rid: n for rid, n in notes.items()} == {rid: expected_notes[rid] for rid in notes}


@pytest.mark.parametrize("name", SAMPLES)
def test_zstd_recompressed_sample_reads_as_the_gzip_one(name, tmp_path):
    # Before: a zstd WARC/WET failed at its first record (the zstd reader has no readline).
    original = (DATA / name).read_bytes()
    path = tmp_path / name.replace(".gz", ".zst")
    path.write_bytes(zstandard.compress(gzip.decompress(original)))
    got, _, error = lmpipe(path)
    assert error is None
    assert_same(got, reference(original))
