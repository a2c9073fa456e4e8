"""The decompressed bytes of a Wikipedia dump's work unit, for the page scanner in `wikipedia.py`.

A whole file is decompressed by content (bz2 multistream, xz, gz, zstd or none); a byte range [start, end) of
uncompressed XML is read as it is, and of a bz2 multistream dump from the first bz2 stream that starts in it
(a stream header `BZh[1-9]` followed by the block magic `1AY&SY`, verified by decompressing). Every chunk comes
with how many of its leading bytes the unit owns. Decompressed pieces are at most CHUNK_BYTES: a few KB of bz2
can hold a GB of text. Only decompressor errors mean damage; I/O errors propagate (the unit is retried).
"""

from __future__ import annotations

import bz2
import re
from collections.abc import Iterator

from tasks.common.io import DECODE_ERRORS, is_corrupt_data, open_decompressed, open_raw, sniff_compression
from tasks.sources.core import ReaderError, WorkUnit

CHUNK_BYTES = 1 << 20
_BZ2_STREAM = re.compile(rb"BZh[1-9]1AY&SY")  # stream header + first block magic (pi in BCD)


def decompressed_chunks(unit: WorkUnit) -> Iterator[tuple[bytes, int]]:
    """Decompressed chunks of the unit, each with how many of its leading bytes the unit owns."""
    if unit.start is None and unit.end is None:
        with open_decompressed(unit.url) as (stream, _):
            # read1: one raw read per call, so data decoded before a damaged part is returned before the
            # error (read(n) of a buffered decompressor loses it when a later raw read raises)
            read = getattr(stream, "read1", stream.read)
            while chunk := read(CHUNK_BYTES):
                yield chunk, len(chunk)
        return
    start, end = unit.start or 0, unit.end
    with open_raw(unit.url) as raw:
        head = raw.read(8)
        compression = sniff_compression(head)
        if compression == "none":
            raw.seek(start)
            pos = start
            while chunk := raw.read(CHUNK_BYTES):
                owned = len(chunk) if end is None else max(0, min(len(chunk), end - pos))
                pos += len(chunk)
                yield chunk, owned
        elif compression == "bz2":
            yield from _bz2_range(raw, start, end)
        else:
            raise ReaderError(f"{compression} input cannot be read by byte range; use split_bytes: null")


def _bz2_range(raw, start: int, end: int | None) -> Iterator[tuple[bytes, int]]:  # noqa: ANN001
    """Decode the bz2 streams that start in [start, end), then the following ones (not owned).

    Output comes in pieces of at most CHUNK_BYTES (`max_length`): a few KB of bz2 can hold a GB of text.
    """
    stream_start = _next_bz2_stream(raw, start, end)
    if stream_start is None:
        return
    raw.seek(stream_start)
    pending = b""
    while True:
        decomp = bz2.BZ2Decompressor()
        owned = end is None or stream_start < end
        fed = 0  # compressed bytes given to this stream's decompressor
        while not decomp.eof:
            if decomp.needs_input:
                if not pending:
                    pending = raw.read(CHUNK_BYTES)
                    if not pending:
                        raise ReaderError(f"truncated bz2 stream starting at byte {stream_start}")
                fed += len(pending)
                out = decomp.decompress(pending, max_length=CHUNK_BYTES)
                pending = b""
            else:
                out = decomp.decompress(b"", max_length=CHUNK_BYTES)
            if out:
                yield out, len(out) if owned else 0
        pending = decomp.unused_data
        stream_start += fed - len(pending)  # the next stream starts where this one's data ended
        if not pending:
            pending = raw.read(CHUNK_BYTES)
            if not pending:
                return
        if not pending.startswith(b"BZh"):
            raise ReaderError(f"unexpected bytes after the bz2 stream ending at byte {stream_start}")


def _next_bz2_stream(raw, start: int, end: int | None) -> int | None:  # noqa: ANN001
    """File offset of the first verified bz2 stream header at or after `start` (and before `end`)."""
    window = 1 << 20
    offset = start
    carry = b""
    while end is None or offset < end:
        raw.seek(offset)
        data = carry + raw.read(window)
        base = offset - len(carry)
        if len(data) <= len(carry):
            return None
        for m in _BZ2_STREAM.finditer(data):
            cand = base + m.start()
            if end is not None and cand >= end:
                return None
            if cand >= start and _verify_bz2(raw, cand):
                return cand
        offset += len(data) - len(carry)
        carry = data[-9:]
    return None


def _verify_bz2(raw, offset: int) -> bool:  # noqa: ANN001
    """A real stream header decompresses; a byte pattern inside compressed data does not.

    Only a decompressor error means "no stream here": an I/O error while reading (a timeout, a reset)
    propagates, or a real stream would be skipped and its pages silently lost.
    """
    raw.seek(offset)
    decomp = bz2.BZ2Decompressor()
    while True:
        data = raw.read(64 << 10)
        if not data:
            return decomp.eof
        try:
            if decomp.decompress(data, max_length=1) or decomp.eof:
                return True
        except DECODE_ERRORS as exc:
            if is_corrupt_data(exc):
                return False
            raise
