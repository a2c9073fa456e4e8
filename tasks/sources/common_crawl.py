"""Common Crawl reader: WARC `response` records (HTML to text) and WET `conversion` records (plain text).

Input: a .warc / .warc.gz / .warc.wet.gz file (compression detected from content, per-record gzip or
one gzip member). Output: one `Document` per HTML response or conversion record
(`common_crawl/<WARC-Record-ID uuid>`, WARC-Target-URI, WARC-Date); `Dropped` for a response that is
not HTML (`common_crawl/not_html`), too large (`common_crawl/html_too_large`) or empty after extraction
(`common_crawl/empty_extraction`). warcinfo, request, metadata and other records are skipped.

HTTP payloads, decoded only as far as they are valid (every fault its own drop reason, never the raw
bytes passed on as text):
- `Transfer-Encoding: chunked` is undone strictly: a size line that is not hex, a chunk cut short or a
  missing last (zero) chunk is `common_crawl/bad_chunking`.
- `Content-Encoding` gzip/x-gzip (a zlib header is accepted too) and deflate (zlib or raw) are
  decompressed; damaged or truncated data is `common_crawl/bad_content_encoding` (bytes after the end
  of the compressed stream are ignored); any other coding (`br`, `zstd`, garbage) is
  `common_crawl/unsupported_content_encoding`; `identity`, or an empty body, needs no decoding.
- Decompression never makes more than `max_html_bytes + 1` bytes (`zlib.decompressobj` with
  `max_length`): a larger payload, a gzip bomb included, is `common_crawl/html_too_large` with memory
  bounded by the limit.
- A WARC record block (response, resource or WET conversion) larger than `max_html_bytes +
  RECORD_HEADROOM` (room for HTTP headers and chunk framing) is skipped in bounded reads, never held
  in memory: `common_crawl/record_too_large`.
Common Crawl itself stores decoded payloads and renames the crawler's headers
(`X-Crawler-Content-Encoding`), so these rules matter for WARCs from other crawlers (wget, warcio).

Why a small WARC record parser here rather than fastwarc or warcio: checked on the real truncated WET
sample (`...head50000lines.TRUNCATED.gz`, whose 320th record is cut inside its header), fastwarc 2.0.1
returns that record as if it were whole (no Content-Length, empty body) and raises nothing, and warcio
1.8.1 refuses the file at its first record (a single gzip member, "non-chunked gzip file"). Parsing the
WARC framing (header lines, Content-Length, body) over the decompressed stream takes a few lines, sees
every kind of truncation and reports the offset; it is not the bottleneck (HTML extraction is).

HTML to text: resiliparse `extract_plain_text(main_content=...)` (default; STACK_NOTES measured 916
pages/s against 59 for trafilatura), or trafilatura when `extractor: trafilatura` (optional dependency:
`pip install lmpipe[extract]`). Charset: the HTTP Content-Type charset, else resiliparse's
`detect_encoding`; decoding never fails (`bytes_to_str` falls back, invalid bytes are replaced).

Measured on one core here: the resiliparse WARC sample (16 HTML responses of 50 records) reads at
about 1,000 pages/s with extraction; the 318-record WET sample at about 17,000 records/s.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from data_specs.sources import CommonCrawlSource
from tasks.common.documents import Document, Dropped
from tasks.common.io import open_decompressed
from tasks.sources.core import ReaderError, WorkUnit

SOURCE = "common_crawl"
_MAX_HEADER_LINES = 1000
_MAX_LINE_BYTES = 1 << 16  # a WARC header line longer than this is not a header
_SKIP_CHUNK = 1 << 20
RECORD_HEADROOM = 1 << 20  # WARC block bytes allowed beyond max_html_bytes: HTTP headers, chunk lines


class WarcRecord:
    """One WARC record: its headers (names lower-cased) and its block (the bytes after the header).

    `block` is None for a record skipped because its block was larger than the reader's limit.
    """

    __slots__ = ("headers", "block", "offset")

    def __init__(self, headers: dict[str, str], block: bytes | None, offset: int) -> None:
        self.headers = headers
        self.block = block
        self.offset = offset

    @property
    def type(self) -> str:
        return self.headers.get("warc-type", "").lower()


def iter_warc_records(stream: BinaryIO, max_block_bytes: int | None = None) -> Iterator[WarcRecord]:
    """Parse WARC records from a decompressed stream; raise ReaderError on a truncated or broken record.

    Offsets are positions in the decompressed stream. A block longer than `max_block_bytes` is read
    past in chunks and its record yielded with `block=None`, so memory stays bounded by the limit.
    """
    offset = 0
    n = 0
    while True:
        try:
            line = stream.readline(_MAX_LINE_BYTES)
        except (EOFError, OSError, zlib.error) as exc:
            raise ReaderError(f"corrupt or truncated compressed stream after {n} complete WARC records: {exc}") from exc
        if not line:
            return
        if not line.strip():
            offset += len(line)
            continue  # blank lines between records
        start = offset
        if not line.startswith(b"WARC/"):
            raise ReaderError(f"not a WARC record at offset {start} (after {n} records): {line[:40]!r}")
        headers: dict[str, str] = {}
        offset += len(line)
        complete = False
        try:
            for _ in range(_MAX_HEADER_LINES):
                line = stream.readline(_MAX_LINE_BYTES)
                offset += len(line)
                if len(line) == _MAX_LINE_BYTES and not line.endswith(b"\n"):
                    raise ReaderError(f"WARC header line over {_MAX_LINE_BYTES} bytes in the record at offset {start}")
                if not line or not line.endswith(b"\n"):
                    break
                if line in (b"\r\n", b"\n"):
                    complete = True
                    break
                name, _, value = line.decode("utf-8", errors="replace").partition(":")
                headers[name.strip().lower()] = value.strip()
        except (EOFError, OSError, zlib.error) as exc:
            raise ReaderError(f"WARC record header truncated at offset {start} after {n} records: {exc}") from exc
        if not complete:
            raise ReaderError(f"WARC record header truncated at offset {start} after {n} complete records")
        declared = headers.get("content-length", "")
        if not (declared.isascii() and declared.isdigit()):
            raise ReaderError(f"WARC record at offset {start} has no valid Content-Length: {declared!r}")
        length = int(declared)
        block: bytes | None = None
        try:
            if max_block_bytes is not None and length > max_block_bytes:
                got = _skip(stream, length)
            else:
                block = stream.read(length)
                got = len(block)
        except (EOFError, OSError, zlib.error) as exc:
            raise ReaderError(f"WARC record body truncated at offset {start} after {n} records: {exc}") from exc
        if got < length:
            raise ReaderError(
                f"WARC record body truncated at offset {start} ({got} of {length} bytes) after {n} records"
            )
        offset += length
        n += 1
        yield WarcRecord(headers, block, start)


def _skip(stream: BinaryIO, length: int) -> int:
    """Read past `length` bytes in bounded chunks; returns how many there were."""
    skipped = 0
    while skipped < length:
        chunk = stream.read(min(_SKIP_CHUNK, length - skipped))
        if not chunk:
            break
        skipped += len(chunk)
    return skipped


def read_common_crawl(source: CommonCrawlSource, unit: WorkUnit) -> Iterator[Document | Dropped]:
    """Yield a Document per HTML response / conversion record, a Dropped per response not kept."""
    extract = _extractor(source)
    with open_decompressed(unit.url) as (stream, _):
        for record in iter_warc_records(stream, source.max_html_bytes + RECORD_HEADROOM):
            kind = record.type
            if kind not in ("response", "conversion", "resource"):
                continue
            doc_id = f"{SOURCE}/{_record_uuid(record.headers.get('warc-record-id', ''))}"
            url = record.headers.get("warc-target-uri")
            date = record.headers.get("warc-date")
            if record.block is None:
                yield Dropped(doc_id, f"{SOURCE}/record_too_large")
                continue
            if kind == "conversion":
                text = record.block.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
            else:
                if kind == "resource" or not record.headers.get("content-type", "").startswith("application/http"):
                    http_headers, body = {}, record.block
                    content_type = record.headers.get("content-type", "")
                else:
                    http_headers, body = _split_http(record.block)
                    content_type = http_headers.get("content-type", "")
                if not _is_html(content_type):
                    yield Dropped(doc_id, f"{SOURCE}/not_html")
                    continue
                body, problem = decode_http_payload(http_headers, body, source.max_html_bytes)
                if problem is None and len(body) > source.max_html_bytes:
                    problem = "html_too_large"
                if problem is not None:
                    yield Dropped(doc_id, f"{SOURCE}/{problem}")
                    continue
                text = extract(decode_html(body, content_type)).strip()
            if not text:
                yield Dropped(doc_id, f"{SOURCE}/empty_extraction")
                continue
            yield Document(id=doc_id, text=text, source=SOURCE, url=url, date=date, origin=unit.url)


def _record_uuid(record_id: str) -> str:
    return record_id.strip().strip("<>").removeprefix("urn:uuid:")


def _is_html(content_type: str) -> bool:
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime in ("text/html", "application/xhtml+xml")


def _split_http(block: bytes) -> tuple[dict[str, str], bytes]:
    """HTTP response headers (names lower-cased) and body."""
    sep = block.find(b"\r\n\r\n")
    skip = 4
    if sep < 0:
        sep, skip = block.find(b"\n\n"), 2
    if sep < 0:
        return {}, b""
    headers: dict[str, str] = {}
    for line in block[:sep].decode("latin-1").splitlines()[1:]:  # first line is the status line
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers, block[sep + skip :]


def decode_http_payload(headers: dict[str, str], body: bytes, max_bytes: int) -> tuple[bytes, str | None]:
    """Undo the transfer and content codings the crawler kept; returns (payload, problem).

    `problem` is None or the drop reason's suffix: `bad_chunking`, `bad_content_encoding`,
    `unsupported_content_encoding`, `html_too_large` (more than `max_bytes` once decompressed; at most
    `max_bytes + 1` bytes are ever produced). On a problem the payload is empty.
    """
    transfer = _codings(headers.get("transfer-encoding", ""))
    if transfer and transfer[-1] == "chunked":
        dechunked = dechunk(body)
        if dechunked is None:
            return b"", "bad_chunking"
        body, transfer = dechunked, transfer[:-1]
    # Codings are applied content first, then transfer, each in the listed order: undo them backwards.
    for coding in reversed(_codings(headers.get("content-encoding", "")) + transfer):
        if coding == "identity" or not body:
            continue  # an empty body is empty whatever coding it claims (servers skip gzip for empty bodies)
        if coding in ("gzip", "x-gzip"):
            wbits = 32 + zlib.MAX_WBITS  # gzip, or a zlib header
        elif coding == "deflate":
            wbits = zlib.MAX_WBITS if _zlib_header(body) else -zlib.MAX_WBITS  # zlib per the RFC, raw in practice
        else:
            return b"", "unsupported_content_encoding"
        try:
            body = inflate_bounded(body, wbits, max_bytes + 1)
        except zlib.error:
            return b"", "bad_content_encoding"
        if len(body) > max_bytes:
            return b"", "html_too_large"
    return body, None


def _codings(value: str) -> list[str]:
    return [c.strip().lower() for c in value.split(",") if c.strip()]


def _zlib_header(data: bytes) -> bool:
    """RFC 1950 header: compression method 8 and a check value making the first two bytes a multiple of 31."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0


