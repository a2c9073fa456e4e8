"""The curate flow end to end on the bundled sample corpus, under a real (temporary) Prefect server."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from data_specs import load_curate_spec
from flows.curate import curate
from tests.flows.helpers import shard_digests, write_spec


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("curate")
    spec = write_spec(root / "spec.yaml", root / "out", shards={"target_mb": 0.03})
    manifest = curate(str(spec))
    return root, spec, manifest


def test_manifest_reconciles_and_lists_shards(first_run):
    root, _, manifest = first_run
    c = manifest["counts"]
    assert c["documents_in"] == c["kept"] + c["dropped"] + c["duplicates_removed"]
    assert c["kept"] > 0 and c["failed_inputs"] == 0
    assert sum(manifest["drop_reasons"].values()) == c["dropped"]
    on_disk = json.loads((root / "out" / "manifest.json").read_text())
    assert on_disk["counts"] == c
    assert len(manifest["shards"]) >= 2  # target_mb is tiny: the corpus is split
    digests = shard_digests(root / "out")
    assert set(digests) == {s["path"] for s in manifest["shards"]}
    for shard in manifest["shards"]:
        assert digests[shard["path"]] == shard["sha256"]
        assert pq.ParquetFile(root / "out" / "data" / shard["path"]).metadata.num_rows == shard["rows"]
    assert not list((root / "out").rglob("*.tmp-*")), "temporary files left behind"


def test_every_source_is_kept_and_reasons_are_named(first_run):
    _, _, manifest = first_run
    assert set(manifest["kept_by_source"]) == {"wikipedia", "common_crawl", "books"}
    assert all("/" in reason for reason in manifest["drop_reasons"])
    assert manifest["drop_reasons"].get("wikipedia/redirect", 0) >= 1
    assert manifest["languages"].get("en", 0) == manifest["counts"]["kept"]


def test_shards_have_explicit_schema_and_balanced_sizes(first_run):
    root, _, manifest = first_run
    table = pq.read_table(root / "out" / "data")
    for column in ("id", "text", "source", "url", "title", "lang", "lang_score", "origin"):
        assert column in table.column_names
    assert table.num_rows == manifest["counts"]["kept"]
    assert len(set(table["id"].to_pylist())) == table.num_rows
    sizes = [s["text_bytes"] for s in manifest["shards"]]
    biggest_doc = max(len(t.encode()) for t in table["text"].to_pylist())
    assert max(sizes) - min(sizes) <= biggest_doc  # balanced to within one document
    meta = pq.ParquetFile(root / "out" / "data" / manifest["shards"][0]["path"]).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_dedup_removes_planted_duplicates_and_prefers_sources(first_run):
    root, spec_path, manifest = first_run
    dup = manifest["duplicates"]
    assert dup.get("dedup/exact", 0) >= 1 and dup.get("dedup/near", 0) >= 1
    removed = pq.read_table(dup["removed_ids"]).to_pylist()
    priority = list(load_curate_spec(spec_path).dedup.source_priority)
    for row in removed:
        loser, survivor = row["id"].split("/")[0], row["survivor_id"].split("/")[0]
        assert priority.index(survivor) <= priority.index(loser), row
    kept_ids = set(pq.read_table(root / "out" / "data", columns=["id"])["id"].to_pylist())
    assert not kept_ids & {r["id"] for r in removed}
    assert {r["survivor_id"] for r in removed} <= kept_ids


def test_data_card_written(first_run):
    root, _, manifest = first_run
    card = (root / "out" / "DATA_CARD.md").read_text()
    for needle in ("Data card", "Drop reasons", "Languages", "Example documents", manifest["fingerprint"]):
        assert needle in card


def test_rerun_skips_finished_work_and_is_byte_identical(first_run):
    root, spec, manifest = first_run
    out = root / "out"
    before = shard_digests(out)
    unit_files = sorted((out / "_work" / "units").glob("*.json"))
    assert len(unit_files) == len(manifest["inputs"])  # every unit finished and left its summary
    mtimes = [p.stat().st_mtime_ns for p in unit_files]
    manifest_mtime = (out / "manifest.json").stat().st_mtime_ns

    same = curate(str(spec))  # nothing changed: the run key matches, nothing is written
    assert same["run_key"] == manifest["run_key"]
    assert (out / "manifest.json").stat().st_mtime_ns == manifest_mtime

    for shard in (out / "data").glob("*.parquet"):
        shard.unlink()
    (out / "manifest.json").unlink()
    orphans = [out / "data" / "shard-00000-of-00002.parquet.tmp-0badf00d",
               out / "_work" / "units" / "k.json.tmp-1badf00d"]
    for orphan in orphans:  # what a killed run leaves: only a run holding the lock may clear them
        orphan.write_bytes(b"half written")
    again = curate(str(spec))  # assembled again, from the cached units only
    assert shard_digests(out) == before
    assert not any(p.exists() for p in orphans)
    assert [p.stat().st_mtime_ns for p in unit_files] == mtimes  # no unit was redone
    assert again["counts"] == manifest["counts"] and again["shards"] == manifest["shards"]
    assert again["run_key"] == manifest["run_key"]


def test_one_worker_and_two_workers_give_identical_shards(first_run, tmp_path, monkeypatch):
    root, _, manifest = first_run
    monkeypatch.setenv("LMPIPE_WORKERS", "1")
    spec = write_spec(tmp_path / "spec.yaml", tmp_path / "out", shards={"target_mb": 0.03}, run={"workers": 2})
    one = curate(str(spec))
    assert shard_digests(tmp_path / "out") == shard_digests(root / "out")
    assert one["counts"] == manifest["counts"] and one["fingerprint"] == manifest["fingerprint"]


def test_changed_spec_rewrites_shards_and_drops_stale_ones(first_run, tmp_path):
    spec = write_spec(tmp_path / "spec.yaml", tmp_path / "out", shards={"target_mb": 0.03})
    curate(str(spec))
    write_spec(tmp_path / "spec.yaml", tmp_path / "out", shards={"target_mb": 100})
    manifest = curate(str(spec))
    assert len(manifest["shards"]) == 1
    assert list(shard_digests(tmp_path / "out")) == [manifest["shards"][0]["path"]]
