"""HTTP payloads kept in WARC response records: split the message, undo its codings, sniff stale headers.

`decode_http_payload(headers, body, max_bytes)` returns a `Payload`: the decoded bytes, a drop reason's
suffix when the body cannot be decoded (then the bytes are empty), and notes for headers that did not
describe the body. Every rule decodes what is really encoded and never passes compressed or framed
bytes on as text.

Why sniff: many crawlers store the *decoded* payload but keep the server's `Transfer-Encoding: chunked`
or `Content-Encoding: gzip` header (Internet Archive/Heritrix captures replayed by pywb, ClueWeb09, some
wget WARCs). warcio reads such records whole: its `ChunkedDataReader` treats a body whose first line is
not a chunk-size line as not chunked, and its `BufferedReader` treats a body that fails to decompress
on the first block as not compressed. This module does the same, stricter where warcio would pass
damaged data on:
- `Transfer-Encoding: chunked`: a body whose first line is not a chunk-size line (hex digits,
  optional `;extensions`) is read as identity under a stale header: note `stale_transfer_encoding`.
  A body that starts as chunked data must be well formed to the end: a size line that is not hex, a
  chunk cut short or a missing last (zero) chunk is `bad_chunking` (warcio keeps the chunks before
  the damage and appends the rest raw, or silently ends at a cut; a cut page is not the page).
  A bare LF is accepted where CRLF is expected (warcio requires CRLF).
- `Content-Encoding` (and transfer codings other than chunked), undone last applied first:
  - gzip/x-gzip: a body with the gzip magic (1f 8b) is gzip, and damaged or truncated gzip is
    `bad_content_encoding` whatever else it looks like (text never starts with 0x1f).
    Otherwise a zlib stream (RFC 1950 header) is accepted, as servers send that too.
  - deflate: zlib (per the RFC) or raw deflate (what servers send in practice), as warcio tries;
    gzip data under a `deflate` header is read as gzip (warcio would pass it on raw). Raw deflate has
    no checksum, so a raw stream that ends before its body does is damaged (warcio keeps the prefix).
  - A body that none of these decode is identity under a stale header (note `stale_content_encoding`)
    when it looks like plain text (`looks_plain`), and `bad_content_encoding` otherwise. Damaged
    compressed data is binary, so it is never taken for text (warcio would pass it on raw when the
    damage is in its first 16 KB block).
  - Any other coding (`br`, `zstd`, `compress`, a garbage value): a body that looks like plain text is
    identity with the note `stale_content_encoding` (warcio reads unknown codings as identity);
    a binary one is `unsupported_content_encoding`.
  - `identity`, or an empty body, needs no decoding.
- Decompression never makes more than `max_bytes + 1` bytes (`zlib.decompressobj` with `max_length`):
  a larger payload, a gzip bomb included, is `html_too_large` with memory bounded by the limit.

A note is not a drop: the payload is kept, and the reader carries the notes on its `Document`.
"""

from __future__ import annotations

import re
import zlib
from typing import NamedTuple

NOTE_STALE_TRANSFER = "stale_transfer_encoding"
NOTE_STALE_CONTENT = "stale_content_encoding"

_SNIFF_BYTES = 1024  # how much of a body `looks_plain` reads
# Bytes that plain text does not contain: C0 controls except tab, LF, FF, CR and ESC (ISO-2022 uses it),
# and DEL. Compressed data is close to uniform, so 1 KB of it holds about 110 of these bytes; the chance
# that a compressed body of n >= 200 bytes has none is (228/256)^n < 1e-10.
_CONTROL = bytes([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20), 0x7F])
_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")  # UTF-16/32 text is full of NUL bytes
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")


class Payload(NamedTuple):
    """A decoded HTTP payload: `problem` is a drop reason's suffix (then `body` is empty), `notes` the
    stale headers read past (`stale_transfer_encoding`, `stale_content_encoding`)."""

    body: bytes
    problem: str | None = None
    notes: tuple[str, ...] = ()


def split_http(block: bytes) -> tuple[dict[str, str], bytes]:
    """HTTP response headers (names lower-cased) and body; ({}, b"") when there is no header end."""
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


