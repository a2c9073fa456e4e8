"""Faulty HTTP payloads in a WARC read over HTTP: each is dropped under its own reason, memory stays bounded.

Fault: one WARC file (per-record gzip, served from a loopback HTTP server) whose responses hold a gzip
bomb (256 MiB of zeros in ~260 KB), a truncated chunked body, a corrupt gzip body, a zstd body under
`Content-Encoding: zstd` (a coding the reader does not decode), and a record whose block (7 MB) is over the reader's record limit, between
three good pages (gzip + chunked, deflate, plain).
Must survive: the three good pages, and the reader's memory: decompression stops at max_html_bytes + 1
and the big block is skipped in chunks, so the traced peak stays far below the bomb's size.
Output must equal: exactly the three good pages in the shards, and each bad record counted once under
its reason in the manifest (html_too_large, bad_chunking, bad_content_encoding,
unsupported_content_encoding, record_too_large), no failed input.
"""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard

from data_specs.sources import CommonCrawlSource
from flows.curate import curate
from tasks.common.documents import Document, Dropped
from tasks.sources.core import plan_units, read_unit
from tests.fixtures.make_sample_corpus import ARTICLES, html_page
from tests.flows.helpers import write_spec
from tests.unit._sources_http import http_server  # noqa: F401 - fixture

BOMB_BYTES = 256 << 20


def gzip_bomb(size: int) -> bytes:
    """gzip of `size` zero bytes, compressed in 1 MiB steps (never holds the payload): ~1000:1."""
    comp = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"\0" * (1 << 20)
    parts = [comp.compress(zeros) for _ in range(size >> 20)]
    return b"".join(parts) + comp.flush()


def chunked(data: bytes, size: int = 100) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(data[i : i + size]), data[i : i + size]) for i in range(0, len(data), size)) + b"0\r\n\r\n"


def response(rid: str, body: bytes, headers: str = "") -> bytes:
    """One gzip member holding a WARC response record with an HTTP/1.1 200 text/html message."""
    http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n" + headers.encode() + b"\r\n" + body
    head = (f"WARC/1.0\r\nWARC-Type: response\r\nWARC-Record-ID: <urn:uuid:{rid}>\r\n"
            f"WARC-Target-URI: https://www.example.org/{rid}\r\nWARC-Date: 2024-05-18T01:00:00Z\r\n"
            f"Content-Type: application/http; msgtype=response\r\nContent-Length: {len(http)}\r\n\r\n")
    return gzip.compress(head.encode() + http + b"\r\n\r\n", compresslevel=1, mtime=0)


GOOD = {"good-garden", "good-trains", "good-library"}
BAD = {
    "bomb": "common_crawl/html_too_large",
    "cut-chunks": "common_crawl/bad_chunking",
    "corrupt-gzip": "common_crawl/bad_content_encoding",
    "zstd-coded": "common_crawl/unsupported_content_encoding",
    "huge-block": "common_crawl/record_too_large",
}


@pytest.fixture(scope="module")
def warc_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("web")
    page = {k: html_page(*ARTICLES[k]).encode() for k in ("garden", "trains", "library")}
    deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    corrupt = bytearray(gzip.compress(page["library"]))
    corrupt[len(corrupt) // 2 :: 7] = bytes(len(corrupt[len(corrupt) // 2 :: 7]))  # zero every 7th byte of the 2nd half
    records = [
        response("good-garden", chunked(gzip.compress(page["garden"])), "Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"),
        response("bomb", gzip_bomb(BOMB_BYTES), "Content-Encoding: gzip\r\n"),
        response("cut-chunks", chunked(page["trains"])[:-200], "Transfer-Encoding: chunked\r\n"),
        response("good-trains", deflate.compress(page["trains"]) + deflate.flush(), "Content-Encoding: deflate\r\n"),
        response("corrupt-gzip", bytes(corrupt), "Content-Encoding: gzip\r\n"),
        # Really zstd: a plain page under an unknown coding is read as identity (a stale header, noted).
        response("zstd-coded", zstandard.compress(page["garden"]), "Content-Encoding: zstd\r\n"),
        response("huge-block", b"<p>" + b"word " * 1_400_000 + b"</p>"),
        response("good-library", page["library"]),
    ]
    (folder / "faults.warc.gz").write_bytes(b"".join(records))
    return folder


def test_reader_drops_each_fault_with_bounded_memory(warc_dir, http_server):  # noqa: F811
    source = CommonCrawlSource(kind="common_crawl", paths=[f"{http_server(warc_dir)}/faults.warc.gz"])
    (unit,), problems = plan_units(source, 0)
    assert not problems
    tracemalloc.start()
    try:
        records = list(read_unit(source, unit))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"peak {peak / 2**20:.0f} MiB while reading a {BOMB_BYTES >> 20} MiB bomb"
    got = {r.id.removeprefix("common_crawl/"): r for r in records}
    assert {k for k, r in got.items() if isinstance(r, Document)} == GOOD
    assert {k: r.reason for k, r in got.items() if isinstance(r, Dropped)} == BAD


def test_curate_names_each_fault_and_keeps_the_good_pages(warc_dir, http_server, tmp_path):  # noqa: F811
    sources = [{"kind": "common_crawl", "paths": [f"{http_server(warc_dir)}/faults.warc.gz"]}]
    spec = write_spec(tmp_path / "spec.yaml", tmp_path / "out", sources, run={"workers": 1})
    manifest = curate(str(spec))
    assert manifest["counts"]["failed_inputs"] == 0
    assert manifest["drop_reasons"] == {reason: 1 for reason in BAD.values()}
    ids = pq.read_table(tmp_path / "out" / "data", columns=["id"])["id"].to_pylist()
    assert sorted(ids) == sorted(f"common_crawl/{k}" for k in GOOD)
