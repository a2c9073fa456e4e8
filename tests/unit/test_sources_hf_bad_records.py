"""hf_dataset json/csv files with bad records: only the bad record is dropped, every good row keeps its id.

Before: one invalid-UTF-8 cell (or one broken line) made `datasets` raise for the whole data file, so its unit
failed on every retry and none of its rows were kept.
"""

from __future__ import annotations

import json

import pytest

from data_specs.sources import HFDatasetSource
from tasks.common.documents import Document
from tasks.sources.core import ReaderError, plan_units, read_unit

ROWS = 300


def _read(name, files, **kw):
    src = HFDatasetSource(kind="hf_dataset", name=name, data_files=[str(f) for f in files], **kw)
    units, problems = plan_units(src, 0)
    assert not problems
    return [(r.id, r.text if isinstance(r, Document) else r.reason) for u in units for r in read_unit(src, u)]


def _jsonl(rows):
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def _rows(tag):
    return [{"text": f"{tag} row {i}", "key": f"{tag}{i}", "n": i} for i in range(ROWS)]


@pytest.mark.parametrize("id_field", [None, "key"])
@pytest.mark.parametrize("n_files", [1, 2])  # one file: the whole-dataset unit; two: one unit per file
def test_json_bad_records_are_dropped_and_good_ids_kept(tmp_path, id_field, n_files):
    names = ["a", "b"][:n_files]
    fixed, broken = [], []
    for name in names:
        (tmp_path / f"{name}.jsonl").write_bytes(_jsonl(_rows(name)))
        fixed.append(tmp_path / f"{name}.jsonl")
    lines = _jsonl(_rows(names[0])).splitlines(keepends=True)
    lines[100] = b'{"text": "caf\xff au lait", "key": "bad", "n": 100}\n'  # invalid UTF-8 inside a string
    lines[200] = b'{"text": "no closing brace", "key": "bad2"\n'
    lines[250] = b"[1, 2]\n"  # JSON, but not an object
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.jsonl").write_bytes(b"".join(lines))
    broken = [tmp_path / "broken" / "a.jsonl", *fixed[1:]]
    good = _read("json", fixed, id_field=id_field)
    got = _read("json", broken, id_field=id_field)
    assert len(got) == len(good) == ROWS * n_files
    reasons = {100: "hf_dataset/decode_error", 200: "hf_dataset/bad_json", 250: "hf_dataset/bad_json"}
    for i, (mine, want) in enumerate(zip(got, good, strict=True)):
        if i in reasons:
            assert mine == (f"hf_dataset/json/train/{i}", reasons[i])
        else:
            assert mine == want  # same id (row index or key) and text as the file without bad records


def test_csv_bad_records_are_dropped_and_good_ids_kept(tmp_path):
    header = b"text,key\n"
    rows = [f'"csv row {i}, quoted",k{i}\n'.encode() for i in range(ROWS)]
    rows[10] = b'"a\nmultiline cell",k10\n'  # a good record over two lines
    (tmp_path / "good.csv").write_bytes(header + b"".join(rows))
    rows[50] = b'"bad \xe9 latin-1",k50\n'
    rows[60] = b"too,many,fields\n"
    (tmp_path / "bad.csv").write_bytes(header + b"".join(rows))
    (tmp_path / "tail.csv").write_bytes(header + b"tail row,t0\n")
    good = _read("csv", [tmp_path / "good.csv", tmp_path / "tail.csv"], id_field="key")
    got = _read("csv", [tmp_path / "bad.csv", tmp_path / "tail.csv"], id_field="key")
    assert got[50] == ("hf_dataset/csv/train/50", "hf_dataset/decode_error")
    assert got[60] == ("hf_dataset/csv/train/60", "hf_dataset/bad_csv")
    assert got[:50] + got[51:60] + got[61:] == good[:50] + good[51:60] + good[61:]
    assert got[10] == ("hf_dataset/csv/train/k10", "a\nmultiline cell")
    assert got[-1] == ("hf_dataset/csv/train/t0", "tail row")


def test_unreadable_json_array_file_is_a_reader_error(tmp_path):
    (tmp_path / "a.json").write_bytes(b'[{"text": "caf\xff"},\n{"text": "b"}]\n')
    src = HFDatasetSource(kind="hf_dataset", name="json", data_files=[str(tmp_path / "a.json")])
    (unit,), _ = plan_units(src, 0)
    with pytest.raises(ReaderError, match="JSON Lines"):
        list(read_unit(src, unit))


def test_a_good_file_never_takes_the_fallback(tmp_path, monkeypatch):
    import tasks.sources.hf_files as hf_files

    monkeypatch.setattr(hf_files, "tolerant_rows", lambda *a: pytest.fail("fallback used on a good file"))
    (tmp_path / "a.jsonl").write_bytes(_jsonl(_rows("a")))
    got = _read("json", [tmp_path / "a.jsonl"])
    assert len(got) == ROWS and all(not r[1].startswith("hf_dataset/") for r in got)


def test_rows_read_before_the_failure_are_not_repeated(tmp_path, caplog):
    # An invalid-UTF-8 cell alone: `datasets` hands out the rows before it, then fails; the fallback goes on
    # after them (skipping what was yielded), so no row is repeated or shifted.
    lines = _jsonl(_rows("a")).splitlines(keepends=True)
    lines[120] = b'{"text": "caf\xff", "key": "bad", "n": 120}\n'
    (tmp_path / "a.jsonl").write_bytes(b"".join(lines))
    (tmp_path / "fixed.jsonl").write_bytes(_jsonl(_rows("a")))
    with caplog.at_level("WARNING", logger="tasks.sources.hf_files"):
        got = _read("json", [tmp_path / "a.jsonl"], id_field="key")
    assert "parsing failed after 120 rows" in caplog.text  # the case under test: a failure mid-file
    good = _read("json", [tmp_path / "fixed.jsonl"], id_field="key")
    assert got[120] == ("hf_dataset/json/train/120", "hf_dataset/decode_error")
    assert got[:120] + got[121:] == good[:120] + good[121:]
