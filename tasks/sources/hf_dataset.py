"""Hugging Face dataset reader: `datasets.load_dataset(..., streaming=True)` rows to Documents.

Input: a hub id or a builder name (json, parquet, csv, text) with `data_files` (local paths or URLs),
config, split and revision. Output: one `Document` per row with a non-empty `text_field`;
`Dropped('hf_dataset/empty')` for a row without text.

Ids: `hf_dataset/<name>/<split>/<row>` with no config and `hf_dataset/<name>:<config>/<split>/<row>`
with one (`:` appears in neither hub ids nor builder names, so the two forms cannot meet), where
`<row>` is the `id_field` value or the row index. Two configs or two splits of a dataset thus never
share an id. Two sources of the same builder with different `data_files` and no `id_field` do (row 0
of each): the corpus step refuses that (`DuplicateDocumentId`); set an `id_field` unique across them.

Units (`tasks.sources.core.hf_units`): a dataset stored as Parquet (its `data_files`, or a hub dataset's
shards) is read in runs of whole row groups with pyarrow, and the `json` / `csv` builders with several data
files one file per unit, each by `datasets` streaming; every unit knows the dataset row index of its first
row, so `<row>` is the same global index as in one streamed pass. Other datasets are one unit.

Streaming: rows are never all held in memory. Offline use (`HF_DATASETS_OFFLINE=1`) works for builder
names with local data files.

Bad records: when `datasets` fails to parse a `json` / `csv` data file (an invalid-UTF-8 cell, a broken
line), the rest of it is read record by record (`tasks.sources.hf_files`): only the bad records are
`Dropped` (`hf_dataset/decode_error`, `bad_json`, `bad_csv`) and every good row keeps its id.

Columns: a `text_field` or `id_field` the data does not have is a `MissingColumn` error that lists the
columns there are (a misspelling would otherwise drop every row as empty, or silently use row indices).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from data_specs.sources import HFDatasetSource
from tasks.common.documents import Document, Dropped
from tasks.common.io import open_raw
from tasks.sources.core import (
    ReaderError, WorkUnit, dataset_url, reads_file_by_file, resolved_data_files, stream_data_file,
)
from tasks.sources.hf_files import with_fallback

SOURCE = "hf_dataset"


class MissingColumn(ReaderError):
    """The spec's `text_field` or `id_field` names a column the dataset does not have."""


def read_hf_dataset(source: HFDatasetSource, unit: WorkUnit) -> Iterator[Document | Dropped]:
    """Yield one Document per row (Dropped for rows whose text is missing or empty)."""
    if unit.first_row is not None and reads_file_by_file(source):
        rows = with_fallback(source, stream_data_file(source, unit.url), lambda: [unit.url])
        yield from _records(source, rows, unit.first_row)
        return
    if unit.first_row is not None:
        yield from _records(source, _parquet_rows(source, unit), unit.first_row + (unit.start or 0))
        return
    import datasets

    kwargs = {"split": source.split, "streaming": True}
    if source.revision:
        kwargs["revision"] = source.revision
    if source.data_files:
        kwargs["data_files"] = list(source.data_files)
    rows = datasets.load_dataset(source.name, source.config, **kwargs)
    if reads_file_by_file(source):
        rows = with_fallback(source, rows, lambda: (resolved_data_files(source) or (None, None))[1])
    yield from _records(source, rows, 0)


def _parquet_rows(source: HFDatasetSource, unit: WorkUnit, batch_rows: int = 1024) -> Iterator[dict]:
    """Rows [start, end) of the unit's Parquet file (whole row groups), only the columns a Document uses."""
    import pyarrow.parquet as pq

    with open_raw(unit.url) as f:
        parquet = pq.ParquetFile(f)
        groups, offset = [], 0
        for i in range(parquet.metadata.num_row_groups):
            if (unit.start or 0) <= offset < (unit.end if unit.end is not None else float("inf")):
                groups.append(i)
            offset += parquet.metadata.row_group(i).num_rows
        check_columns(source, parquet.schema_arrow.names)
        wanted = [source.text_field, source.id_field, "url", "title"]
        columns = [c for c in dict.fromkeys(wanted) if c and c in parquet.schema_arrow.names]
        for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=groups, columns=columns):
            yield from batch.to_pylist()


def check_columns(source: HFDatasetSource, names: Iterable[str]) -> None:
    """Raise `MissingColumn` when the data lacks the spec's `text_field` or `id_field`, naming the columns."""
    names = list(names)
    missing = [f"{field}={value!r}" for field, value in (("text_field", source.text_field),
               ("id_field", source.id_field)) if value is not None and value not in names]
    if missing:
        raise MissingColumn(f"hf_dataset {source.name!r}: no column for {', '.join(missing)}; the columns are "
                            f"{names}: set text_field / id_field in the source spec to one of them")


def _records(source: HFDatasetSource, rows: Iterable[dict | str], first_index: int) -> Iterator[Document | Dropped]:
    """Documents (or Dropped) for rows whose dataset row index starts at `first_index`; a string in `rows` is
    a bad record's reason (`tasks.sources.hf_files`)."""
    prefix = id_prefix(source)
    origin = dataset_url(source)
    checked = False
    for index, row in enumerate(rows, first_index):
        if isinstance(row, str):
            yield Dropped(f"{prefix}/{index}", f"{SOURCE}/{row}")
            continue
        if not checked:
            check_columns(source, row.keys())
            checked = True
        native = row.get(source.id_field) if source.id_field else index
        doc_id = f"{prefix}/{native if native is not None else index}"
        text = row.get(source.text_field)
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        if text is None or not str(text).strip():
            yield Dropped(doc_id, f"{SOURCE}/empty")
            continue
        yield Document(
            id=doc_id,
            text=str(text),
            source=SOURCE,
            url=row.get("url") if isinstance(row.get("url"), str) else None,
            title=row.get("title") if isinstance(row.get("title"), str) else None,
            origin=origin,
        )


def id_prefix(source: HFDatasetSource) -> str:
    """The part of every row id that names the dataset, config and split (see the module docstring)."""
    dataset = f"{source.name}:{source.config}" if source.config else source.name
    return f"{SOURCE}/{dataset}/{source.split}"