def decode_http_payload(headers: dict[str, str], body: bytes, max_bytes: int) -> Payload:
    """Undo the transfer and content codings the crawler kept, sniffing each against the body.

    `problem` is None or one of `bad_chunking`, `bad_content_encoding`, `unsupported_content_encoding`,
    `html_too_large` (more than `max_bytes` once decompressed; at most `max_bytes + 1` bytes are ever
    produced). See the module docstring for the rules.
    """
    notes: list[str] = []
    transfer = codings(headers.get("transfer-encoding", ""))
    if transfer and transfer[-1] == "chunked":
        transfer = transfer[:-1]
        if starts_chunked(body):
            dechunked = dechunk(body)
            if dechunked is None:
                return Payload(b"", "bad_chunking")
            body = dechunked
        else:
            notes.append(NOTE_STALE_TRANSFER)
    # Codings are applied content first, then transfer, each in the listed order: undo them backwards.
    for coding in reversed(codings(headers.get("content-encoding", "")) + transfer):
        if coding == "identity" or not body:
            continue  # an empty body is empty whatever coding it claims (servers skip gzip for empty bodies)
        decoded, problem = _decode_coding(coding, body, max_bytes)
        if problem is not None:
            return Payload(b"", problem)
        if decoded is None:
            if NOTE_STALE_CONTENT not in notes:
                notes.append(NOTE_STALE_CONTENT)
            continue
        if len(decoded) > max_bytes:
            return Payload(b"", "html_too_large")
        body = decoded
    return Payload(body, None, tuple(notes))


def _decode_coding(coding: str, body: bytes, max_bytes: int) -> tuple[bytes | None, str | None]:
    """One content coding: (decoded, None), (None, None) for a plain body under a stale header, or
    (None, problem)."""
    if coding not in ("gzip", "x-gzip", "deflate"):
        return None, (None if looks_plain(body) else "unsupported_content_encoding")
    if body.startswith(_GZIP_MAGIC):  # gzip (also sent as "deflate" by some servers): strict
        try:
            return inflate_bounded(body, 16 + zlib.MAX_WBITS, max_bytes + 1), None
        except zlib.error:
            return None, "bad_content_encoding"
    attempts = [zlib.MAX_WBITS] if zlib_header(body) else []
    if coding == "deflate":
        attempts.append(-zlib.MAX_WBITS)  # raw deflate: what servers send in practice
    for wbits in attempts:
        try:
            return inflate_bounded(body, wbits, max_bytes + 1), None
        except zlib.error:
            continue
    return None, (None if looks_plain(body) else "bad_content_encoding")


def looks_plain(body: bytes) -> bool:
    """True when the first KB of `body` holds no byte that text lacks (or starts with a UTF-16/32 BOM).

    The sniff that tells a decoded payload under a stale coding header from compressed or damaged data.
    """
    head = body[:_SNIFF_BYTES]
    if head.startswith(_UTF16_32_BOMS):
        return True
    return len(head.translate(None, _CONTROL)) == len(head)


def codings(value: str) -> list[str]:
    """The codings of a Transfer-Encoding / Content-Encoding value, lower-cased, in order."""
    return [c.strip().lower() for c in value.split(",") if c.strip()]


def zlib_header(data: bytes) -> bool:
    """RFC 1950 header: compression method 8 and a check value making the first two bytes a multiple of 31."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0


def inflate_bounded(data: bytes, wbits: int, max_out: int) -> bytes:
    """Decompress at most `max_out` bytes of a zlib/gzip/deflate stream; `zlib.error` if damaged or cut.

    Stops at `max_out` output bytes (so a bomb costs `max_out` bytes of memory, not its full size);
    a result of exactly `max_out` bytes may be a prefix of a longer payload. Bytes after the end of a
    gzip or zlib stream are ignored (their checksums vouch for what came before). Raw deflate has no
    checksum: damaged data can end early as a valid stream, so a raw stream that ends before the body
    does (anything but whitespace left over) is an error.
    """
    decomp = zlib.decompressobj(wbits)
    out = decomp.decompress(data, max_out)
    if len(out) < max_out and not decomp.eof:
        raise zlib.error("compressed data ends before the end of its stream")
    if wbits < 0 and decomp.eof and decomp.unused_data.strip():
        raise zlib.error(f"raw deflate stream ends {len(decomp.unused_data)} bytes before the body")
    return out


def _chunk_size(line: bytes) -> int | None:
    """The size of a chunk-size line (`<hex>[;extensions]`, CR optional), None if it is not one."""
    size_text = line.rstrip(b"\r").split(b";", 1)[0].strip()
    return int(size_text, 16) if _CHUNK_SIZE.fullmatch(size_text) else None


def starts_chunked(body: bytes) -> bool:
    """True when the body's first line is a chunk-size line: the body is chunked data (maybe damaged).

    A body without any newline is judged on all of it (a chunked body cut inside its first size line).
    """
    eol = body.find(b"\n")
    return _chunk_size(body if eol < 0 else body[:eol]) is not None


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
        size = _chunk_size(body[pos:eol])
        if size is None:
            return None
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
