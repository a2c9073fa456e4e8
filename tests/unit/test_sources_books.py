"""Books reader: Gutenberg stripping, titles, charsets, empty and very large files."""

from __future__ import annotations

import gzip
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_specs.sources import BooksSource
from tasks.common.documents import Document, Dropped
from tasks.sources.books import book_path, decode_book, strip_gutenberg
from tasks.sources.core import ReaderError, plan_units, read_unit

BOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "sample_corpus" / "books"

HEADER = "The Project Gutenberg EBook of Tiny, by Nobody\n\nTitle: Tiny Tales\n\n*** START OF THE PROJECT GUTENBERG EBOOK TINY ***\n"
FOOTER = "\nEnd of Project Gutenberg's Tiny, by Nobody\n\n*** END OF THE PROJECT GUTENBERG EBOOK TINY ***\nlicence text\n"


def read_all(paths, **kw):
    source = BooksSource(kind="books", paths=[str(p) for p in paths], **kw)
    units, problems = plan_units(source, 0)
    assert not problems
    return [r for u in units for r in read_unit(source, u)]


def test_sample_books():
    records = read_all([BOOKS / "*.txt"])
    assert [r.id for r in records] == ["books/a-summer-in-the-orchard", "books/letters-from-the-north", "books/the-lantern-keeper"]
    for doc in records:
        assert isinstance(doc, Document) and doc.source == "books"
        assert "Gutenberg" not in doc.text and "Produced by" not in doc.text and "LICENSE" not in doc.text
        assert doc.text.startswith(doc.title.upper()) and len(doc.text.split()) > 1500
    assert records[2].title == "The Lantern Keeper"


def test_old_style_small_print_and_no_markers(tmp_path):
    old = "Title: Old\n*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n\nOnce upon a time.\n\nEnd of the Project Gutenberg Etext of Old\n"
    assert strip_gutenberg(old) == ("Once upon a time.", "Old")
    (tmp_path / "plain.txt").write_text("Just a story.\n")
    (doc,) = read_all([tmp_path / "plain.txt"])
    assert doc.text == "Just a story." and doc.title == "plain"


def test_invalid_utf8_latin1_and_empty(tmp_path):
    (tmp_path / "bad.txt").write_bytes((HEADER + "caf").encode() + b"\xff\xfe ok" + FOOTER.encode())
    (tmp_path / "latin.txt").write_bytes(("Character set encoding: ISO-8859-1\n" + HEADER + "café" + FOOTER).encode("latin-1"))
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "onlyboiler.txt").write_text(HEADER + FOOTER)
    bad, empty, latin, only = read_all([tmp_path / "*.txt"])
    assert bad.text == "caf\ufffd\ufffd ok" and bad.title == "Tiny Tales"
    assert latin.text == "café"
    assert empty == Dropped("books/empty", "books/empty") and only == Dropped("books/onlyboiler", "books/empty")


def test_keep_boilerplate_option(tmp_path):
    (tmp_path / "b.txt").write_text(HEADER + "Body." + FOOTER)
    (doc,) = read_all([tmp_path / "b.txt"], strip_boilerplate=False)
    assert "START OF THE PROJECT GUTENBERG" in doc.text and doc.title == "Tiny Tales"


