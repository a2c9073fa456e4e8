"""What a unit's outcome may be reused for: only a complete unit is cached, and the run key covers outcomes.

The reader is replaced by a fake that yields the three sample books as documents and then ends, raises
a `ReaderError` (corrupt input: partial unit kept, reported, not cached) or raises anything else
(the unit fails whole and leaves nothing).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data_specs import load_curate_spec
from tasks.common.documents import Document
from tasks.corpus.manifest import run_key
from tasks.sources.core import ReaderError, WorkUnit
from tasks.units import core
from tasks.units.core import UnitResult, load_cached, process_unit
from tests.conftest import SAMPLE_CORPUS
from tests.flows.helpers import write_spec

BOOKS = sorted((SAMPLE_CORPUS / "books").glob("*.txt"))


def _fake_reader(fail: BaseException | None):  # noqa: ANN202
    def read(source, unit):  # noqa: ANN001, ANN202, ARG001
        for path in BOOKS:
            yield Document(id=f"books/{path.stem}", text=path.read_text(), source="books", title=path.stem,
                           origin=unit.url)
        if fail is not None:
            raise fail

    return read


def _process(tmp_path: Path, work: str, monkeypatch, fail: BaseException | None = None) -> UnitResult:
    monkeypatch.setattr(core, "read_unit", _fake_reader(fail))
    spec = load_curate_spec(write_spec(tmp_path / "spec.yaml", tmp_path / "out",
                                       sources=[{"kind": "books", "paths": [str(BOOKS[0])]}]))
    unit = WorkUnit(0, "books", str(BOOKS[0]))
    return process_unit(spec.sources[0], unit, spec.clean, spec.dedup.minhash, str(tmp_path / work))


def test_a_reader_error_keeps_complete_records_but_is_never_cached(tmp_path, monkeypatch):
    whole = _process(tmp_path, "whole", monkeypatch)
    partial = _process(tmp_path, "partial", monkeypatch, ReaderError("truncated after 3 records"))
    assert partial.error == "ReaderError: truncated after 3 records" and not partial.complete
    assert whole.kept > 0 and (partial.docs_in, partial.kept) == (whole.docs_in, whole.kept) == (3, whole.kept)
    assert pq.read_metadata(partial.path).num_rows == partial.kept  # the complete records are kept
    units = tmp_path / "partial" / "units"
    assert sorted(p.name for p in units.iterdir()) == [f"{partial.key}.parquet"]  # no summary: not finished
    again = _process(tmp_path, "partial", monkeypatch, ReaderError("truncated after 3 records"))
    assert not again.cached  # read again, never reused


@pytest.mark.parametrize("failure", [MemoryError(), ValueError("a bug in a reader")], ids=["memory", "bug"])
def test_any_other_exception_fails_the_unit_and_leaves_nothing(tmp_path, monkeypatch, failure):
    with pytest.raises(type(failure)):
        _process(tmp_path, "work", monkeypatch, failure)
    units = tmp_path / "work" / "units"
    assert not units.exists() or list(units.iterdir()) == []  # no partial unit, no summary, no temp file


def test_only_a_complete_summary_is_reused(tmp_path, monkeypatch):
    done = _process(tmp_path, "work", monkeypatch)
    assert done.complete and done.error is None and not done.cached
    summary = Path(done.path).with_suffix(".json")
    assert load_cached(str(summary)).cached
    assert _process(tmp_path, "work", monkeypatch).cached

    data = json.loads(summary.read_text())
    for damage in ({"complete": False}, {"error": "ReaderError: cut"}):
        summary.write_text(json.dumps({**data, **damage}))
        assert load_cached(str(summary)) is None, damage
    summary.write_text(json.dumps(data))
    Path(done.path).unlink()
    assert load_cached(str(summary)) is None  # its Parquet file is gone


def _result(**change: object) -> UnitResult:
    base = UnitResult(key="k1", label="a.warc.gz", source_index=0, kind="common_crawl", url="http://h/a.warc.gz",
                      start=None, end=None, path="/w/units/k1.parquet", docs_in=10, kept=7, text_bytes=900,
                      drops={"common_crawl/not_html": 3}, complete=True)
    return dataclasses.replace(base, **change)


def test_run_key_covers_each_units_outcome_not_just_its_key():
    other = _result(key="k2", label="b.warc.gz", url="http://h/b.warc.gz")
    key = run_key("spec1", [_result(), other], [])
    assert run_key("spec1", [other, _result()], []) == key  # order of completion does not matter
    assert run_key("spec1", [_result(seconds=9.5, cached=True), other], []) == key  # execution details do not
    for changed in ({"error": "ReaderError: cut", "complete": False, "docs_in": 4, "kept": 3},
                    {"kept": 6}, {"docs_in": 11}, {"text_bytes": 901}, {"drops": {}}, {"complete": False}):
        assert run_key("spec1", [_result(**changed), other], []) != key, changed
    assert run_key("spec2", [_result(), other], []) != key
    assert run_key("spec1", [_result(), other], [("gone.warc.gz", "file not found")]) != key


def test_run_key_tells_a_unit_that_failed_whole_from_one_that_ran():
    failed = _result(key="", docs_in=0, kept=0, text_bytes=0, drops={}, complete=False, error="MemoryError: ")
    assert run_key("spec1", [failed], []) != run_key("spec1", [_result()], [])
