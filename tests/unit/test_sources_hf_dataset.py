"""hf_dataset reader: local json/parquet files offline, ids, empty rows, fingerprints, an http data file.

`datasets` streaming reads an http(s) data file with HF_DATASETS_OFFLINE=1 (offline mode only blocks the
Hub), so the loopback server test below uses the real http path.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_specs.sources import HFDatasetSource
from tasks.common.documents import Document, Dropped
from tasks.sources.core import (
    WorkUnit, dataset_url, hf_units, plan_units, read_unit, row_ranges, unit_content_fingerprint,
)
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

    def planned(s):  # the planner fingerprints each unit of its own source
        (unit,), _ = plan_units(s, 0)
        assert unit.content == unit_content_fingerprint(s, replace(unit, content=None))
        return unit.content

    fp = planned(src)
    assert fp == planned(src)
    assert fp != planned(source(name="json", data_files=[str(path)], revision="abc"))
    write_jsonl(path, [{"text": "y"}])
    assert fp != planned(src)


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


def write_shards(folder, n_files=3, rows=5, row_group_size=2):
    """`n_files` Parquet files named like a hub dataset's shards; row r of file f has text "f-r" (row 1 of
    every file is empty) and key "k<f>-<r>" (None for row 3, so its id falls back to the global row index)."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(n_files):
        table = pa.table({
            "text": ["" if r == 1 else f"{f}-{r}" for r in range(rows)],
            "key": [None if r == 3 else f"k{f}-{r}" for r in range(rows)],
            "extra": list(range(rows)),
        })
        pq.write_table(table, folder / f"train-{f:05d}-of-{n_files:05d}.parquet", row_group_size=row_group_size)


def whole(src):
    """The dataset read as one unit by `datasets` streaming (the only reading before issue 9)."""
    return list(read_unit(src, WorkUnit(0, "hf_dataset", dataset_url(src))))


@pytest.mark.parametrize("layout", ["data_files", "hub_folder"])
def test_parquet_dataset_splits_into_units_with_the_same_ids(tmp_path, layout):
    """Issue 9: an hf_dataset was one unit. Stored as several Parquet files it is now one unit per run of
    row groups, and reading every unit gives exactly the records (ids with global row index) of one pass."""
    write_shards(tmp_path / "data")
    if layout == "data_files":
        src = source(name="parquet", data_files=[str(tmp_path / "data" / "*.parquet")])
    else:  # a local folder shaped like a hub dataset, with an id column that is sometimes null
        src = source(name=str(tmp_path), id_field="key")
    units, problems = plan_units(src, 0)
    assert not problems and len(units) == 3 and [u.first_row for u in units] == [0, 5, 10]
    assert len({u.content for u in units}) == 3 and plan_units(src, 0)[0] == units  # distinct, deterministic
    split = [r for u in units for r in read_unit(src, u)]
    assert split == whole(src) and len(split) == 15
    prefix = id_prefix(src)
    assert split[8].id == f"{prefix}/8"  # file 1, row 3 (null key): the global row index, not 3
    assert split[7].id == f"{prefix}/{'7' if layout == 'data_files' else 'k1-2'}"
    assert split[6] == Dropped(split[6].id, "hf_dataset/empty")


def test_row_ranges_of_a_single_file_equal_the_whole(tmp_path):
    pq.write_table(pa.table({"text": [f"row {i}" for i in range(11)]}), tmp_path / "big.parquet", row_group_size=3)
    src = source(name="parquet", data_files=[str(tmp_path / "big.parquet")])
    units = hf_units(src, 0, rows_per_unit=6)
    assert [(u.start, u.end, u.label) for u in units] == [(0, 6, "big.parquet[0:6]"), (6, 11, "big.parquet[6:11]")]
    assert [r for u in units for r in read_unit(src, u)] == whole(src)
    assert row_ranges([3, 3, 3, 2], 1) == [(0, 3), (3, 6), (6, 9), (9, 11)]
    assert row_ranges([4, 0, 1], 5) == [(0, 5)]
    limited = source(name="parquet", data_files=[str(tmp_path / "big.parquet")], max_documents=2)
    assert len(plan_units(limited, 0)[0]) == 1  # a limit per input means per dataset: one unit


@pytest.mark.parametrize("builder", ["json", "csv", "json-array"])
def test_json_and_csv_files_split_into_units_with_the_same_ids(tmp_path, builder, monkeypatch):
    """Issue 9: a json/csv dataset was one unit. With several data files it is one unit per file, each file's
    row count from the same parser (blank lines, quoted newlines, empty rows), and every id and record equals
    one streamed pass; the counts are remembered, so a second plan parses nothing."""
    import pandas as pd

    import tasks.sources.core as sources_core

    monkeypatch.setenv("LMPIPE_STATE_DIR", str(tmp_path / "state"))
    rows = [[{"text": f"file {f} row {r}\nsecond line" if (f, r) != (1, 1) else ""} for r in range(3 + f)]
            for f in range(3)]
    for f, file_rows in enumerate(rows):
        path = tmp_path / f"part-{f}.{builder.split('-')[0]}"
        if builder == "csv":
            pd.DataFrame(file_rows).to_csv(path, index=False)
        elif builder == "json":
            path.write_text("".join(json.dumps(r) + "\n\n" for r in file_rows))  # blank lines between rows
        else:
            path.write_text(json.dumps(file_rows))
    src = source(name=builder.split("-")[0], data_files=[str(tmp_path / f"part-*.{builder.split('-')[0]}")])
    units, problems = plan_units(src, 0)
    assert not problems and [u.first_row for u in units] == [0, 3, 7]
    split = [r for u in units for r in read_unit(src, u)]
    assert split == whole(src) and len(split) == 12
    assert split[4] == Dropped(f"{id_prefix(src)}/4", "hf_dataset/empty") and split[11].id == f"{id_prefix(src)}/11"
    assert "second line" in split[0].text

    def no_parsing(*_):
        raise AssertionError("parsed again")

    monkeypatch.setattr(sources_core, "stream_data_file", no_parsing)
    assert plan_units(src, 0)[0] == units


def test_one_json_file_or_a_limit_stays_one_unit(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"text": "a"}])
    assert len(plan_units(source(name="json", data_files=[str(tmp_path / "a.jsonl")]), 0)[0]) == 1
    write_jsonl(tmp_path / "b.jsonl", [{"text": "b"}])
    both = [str(tmp_path / "*.jsonl")]
    assert len(plan_units(source(name="json", data_files=both), 0)[0]) == 2
    assert len(plan_units(source(name="json", data_files=both, max_documents=1), 0)[0]) == 1
