"""A cached unit that a power loss damaged is a cache miss: deleted, rebuilt, logged; never a failure.

Fault: after a power loss the unit summary (`_work/units/<key>.json`) or the unit Parquet file can sit under
its final name with zero bytes or cut short. Must survive: the run; the unit is rebuilt. Output must equal:
the first run's unit file byte for byte and the same summary; a warning names the damaged file.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from data_specs import load_curate_spec
from tasks.sources.core import WorkUnit
from tasks.units.core import load_cached, process_unit
from tests.conftest import SAMPLE_CORPUS
from tests.flows.helpers import write_spec


def _run(tmp_path: Path, wet: Path):
    spec = load_curate_spec(write_spec(tmp_path / "spec.yaml", tmp_path / "out",
                                       sources=[{"kind": "common_crawl", "paths": [str(wet)]}]))
    unit = WorkUnit(0, "common_crawl", str(wet))
    return process_unit(spec.sources[0], unit, spec.clean, spec.dedup.minhash, str(tmp_path / "work"))


def _cut(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize(
    ("target", "keep"),
    [("json", 0.0), ("json", 0.5), ("parquet", 0.0), ("parquet", 0.5), ("parquet", 0.999)],
    ids=["summary-empty", "summary-cut", "unit-empty", "unit-cut", "unit-footer-cut"],
)
def test_damaged_cached_unit_is_rebuilt(tmp_path, caplog, target, keep):
    wet = tmp_path / "in" / "sample.warc.wet.gz"
    wet.parent.mkdir()
    shutil.copy(SAMPLE_CORPUS / "cc" / "sample.warc.wet.gz", wet)
    first = _run(tmp_path, wet)
    assert first.kept > 0 and not first.cached
    unit_file, summary = Path(first.path), Path(first.path).with_suffix(".json")
    unit_bytes, summary_data = unit_file.read_bytes(), json.loads(summary.read_text())
    assert _run(tmp_path, wet).cached  # undamaged: reused

    _cut(summary if target == "json" else unit_file, keep)
    with caplog.at_level(logging.WARNING, logger="tasks.units.core"):
        again = _run(tmp_path, wet)
    assert not again.cached and again.complete and again.error is None
    assert (again.kept, again.docs_in, again.drops) == (first.kept, first.docs_in, first.drops)
    assert unit_file.read_bytes() == unit_bytes
    rebuilt = json.loads(summary.read_text())
    assert {k: v for k, v in rebuilt.items() if k != "seconds"} == {k: v for k, v in summary_data.items()
                                                                    if k != "seconds"}
    assert any("damaged" in r.getMessage() and first.key in r.getMessage() for r in caplog.records), caplog.text
    assert _run(tmp_path, wet).cached  # and the rebuilt unit is reused by the next run


def test_row_count_mismatch_is_a_cache_miss(tmp_path, caplog):
    """A summary that describes another unit file than the one there (e.g. a unit file cut short and rewritten)."""
    wet = tmp_path / "sample.warc.wet.gz"
    shutil.copy(SAMPLE_CORPUS / "cc" / "sample.warc.wet.gz", wet)
    first = _run(tmp_path, wet)
    summary = Path(first.path).with_suffix(".json")
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "kept": first.kept + 1}))
    with caplog.at_level(logging.WARNING, logger="tasks.units.core"):
        assert load_cached(str(summary)) is None
    assert not summary.exists() and not Path(first.path).exists()
    assert "rows" in caplog.text


@pytest.mark.parametrize("content", [b"", b'{"run_name": "j', b"\xff\xfe"], ids=["empty", "cut", "not-utf8"])
def test_damaged_job_and_pipeline_state_reads_as_none(tmp_path, caplog, content):
    """A pretraining/GLUE job's `LATEST.json` or a pipeline's `run.json` emptied by a power loss: the next run
    starts a new job or run (logged) instead of failing on the file every time."""
    from tasks.pipeline.core import RUN_FILE, read_run
    from tasks.pretrain.core import read_curated_manifest, read_job_state

    (tmp_path / "LATEST.json").write_bytes(content)
    (tmp_path / RUN_FILE).write_bytes(content)
    (tmp_path / "manifest.json").write_bytes(content)
    with caplog.at_level(logging.WARNING):
        assert read_job_state(str(tmp_path)) is None
        assert read_run(tmp_path) is None
        assert read_curated_manifest(str(tmp_path)) is None  # preflight then says to run curate
    assert caplog.text.count("cannot be read") == 3