def inflate_bounded(data: bytes, wbits: int, max_out: int) -> bytes:
    """Decompress at most `max_out` bytes of a zlib/gzip/deflate stream; `zlib.error` if damaged or cut.

    Stops at `max_out` output bytes (so a bomb costs `max_out` bytes of memory, not its full size);
    a result of exactly `max_out` bytes may be a prefix of a longer payload.
    """
    decomp = zlib.decompressobj(wbits)
    out = decomp.decompress(data, max_out)
    if len(out) < max_out and not decomp.eof:
        raise zlib.error("compressed data ends before the end of its stream")
    return out


_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")


def dechunk(body: bytes) -> bytes | None:
    """Undo chunked transfer coding; None when the body is not well-formed chunked data or is cut short.

    Each chunk is `<hex size>[;extensions]` CRLF, the data, CRLF; a zero-size chunk ends the body
    (trailers after it are ignored). A bare LF is accepted where CRLF is expected.
    """
    out = bytearray()
    pos = 0
    while True:
        eol = body.find(b"\n", pos)
        if eol < 0:
            return None
        size_text = body[pos:eol].rstrip(b"\r").split(b";", 1)[0].strip()
        if not _CHUNK_SIZE.fullmatch(size_text):
            return None
        size = int(size_text, 16)
        pos = eol + 1
        if size == 0:
            return bytes(out)
        if pos + size > len(body):
            return None
        out += body[pos : pos + size]
        pos += size
        if body.startswith(b"\r\n", pos):
            pos += 2
        elif body.startswith(b"\n", pos):
            pos += 1
        else:
            return None


def decode_html(body: bytes, content_type: str = "") -> str:
    """Decode an HTML payload: the HTTP charset if it names a known codec, else detected; never raises."""
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    charset = None
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip("'\"")
    if charset:
        try:
            return body.decode(charset)
        except (LookupError, UnicodeDecodeError):
            pass
    return bytes_to_str(body, detect_encoding(body))


def _extractor(source: CommonCrawlSource):  # noqa: ANN202
    if source.extractor == "trafilatura":
        try:
            import trafilatura
        except ImportError as exc:
            raise ImportError(
                "extractor: trafilatura needs the optional extra: pip install 'lmpipe[extract]'"
            ) from exc

        def extract_trafilatura(html: str) -> str:
            return trafilatura.extract(html, favor_precision=True, include_comments=False) or ""

        return extract_trafilatura

    from resiliparse.extract.html2text import extract_plain_text

    main_content = source.main_content

    def extract_resiliparse(html: str) -> str:
        return extract_plain_text(html, main_content=main_content)

    return extract_resiliparse
