"""Books reader: Gutenberg stripping, titles, charsets, empty and very large files."""

from __future__ import annotations

import gzip
import time
from pathlib import Path

from data_specs.sources import BooksSource
from tasks.common.documents import Document, Dropped
from tasks.sources.books import book_path, strip_gutenberg
from tasks.sources.core import plan_units, read_unit

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
