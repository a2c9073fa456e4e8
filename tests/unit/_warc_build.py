"""Build small WARC/WET files with warcio (the reference writer), for the Common Crawl reader tests."""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass, field

from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter


@dataclass(frozen=True)
class Rec:
    """One record to write: a `response` (HTTP headers + body) or a `conversion` (plain text)."""

    rid: str
    body: bytes
    kind: str = "response"
    http: list[tuple[str, str]] = field(default_factory=lambda: [("Content-Type", "text/html; charset=utf-8")])


def page(words: str) -> bytes:
    """An HTML page whose main content is `words` (long enough that resiliparse keeps it)."""
    return (f"<html><head><title>t</title></head><body><article><p>{words}</p></article></body></html>").encode()


def warc_bytes(records: Iterable[Rec], gzip: bool = True) -> bytes:
    """The records as a WARC written by warcio (per-record gzip when `gzip`), ids `<urn:uuid:{rid}>`."""
    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=gzip)
    for rec in records:
        headers = {"WARC-Record-ID": f"<urn:uuid:{rec.rid}>", "WARC-Date": "2024-05-18T01:00:00Z"}
        uri = f"http://example.org/{rec.rid}"
        if rec.kind == "conversion":
            record = writer.create_warc_record(uri, "conversion", payload=io.BytesIO(rec.body),
                                               warc_content_type="text/plain", warc_headers_dict=headers)
        else:
            http = StatusAndHeaders("200 OK", rec.http, protocol="HTTP/1.1")
            record = writer.create_warc_record(uri, "response", payload=io.BytesIO(rec.body),
                                               http_headers=http, warc_headers_dict=headers)
        writer.write_record(record)
    return buf.getvalue()


def warcio_payloads(data: bytes) -> dict[str, bytes | Exception]:
    """What warcio's `content_stream()` reads for every response/conversion record, by record id (the
    exception where warcio fails on the record)."""
    out: dict[str, bytes | Exception] = {}
    for record in ArchiveIterator(io.BytesIO(data)):
        if record.rec_type in ("response", "conversion"):
            rid = record.rec_headers.get_header("WARC-Record-ID").strip("<>").removeprefix("urn:uuid:")
            try:
                out[rid] = record.content_stream().read()
            except Exception as exc:  # noqa: BLE001 - recorded for the comparison
                out[rid] = exc
    return out
