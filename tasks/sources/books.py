"""Books reader: one plain-text file = one Document, Project Gutenberg boilerplate stripped.

Input: a .txt file (any compression, detected from content). Output: `Document(id="books/<file stem>")`
with the title from the Gutenberg `Title:` line (else the file stem), or `Dropped('books/empty')` when
nothing is left. The body is what lies between the header marker (`*** START OF THE/THIS PROJECT
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
from collections.abc import Iterator
from urllib.parse import urlsplit

from data_specs.sources import BooksSource
from tasks.common.documents import Document, Dropped
from tasks.common.io import open_decompressed
from tasks.sources.core import WorkUnit

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


def read_book(source: BooksSource, unit: WorkUnit) -> Iterator[Document | Dropped]:
    """Yield the book as one Document (or one Dropped when it is empty)."""
    with open_decompressed(unit.url) as (stream, _):
        data = stream.read()
    stem = _stem(unit.url)
    doc_id = f"{SOURCE}/{stem}"
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


def _stem(url: str) -> str:
    path = urlsplit(url).path if "://" in url else url
    name = os.path.basename(path)
    for ext in (".gz", ".bz2", ".xz", ".zst", ".zstd"):
        name = name.removesuffix(ext)
    return os.path.splitext(name)[0] or name
