"""Bad input never stops a run: good inputs are processed, bad ones are listed with a clear error,
and the CLI exits non-zero."""

from __future__ import annotations

import random
import time

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.curate import curate
from tests.conftest import SAMPLE_CORPUS
from tests.flows.helpers import write_spec

PROSE = (
    "The river valley was settled by farmers who grew wheat and barley along the banks. Over the centuries "
    "the villages grew into market towns, and the towns were joined by roads that the merchants used to "
    "carry wool, salt and timber to the coast. "
)


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    inputs = root / "in"
    inputs.mkdir()
    wiki = (SAMPLE_CORPUS / "wiki").glob("*.xml.bz2").__next__().read_bytes()
    (inputs / "truncated.xml.bz2").write_bytes(wiki[: int(len(wiki) * 0.6)])
    (inputs / "empty.xml").write_bytes(b"")
    (inputs / "garbage.warc.gz").write_bytes(b"\x1f\x8b\x08\x00" + random.Random(0).randbytes(4000))
    (inputs / "latin1-book.txt").write_bytes(
        ("Title: A Latin-1 Book\n\n" + PROSE * 40).encode("utf-8") + b"\xff\xfe caf\xe9 na\xefve " + PROSE.encode() * 5
    )
    big = (PROSE * (20_000_000 // len(PROSE) + 1))[:20_000_000]
    (inputs / "huge-book.txt").write_text("Title: One Huge Document\n\n" + big)
    sources = [
        {"kind": "wikipedia", "paths": [str(inputs / "truncated.xml.bz2"), str(inputs / "empty.xml"),
                                        str(inputs / "missing-dump.xml.bz2")]},
        {"kind": "common_crawl", "paths": [str(inputs / "garbage.warc.gz")]},
        {"kind": "books", "paths": [str(inputs / "*.txt")]},
    ]
    spec = write_spec(root / "spec.yaml", root / "out", sources=sources)
    started = time.perf_counter()
    manifest = curate(str(spec))
    return root, spec, manifest, time.perf_counter() - started


def _kept(root) -> list[dict]:  # noqa: ANN001
    return pq.read_table(root / "out" / "data", columns=["id", "title", "source", "text"]).to_pylist()


def test_run_finishes_and_lists_each_bad_input(bad_run):
    _, _, manifest, _ = bad_run
    failed = {f["input"].rsplit("/", 1)[-1]: f for f in manifest["failed_inputs"]}
    assert set(failed) == {"missing-dump.xml.bz2", "empty.xml", "garbage.warc.gz", "truncated.xml.bz2"}
    assert (failed["missing-dump.xml.bz2"]["error"], failed["missing-dump.xml.bz2"]["documents_read"]) == (
        "file not found", 0)
    assert failed["garbage.warc.gz"]["error"].startswith("ReaderError: ")
    assert failed["garbage.warc.gz"]["documents_read"] == 0
    for entry in manifest["failed_inputs"]:
        assert entry["error"] and len(entry["error"]) > 10  # a message, not just a class name
    assert manifest["counts"] == {"documents_in": 8, "kept": 5, "dropped": 3, "duplicates_removed": 0,
                                  "failed_inputs": 4}


def test_empty_xml_is_a_failed_input_with_nothing_read(bad_run):
    _, _, manifest, _ = bad_run
    (entry,) = [f for f in manifest["failed_inputs"] if f["input"] == "empty.xml"]
    assert entry["error"] == "ReaderError: empty input: no siteinfo header and no pages"
    assert entry["documents_read"] == 0
    (unit,) = [i for i in manifest["inputs"] if i["label"] == "empty.xml"]
    assert (unit["documents_in"], unit["kept"], unit["error"]) == (0, 0, entry["error"])


def test_truncated_dump_keeps_complete_pages_before_the_cut(bad_run):
    root, _, manifest, _ = bad_run
    (truncated,) = [f for f in manifest["failed_inputs"] if f["input"] == "truncated.xml.bz2"]
    assert truncated["error"].startswith("ReaderError: ") and "after 6 complete pages" in truncated["error"]
    assert truncated["documents_read"] == 6  # 6 pages before the cut: 4 articles, 1 redirect, 1 other namespace
    assert manifest["drop_reasons"] == {"clean/too_long": 1, "wikipedia/namespace": 1, "wikipedia/redirect": 1}
    titles = {d["title"] for d in _kept(root) if d["source"] == "wikipedia"}
    assert titles == {"Lighthouse", "Honey bee", "Sourdough", "Printing press"}


def test_good_inputs_are_processed(bad_run):
    root, _, manifest, _ = bad_run
    c = manifest["counts"]
    assert c["documents_in"] == c["kept"] + c["dropped"] + c["duplicates_removed"]
    assert manifest["kept_by_source"] == {"books": 1, "wikipedia": 4}
    (book,) = [d for d in _kept(root) if d["source"] == "books"]  # the invalid-UTF-8 book survives...
    assert (book["id"], book["title"]) == ("books/latin1-book", "A Latin-1 Book")
    assert "caf\ufffd na\ufffdve" in book["text"]  # ...its invalid bytes replaced, the rest intact
    (latin1,) = [i for i in manifest["inputs"] if i["label"] == "latin1-book.txt"]
    assert (latin1["documents_in"], latin1["kept"], latin1["error"]) == (1, 1, None)


def test_huge_document_does_not_stall_the_run(bad_run):
    _, _, manifest, seconds = bad_run
    assert seconds < 240
    (huge,) = [i for i in manifest["inputs"] if i["label"] == "huge-book.txt"]
    assert (huge["documents_in"], huge["kept"], huge["error"]) == (1, 0, None)  # read whole, then dropped:
    assert manifest["drop_reasons"]["clean/too_long"] == 1  # the only too-long document


def test_cli_prints_summary_and_exits_non_zero(bad_run):
    _, spec, _, _ = bad_run
    result = CliRunner().invoke(app, ["curate", str(spec)])
    assert result.exit_code == 1, result.output
    assert "failed" in result.output and "missing-dump.xml.bz2" in result.output


def test_cli_rejects_bad_spec_before_any_work(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsources: [{kind: wikipedia, pathz: [a]}]\noutput: o\n")
    result = CliRunner().invoke(app, ["curate", str(bad)])
    assert result.exit_code == 2
    assert "paths" in result.output and "pathz" in result.output
