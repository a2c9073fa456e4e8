"""hf_dataset reader: local json/parquet files offline, ids, empty rows, fingerprints, an http data file.

`datasets` streaming reads an http(s) data file with HF_DATASETS_OFFLINE=1 (offline mode only blocks the
Hub), so the loopback server test below uses the real http path.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from data_specs.sources import HFDatasetSource
from tasks.common.documents import Document, Dropped
from tasks.sources.core import plan_units, read_unit, unit_content_fingerprint
from tasks.sources.hf_dataset import id_prefix
from tests.unit._sources_http import http_server  # noqa: F401 - fixture


def source(**kw) -> HFDatasetSource:
    return HFDatasetSource(kind="hf_dataset", **kw)


def read_all(src):
    units, problems = plan_units(src, 0)
    assert not problems and len(units) == 1
    return units[0], list(read_unit(src, units[0]))


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_json_rows_with_id_field(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"text": "first", "key": "k1"}, {"text": "", "key": "k2"}, {"text": "third", "key": "k3"}])
    unit, records = read_all(source(name="json", data_files=[str(tmp_path / "a.jsonl")], id_field="key"))
    assert unit.url == "hf://json:train" and unit.label == "json:train"
    assert records[0] == Document(id="hf_dataset/json/train/k1", text="first", source="hf_dataset", origin="hf://json:train")
    assert records[1] == Dropped("hf_dataset/json/train/k2", "hf_dataset/empty")
    assert records[2].id == "hf_dataset/json/train/k3"


def test_parquet_row_index_text_field_and_max_documents(tmp_path):
    pq.write_table(pa.table({"body": [f"doc {i}" for i in range(10)]}), tmp_path / "p.parquet")
    src = source(name="parquet", data_files=[str(tmp_path / "p.parquet")], text_field="body", max_documents=4)
    _, records = read_all(src)
    assert [r.id for r in records] == [f"hf_dataset/parquet/train/{i}" for i in range(4)]


def test_fingerprint_follows_coordinates_and_content(tmp_path):
    path = tmp_path / "a.jsonl"
    write_jsonl(path, [{"text": "x"}])
    src = source(name="json", data_files=[str(path)])
    unit = plan_units(src, 0)[0][0]
    fp = unit_content_fingerprint(src, unit)
    assert fp == unit_content_fingerprint(src, unit)
    assert fp != unit_content_fingerprint(source(name="json", data_files=[str(path)], revision="abc"), unit)
    write_jsonl(path, [{"text": "y"}])
    assert fp != unit_content_fingerprint(src, unit)


def test_http_data_file(tmp_path, http_server):
    write_jsonl(tmp_path / "remote.jsonl", [{"text": f"remote row {i}"} for i in range(3)])
    base = http_server(tmp_path)
    _, records = read_all(source(name="json", data_files=[f"{base}/remote.jsonl"]))
    assert [r.text for r in records] == ["remote row 0", "remote row 1", "remote row 2"]


def test_ids_are_unique_across_configs_and_splits(tmp_path):
    # Before: the config was not in the id, so row 0 of two configs of one dataset had the same id.
    write_jsonl(tmp_path / "a.jsonl", [{"text": "row"}])
    ids = [read_all(source(name="json", config=c, data_files=[str(tmp_path / "a.jsonl")]))[1][0].id
           for c in (None, "first", "second")]
    assert ids == ["hf_dataset/json/train/0", "hf_dataset/json:first/train/0", "hf_dataset/json:second/train/0"]
    assert id_prefix(source(name="org/set", config="first", split="test")) == "hf_dataset/org/set:first/test"
