"""Readers' notes (records kept with a remark, e.g. a stale coding header read as identity) reach the unit
summary, the manifest and the data card, outside the reconciliation of documents in = kept + dropped + dups."""

from __future__ import annotations

import gzip

import numpy as np

from data_specs import load_curate_spec
from tasks.corpus.core import DedupOutcome
from tasks.corpus.manifest import build_manifest, render_data_card
from tasks.shards.core import KeptRows
from tasks.sources.core import WorkUnit
from tasks.units.core import UnitResult, load_cached, process_unit
from tests.flows.helpers import write_spec
from tests.unit._warc_build import Rec, page, warc_bytes

HTML = [("Content-Type", "text/html; charset=utf-8")]
WORDS = "The committee met on Tuesday to discuss the river bridge and the new school budget for the town. "


def _warc(tmp_path):
    records = [
        Rec("stale-ce-1", page(WORDS * 6 + "one"), http=[*HTML, ("Content-Encoding", "gzip")]),
        Rec("stale-ce-2", page(WORDS * 6 + "two"), http=[*HTML, ("Content-Encoding", "gzip")]),
        Rec("stale-te", page(WORDS * 6 + "three"), http=[*HTML, ("Transfer-Encoding", "chunked")]),
        Rec("real-gzip", gzip.compress(page(WORDS * 6 + "four")), http=[*HTML, ("Content-Encoding", "gzip")]),
    ]
    path = tmp_path / "crawl.warc.gz"
    path.write_bytes(warc_bytes(records))
    return path


def test_notes_are_counted_per_unit_cached_and_listed_in_manifest_and_card(tmp_path):
    path = _warc(tmp_path)
    spec = load_curate_spec(write_spec(tmp_path / "spec.yaml", tmp_path / "out",
                                       sources=[{"kind": "common_crawl", "paths": [str(path)]}]))
    unit = WorkUnit(0, "common_crawl", str(path))
    result = process_unit(spec.sources[0], unit, spec.clean, spec.dedup.minhash, str(tmp_path / "work"))
    assert result.complete and result.docs_in == 4
    assert result.notes == {"common_crawl/stale_content_encoding": 2, "common_crawl/stale_transfer_encoding": 1}
    assert sum(result.drops.values()) + result.kept == 4  # a note is not a drop
    cached = load_cached(result.path.removesuffix(".parquet") + ".json")
    assert cached is not None and cached.notes == result.notes

    other = UnitResult(key="k2", label="b", source_index=0, kind="common_crawl", url="/b", start=None, end=None,
                       path="", docs_in=1, drops={"common_crawl/non_html": 1}, complete=True,
                       notes={"common_crawl/stale_content_encoding": 3})
    empty = KeptRows((), np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int64))
    outcome = DedupOutcome(kept_rows=empty, removed={}, clusters=0, cluster_sizes={}, candidate_pairs=0,
                           verified_pairs=0, exact_checked=0, removed_path=None, kept_by_source={},
                           kept_languages={})
    shards = [{"path": "s.parquet", "rows": result.kept, "bytes": 1, "text_bytes": 1, "sha256": "0" * 64}]
    manifest = build_manifest(spec={"name": "n", "version": 1}, fingerprint="f", run_key="r",
                              results=[result, other], planning_problems=[], outcome=outcome, shards=shards,
                              output="/out")
    assert manifest["notes"] == {"common_crawl/stale_content_encoding": 5, "common_crawl/stale_transfer_encoding": 1}
    card = render_data_card(manifest, {})
    assert "| `common_crawl/stale_content_encoding` | 5 |" in card
    assert "| `common_crawl/stale_transfer_encoding` | 1 |" in card
