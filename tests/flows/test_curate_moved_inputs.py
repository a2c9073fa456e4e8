"""A cache hit takes its place and url from this run, not from the run that built it.

Fault: the inputs are moved to another folder and the sources are listed in another order between two runs
into the same output. The unit keys cover content, file names and spec, not where files lie, so every unit
is a cache hit. Output must equal: a fresh run's of the moved, reordered spec — the same shard files byte for
byte (the `origin` column names the new paths, rows come in the new source order), the same manifest inputs and sources.
"""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq

from flows.curate import curate
from tests.conftest import SAMPLE_CORPUS
from tests.flows.helpers import shard_digests, write_spec

SETTINGS = {"shards": {"target_mb": 0.03}, "run": {"workers": 1, "retries": 0}}


def _sources(root, order):
    kinds = {
        "common_crawl": {"kind": "common_crawl", "paths": [str(root / "cc" / "*.warc.gz"),
                                                           str(root / "cc" / "*.warc.wet.gz")]},
        "books": {"kind": "books", "paths": [str(root / "books" / "*.txt")]},
    }
    return [kinds[k] for k in order]


def _inputs(manifest):
    return [{k: u[k] for k in ("label", "url", "unit_key", "kept")} for u in manifest["inputs"]]


def test_moved_and_reordered_inputs_give_a_fresh_runs_shards(tmp_path):
    old = tmp_path / "old"
    for sub in ("cc", "books"):
        shutil.copytree(SAMPLE_CORPUS / sub, old / sub)
    out = tmp_path / "out"
    curate(str(write_spec(tmp_path / "a.yaml", out, _sources(old, ["common_crawl", "books"]), **SETTINGS)))

    new = tmp_path / "moved"
    old.rename(new)
    order = ["books", "common_crawl"]
    rerun = curate(str(write_spec(tmp_path / "b.yaml", out, _sources(new, order), **SETTINGS)))
    fresh_out = tmp_path / "fresh"
    fresh = curate(str(write_spec(tmp_path / "c.yaml", fresh_out, _sources(new, order), **SETTINGS)))

    assert shard_digests(out) == shard_digests(fresh_out) and shard_digests(out)
    origins = {o for p in (out / "data").glob("*.parquet") for o in pq.read_table(p, columns=["origin"])
               .column("origin").to_pylist()}
    assert origins and all(o.startswith(str(new)) for o in origins), origins
    assert _inputs(rerun) == _inputs(fresh) and rerun["sources"] == fresh["sources"]
    # the rewritten unit summaries name the new places, so the next run is a plain hit
    for summary in (out / "_work" / "units").glob("*.json"):
        assert json.loads(summary.read_text())["url"].startswith(str(new))
