"""A misspelled `text_field` or `id_field` fails with the columns that exist.

Before: a wrong `text_field` dropped every row as `hf_dataset/empty`, and a wrong `id_field` fell back to row
indices, both silently.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_specs.sources import HFDatasetSource
from tasks.sources.core import ReaderError, plan_units, read_unit


def _write(tmp_path, fmt):
    rows = [{"text": f"row {i}", "key": f"k{i}"} for i in range(5)]
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
        return [str(tmp_path / "a.parquet")]
    if fmt == "csv":
        (tmp_path / "a.csv").write_text("text,key\n" + "".join(f"{r['text']},{r['key']}\n" for r in rows))
        return [str(tmp_path / "a.csv")]
    for name in ("a", "b"):  # two files: one unit per file
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]


@pytest.mark.parametrize("fmt", ["json", "csv", "parquet"])
@pytest.mark.parametrize("field", [{"text_field": "txt"}, {"id_field": "kee"}])
def test_misspelled_column_fails_with_the_columns_there_are(tmp_path, fmt, field):
    files = _write(tmp_path, fmt)
    src = HFDatasetSource(kind="hf_dataset", name=fmt, data_files=files, **field)
    units, _ = plan_units(src, 0)
    ((name, value),) = field.items()
    for unit in units:
        # a ReaderError: a failed unit in the manifest whose message says what to fix, not a crash of the run
        with pytest.raises(ReaderError, match=rf"{name}='{value}'.*\['text', 'key'\]") as raised:
            list(read_unit(src, unit))
        assert raised.type.__name__ == "MissingColumn"
    good = HFDatasetSource(kind="hf_dataset", name=fmt, data_files=files, id_field="key")
    assert [r.id for u in plan_units(good, 0)[0] for r in read_unit(good, u)][:2] == [
        f"hf_dataset/{fmt}/train/k0", f"hf_dataset/{fmt}/train/k1"]