def test_20mb_book(tmp_path):
    line = "It was a bright cold day in April, and the clocks were striking the hour once more.\n"
    (tmp_path / "big.txt").write_text(HEADER + line * (20_000_000 // len(line)) + FOOTER)
    start = time.perf_counter()
    (doc,) = read_all([tmp_path / "big.txt"])
    assert len(doc.text) > 19_000_000 and "END OF" not in doc.text[-200:]
    assert time.perf_counter() - start < 10


def test_ids_are_paths_below_the_source_root(tmp_path):
    # Before: `books/<file stem>`, so a.txt in two folders of one source were both `books/a`.
    for folder in ("f1", "f2", "f2/deep"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / folder / "a.txt.gz").write_bytes(gzip.compress(f"Book in {folder}.".encode()))
    two_folders = read_all([tmp_path / "f1" / "*.gz", tmp_path / "f2" / "**" / "*.gz"])
    assert [r.id for r in two_folders] == ["books/f1/a", "books/f2/a", "books/f2/deep/a"]
    assert two_folders[0].title == "a" and two_folders[0].text == "Book in f1."
    assert [r.id for r in read_all([tmp_path / "f1" / "a.txt.gz"])] == ["books/a"]  # a file: its folder is the root
    assert [r.id for r in read_all([tmp_path / "*" / "*.gz"])] == ["books/f1/a", "books/f2/a"]


def test_book_path_for_urls():
    assert book_path(["s3://bucket/pg/*.txt"], "s3://bucket/pg/en/1342.txt") == "en/1342"
    assert book_path(["https://h.org/b/1.txt?x=1", "https://h.org/c/*.txt"], "https://h.org/b/1.txt?x=1") == "b/1"
    assert book_path(["https://a.org/1.txt", "https://b.org/1.txt"], "https://b.org/1.txt") == "b.org/1"


def _gzip_bomb(path, total=1 << 30, member=16 << 20):
    """A ~1 MB .gz that decompresses to `total` bytes of text: one gzip member repeated (gzip reads them all)."""
    line = b"All work and no play makes Jack a dull boy.\n"
    one = gzip.compress(line * (member // len(line)), compresslevel=9)
    path.write_bytes(one * (total // member))
    return path


def test_gzip_bomb_is_dropped_with_bounded_memory(tmp_path):
    # Before: `stream.read()` decompressed the whole 1 GiB into memory (then decoded it to a 1 GiB str).
    bomb = _gzip_bomb(tmp_path / "bomb.txt.gz")
    assert bomb.stat().st_size < 4 << 20
    code = (
        "import sys\n"
        "from data_specs.sources import BooksSource\n"
        "from tasks.sources.core import plan_units, read_unit\n"
        "source = BooksSource(kind='books', paths=[sys.argv[1]])\n"
        "(unit,), _ = plan_units(source, 0)\n"
        "records = [(type(r).__name__, r.id, getattr(r, 'reason', None)) for r in read_unit(source, unit)]\n"
        # The peak of this process's own memory (VmHWM, kB). Not getrusage's ru_maxrss: Linux carries that across
        # fork + exec, so the child would report the pytest parent's size.
        "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) // 1024)\n"
        "print(records)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(bomb)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    peak_mib, records = out.stdout.strip().splitlines()
    assert int(peak_mib) < 400, f"peak RSS {peak_mib} MiB reading a 1 GiB gzip bomb (about 100 MiB expected)"
    assert records == "[('Dropped', 'books/bomb', 'books/too_large')]"


def test_cap_boundary(tmp_path):
    body = "Chapter one. " * 100
    (tmp_path / "fits.txt.gz").write_bytes(gzip.compress(body.encode()))
    (tmp_path / "over.txt").write_text(body + "!")
    fits, over = read_all([tmp_path / "fits.txt.gz", tmp_path / "over.txt"], max_book_bytes=len(body))
    assert isinstance(fits, Document) and fits.text == body.strip()  # exactly at the cap: kept
    assert over == Dropped("books/over", "books/too_large")


def test_corrupt_gzip_is_a_reader_error(tmp_path):
    # Before: the decompressor's EOFError / BadGzipFile escaped the reader as a crash, not a corrupt input.
    body = "Chapter one. " * 100
    good = gzip.compress(body.encode() * 1000)
    damaged = {"truncated": good[: len(good) // 2], "flipped": good[:40] + bytes([good[40] ^ 0xFF]) + good[41:]}
    for name, data in damaged.items():
        (tmp_path / f"{name}.txt.gz").write_bytes(data)
        with pytest.raises(ReaderError, match="corrupt or truncated compressed book"):
            read_all([tmp_path / f"{name}.txt.gz"])


def test_chunked_read_decodes_as_before(tmp_path):
    # Many 1 MiB chunks, a UTF-8 BOM, a declared Latin-1 header and a UTF-16 BOM: the text is what
    # `decode_book` gives for the whole file at once (multi-byte characters split across chunks included).
    samples = {
        "bom": b"\xef\xbb\xbf" + ("é" * 1_500_000).encode(),  # 3 MB of 2-byte characters
        "latin": ("Character set encoding: ISO-8859-1\n" + "café " * 400_000).encode("latin-1"),
        "utf16": "\ufeffHello".encode("utf-16-le"),
    }
    for name, data in samples.items():
        (tmp_path / f"{name}.txt").write_bytes(data)
        (doc,) = read_all([tmp_path / f"{name}.txt"], strip_boilerplate=False)
        assert doc.text == decode_book(data).strip(), name
