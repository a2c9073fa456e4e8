"""fsspec I/O helpers: expand globs, open any URL with compression detected from content,
and fingerprint inputs so reruns recognise finished work.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Literal

import fsspec
import zstandard
from fsspec.core import url_to_fs

from tasks.common.durable import replace_durably

Compression = Literal["bz2", "xz", "gz", "zstd", "none"]

# Magic numbers at the start of each container format.
_MAGIC: tuple[tuple[bytes, Compression], ...] = (
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x1f\x8b", "gz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)

_GLOB_CHARS = set("*?[")

# A file modified this close to its hashing may change again within the same mtime tick without its
# (size, mtime) showing it (git's "racy clean" problem): such a hash is used but not remembered.
_RACY_NS = 2_000_000_000


class InputError(Exception):
    """An input that cannot be read at all (missing, empty pattern, unreadable)."""


# What decompressors raise on damaged or truncated data: bz2 a plain `OSError` ("Invalid data stream") and
# `EOFError`, gzip `BadGzipFile` (an OSError) and `EOFError`, zlib `zlib.error`, xz `LZMAError`, zstd `ZstdError`.
# Use it in `except` clauses together with `is_corrupt_data`, which tells these from I/O errors.
DECODE_ERRORS: tuple[type[BaseException], ...] = (EOFError, OSError, zlib.error, lzma.LZMAError, zstandard.ZstdError)


def is_corrupt_data(exc: BaseException) -> bool:
    """True when `exc` says the *bytes* are damaged (a decompressor or framing error): the input is corrupt.

    False for everything else, above all I/O errors: a timeout (`TimeoutError`, fsspec's `FSTimeoutError`), a
    connection reset (`ConnectionError`, aiohttp's `ClientError`s), a file error with an errno, `MemoryError`.
    Those say nothing about the input, so a reader lets them propagate and the unit is retried, instead of
    reporting a healthy input as corrupt and shipping it partial. A plain `OSError` without an errno is what
    `bz2` raises for an invalid stream; `gzip.BadGzipFile` is gzip's.
    """
    if isinstance(exc, (EOFError, zlib.error, lzma.LZMAError, zstandard.ZstdError, gzip.BadGzipFile)):
        return True
    return type(exc) is OSError and exc.errno is None


def sniff_compression(head: bytes) -> Compression:
    """Compression format from the first bytes of a file, never from its name."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return "none"


def expand_paths(patterns: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Expand globs and URLs into a sorted, de-duplicated list of file URLs.

    Returns `(files, problems)`: a pattern matching nothing, or a path that does not exist, is a
    problem `(pattern, error)` for the manifest, never an exception that stops the run.
    """
    files: list[str] = []
    problems: list[tuple[str, str]] = []
    for pattern in patterns:
        try:
            fs, path = url_to_fs(pattern)
            protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
            if any(c in _GLOB_CHARS for c in path) and protocol not in ("http", "https"):
                matched = sorted(fs.glob(path))
                matched = [m for m in matched if not fs.isdir(m)]
                if not matched:
                    problems.append((pattern, "no files match this pattern"))
                files.extend(_unstrip(fs, m) for m in matched)
            elif protocol in ("http", "https") or fs.exists(path):
                files.append(pattern if protocol in ("http", "https") else _unstrip(fs, path))
            else:
                problems.append((pattern, "file not found"))
        except Exception as exc:  # noqa: BLE001 - a bad pattern is reported, not fatal
            problems.append((pattern, f"{type(exc).__name__}: {exc}"))
    seen: set[str] = set()
    unique = [f for f in files if not (f in seen or seen.add(f))]
    return unique, problems


def _unstrip(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """Turn a filesystem-relative path back into a URL (local paths stay plain paths)."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        return os.path.abspath(path)
    return fs.unstrip_protocol(path)


def file_size(url: str) -> int | None:
    """Size in bytes, or None when the server does not say."""
    fs, path = url_to_fs(url)
    try:
        size = fs.info(path).get("size")
    except Exception:  # noqa: BLE001
        return None
    return int(size) if size is not None else None


def content_fingerprint(url: str, chunk_bytes: int = 4 << 20) -> str:
    """Identify the content of an input file, so reruns skip it only when it is unchanged.

    Local files are hashed in full (sha256, about 1 GB/s); remote files use the store's own
    checksum (ETag, md5, crc; the Hub's git blob id) with the size when it has one, and are hashed in full otherwise.
    """
    fs, path = url_to_fs(url)
    info = fs.info(path)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol not in ("file", "local"):
        for key in ("ETag", "etag", "md5Hash", "md5", "crc32c", "checksum", "blob_id"):
            if info.get(key):
                return f"{key}:{str(info[key]).strip(chr(34))}:{info.get('size')}"
    digest = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def fingerprint_cache_dir() -> Path:
    """Where local files' fingerprints are remembered: `$LMPIPE_STATE_DIR/fingerprints`, else the user's
    cache (`$XDG_CACHE_HOME/lmpipe/fingerprints`, default `~/.cache/lmpipe/fingerprints`)."""
    state = os.environ.get("LMPIPE_STATE_DIR")
    if state:
        return Path(state) / "fingerprints"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lmpipe" / "fingerprints"


def _file_stamp(path: str) -> dict[str, int | str]:
    """What must be unchanged for a remembered hash to still hold: path, inode, size, mtime and ctime in ns.

    The ctime matters because the mtime can be set back: `cp -p`, `touch -r` or `rsync -t` write new bytes of the
    same size under the old mtime (and, for `cp -p` onto an existing file, the same inode), but nothing sets
    the ctime, which moves on every write and every mtime change."""
    st = os.stat(path)
    return {"path": path, "inode": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns}


def write_text_atomically(target: Path, text: str) -> None:
    """Write through a temporary file and a durable rename, so a concurrent reader (or a rerun after a power loss)
    sees old or new, never half."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        replace_durably(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached_content_fingerprint(url: str) -> str:
    """`content_fingerprint`, remembered for local files so a rerun on unchanged files hashes nothing.

    The hash of a local file is stored in `fingerprint_cache_dir()` (one small JSON file per path,
    written atomically, so concurrent runs are safe) under its path, inode, size, mtime_ns and ctime_ns;
    it is reused while all five are unchanged. A file modified less than 2 s before hashing is not remembered
    (its mtime could still move within one tick). Remote files use their store's ETag/size as before.
    A cache that cannot be read or written only costs a re-hash.
    """
    fs, path = url_to_fs(url)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol not in ("file", "local"):
        return content_fingerprint(url)
    path = os.path.abspath(path)
    stamp = _file_stamp(path)
    entry = fingerprint_cache_dir() / (hashlib.sha256(path.encode()).hexdigest()[:32] + ".json")
    try:
        cached = json.loads(entry.read_text())
        if cached.get("stamp") == stamp and isinstance(cached.get("fingerprint"), str):
            return cached["fingerprint"]
    except (OSError, ValueError, AttributeError):
        pass
    started = time.time_ns()
    fingerprint = content_fingerprint(path)
    if _file_stamp(path) == stamp and int(stamp["mtime_ns"]) < started - _RACY_NS:
        try:
            write_text_atomically(entry, json.dumps({"stamp": stamp, "fingerprint": fingerprint}))
        except OSError:
            pass
    return fingerprint


def decompressing_reader(raw: BinaryIO, compression: Compression) -> BinaryIO:
    """Wrap a raw byte stream in a streaming decompressor (multi-stream/multi-member aware)."""
    if compression == "bz2":
        return bz2.BZ2File(raw)  # reads concatenated streams: multistream dumps work
    if compression == "xz":
        return lzma.LZMAFile(raw)
    if compression == "gz":
        return gzip.GzipFile(fileobj=raw)  # reads concatenated members: per-record WARC gzip works
    if compression == "zstd":
        # The zstd reader has no readline (`UnsupportedOperation`): buffer it, as the other decompressors are.
        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        return io.BufferedReader(reader)  # type: ignore[arg-type, return-value]
    return raw


@contextmanager
def open_raw(url: str) -> Iterator[BinaryIO]:
    """Open a URL for binary reading without decompressing (seekable when the store allows)."""
    fs, path = url_to_fs(url)
    with fs.open(path, "rb") as f:
        yield f


@contextmanager
def open_decompressed(url: str) -> Iterator[tuple[BinaryIO, Compression]]:
    """Open a URL and decompress it by content: yields `(stream, compression)`."""
    with open_raw(url) as raw:
        buffered = raw if hasattr(raw, "peek") else io.BufferedReader(raw)  # type: ignore[arg-type]
        head = buffered.peek(8)[:8]
        compression = sniff_compression(head)
        stream = decompressing_reader(buffered, compression)
        try:
            yield stream, compression
        finally:
            if stream is not buffered:
                stream.close()
