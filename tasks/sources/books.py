"""Books reader: one plain-text file = one Document, Project Gutenberg boilerplate stripped.

Input: a .txt file (any compression, detected from content). Output: `Document(id="books/<path>")`
with the title from the Gutenberg `Title:` line (else the file stem), or `Dropped('books/empty')` when
nothing is left. A book is read in 1 MiB chunks and dropped as `books/too_large` as soon as it passes
`max_book_bytes` decompressed (default 64 MiB; the rest is never decompressed, so a gzip bomb costs at
most the cap); damaged compressed data (a corrupt or truncated .gz) is a `ReaderError`.

Ids: `<path>` is the file's path relative to the source's root, without its extensions
(`books/pg1342`, `books/gutenberg/en/pg1342`), so same-named files in two folders get two ids. The
root is the deepest folder that holds every path pattern of the source: a pattern's folder up to its
first wildcard (`/data/books/*.txt` → `/data/books`), and for several patterns their common folder
(`/data/a/*.txt` + `/data/b/*.txt` → `/data`; ids `books/a/...`, `books/b/...`). A flat folder thus
keeps the plain `books/<file stem>`. Ids depend on the patterns, not on which files exist, and do not
change when the data moves. Hosts and buckets count as leading folders (URL schemes do not); an
http(s) URL's query is ignored. Two sources whose files have the same relative path produce the same
id: the corpus step refuses that (`DuplicateDocumentId`); list both folders in one source instead.

The body is what lies between the header marker (`*** START OF THE/THIS PROJECT
GUTENBERG EBOOK ... ***`, or the old `*END*THE SMALL PRINT...*END*`) and the first footer marker
(`*** END OF ...`, `End of the Project Gutenberg EBook ...`, `End of Project Gutenberg's ...`); a
leading "Produced by ..." credit paragraph is dropped too. Files without markers are kept whole.

Text is UTF-8; a header declaring ISO-8859-1/Latin-1/Windows-1252 is honoured, and invalid bytes
become U+FFFD instead of failing the file. All five real PG books in ../shared/data strip cleanly
(checked by `tests/real_data/test_real_samples_sources.py`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from urllib.parse import urlsplit

from data_specs.sources import BooksSource
from tasks.common.documents import Document, Dropped
from tasks.common.io import DECODE_ERRORS, is_corrupt_data, open_decompressed
from tasks.sources.core import ReaderError, WorkUnit

SOURCE = "books"

_START = re.compile(
    r"^[ \t]*\*{3}[ \t]*START OF (?:THE |THIS )?PROJECT GUTENBERG E-?(?:BOOK|TEXT)[^\n]*$"
    r"|^[ \t]*\*END\*THE SMALL PRINT[^\n]*$",
    re.I | re.M,
)
_END = re.compile(
    r"^[ \t]*\*{3}[ \t]*END OF (?:THE |THIS )?PROJECT GUTENBERG[^\n]*$"
    r"|^[ \t]*End of (?:the |this )?Project Gutenberg(?:'s|’s)?[^\n]*$"
    r"|^[ \t]*End of Project Gutenberg[^\n]*$",
    re.I | re.M,
)
_TITLE = re.compile(r"^[ \t]*Title:[ \t]*(.+?)[ \t]*$", re.M)
_CHARSET = re.compile(r"^[ \t]*Character set encoding:[ \t]*([\w-]+)", re.I | re.M)
_CREDIT = re.compile(r"\A\s*(?:Produced by|This e-?text was produced by|E-text prepared by|Transcribed from)[^\n]*(?:\n[^\n]+)*\n\s*\n", re.I)  # noqa: E501
_HEADER_SCAN = 20_000  # the PG header is a few hundred bytes; markers beyond this are body text
_CHUNK_BYTES = 1 << 20  # decompressed bytes read at a time: memory stays bounded by the cap, not the file


def read_book(source: BooksSource, unit: WorkUnit) -> Iterator[Document | Dropped]:
    """Yield the book as one Document (or one Dropped when it is empty or larger than `max_book_bytes`)."""
    native = book_path(source.paths, unit.url)
    doc_id = f"{SOURCE}/{native}"
    stem = native.rsplit("/", 1)[-1]
    data = read_capped(unit.url, source.max_book_bytes)
    if data is None:
        yield Dropped(doc_id, f"{SOURCE}/too_large")
        return
    text = decode_book(data)
    title = None
    if source.strip_boilerplate:
        text, title = strip_gutenberg(text)
    else:
        m = _TITLE.search(text, 0, _HEADER_SCAN)
        title = m.group(1) if m else None
    text = text.strip()
    if not text:
        yield Dropped(doc_id, f"{SOURCE}/empty")
        return
    yield Document(id=doc_id, text=text, source=SOURCE, title=title or stem, origin=unit.url)


def read_capped(url: str, max_bytes: int) -> bytes | None:
    """The file's decompressed bytes, or None as soon as they pass `max_bytes` (nothing more is decompressed).

    Raises `ReaderError` for damaged compressed data; I/O errors (timeouts, resets) propagate so the unit is
    retried (`is_corrupt_data`).
    """
    chunks: list[bytes] = []
    size = 0
    try:
        with open_decompressed(url) as (stream, _):
            while chunk := stream.read(min(_CHUNK_BYTES, max_bytes + 1 - size)):
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    return None
    except DECODE_ERRORS as exc:
        if not is_corrupt_data(exc):
            raise
        raise ReaderError(f"corrupt or truncated compressed book after {size} bytes: {type(exc).__name__}: {exc}; "
                          "re-download the file or remove it from the source's paths") from exc
    return b"".join(chunks)


def decode_book(data: bytes) -> str:
    """UTF-8 unless the PG header declares a Latin charset; invalid bytes are replaced, never fatal."""
    data = data.removeprefix(b"\xef\xbb\xbf")
    m = _CHARSET.search(data[:_HEADER_SCAN].decode("ascii", errors="replace"))
    declared = m.group(1).lower() if m else ""
    if declared in ("iso-8859-1", "latin-1", "latin1", "iso-8859-15", "windows-1252", "cp1252"):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("cp1252" if "1252" in declared else declared, errors="replace")
    return data.decode("utf-8", errors="replace")


def strip_gutenberg(text: str) -> tuple[str, str | None]:
    """(body, title): the text between the PG header and footer markers; title from the header."""
    text = text.replace("\r\n", "\n")
    header_end = 0
    for m in _START.finditer(text, 0, min(len(text), _HEADER_SCAN)):
        header_end = m.end()
    title_match = _TITLE.search(text, 0, header_end or min(len(text), _HEADER_SCAN))
    title = title_match.group(1) if title_match else None
    end = _END.search(text, header_end)
    body = text[header_end : end.start() if end else len(text)]
    # A two-line "End of the Project Gutenberg EBook of X, by\nAuthor" leaves nothing behind, but a
    # footer marker on its own line after it would; the first marker found is where the body ends.
    body = _CREDIT.sub("", body, count=1)
    return body.strip(), title


def book_path(patterns: Sequence[str], url: str) -> str:
    """The native id of the book at `url`: its path below the common root of `patterns`, extensions removed."""
    roots = [_pattern_root(p) for p in patterns]
    base = roots[0] if roots else []
    for root in roots[1:]:
        n = 0
        while n < min(len(base), len(root)) and base[n] == root[n]:
            n += 1
        base = base[:n]
    parts = _components(url)
    rel = parts[len(base) :] if parts[: len(base)] == base and len(parts) > len(base) else parts
    return "/".join([*rel[:-1], _stem(rel[-1])])


def _components(url: str) -> list[str]:
    """The folders and file name of a path or URL (local paths made absolute, an http query dropped)."""
    if "://" not in url:
        path = os.path.abspath(url)
    else:
        scheme, _, rest = url.partition("://")
        if scheme in ("http", "https"):
            split = urlsplit(url)
            path = split.netloc + "/" + split.path
        else:
            path = rest
    return [c for c in path.split("/") if c]


def _pattern_root(pattern: str) -> list[str]:
    """The folders of a path pattern before its first wildcard (a plain file path: its folder)."""
    parts = _components(pattern)
    for n, part in enumerate(parts):
        if any(c in part for c in "*?["):
            return parts[:n]
    return parts[:-1]


def _stem(name: str) -> str:
    """A file name without its compression and format extensions."""
    for ext in (".gz", ".bz2", ".xz", ".zst", ".zstd"):
        name = name.removesuffix(ext)
    return os.path.splitext(name)[0] or name
