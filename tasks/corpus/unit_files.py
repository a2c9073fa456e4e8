"""Read parts of unit files (`_work/units/<key>.parquet`) by corpus row: band keys, signature rows, texts.

Global dedup (one node, `tasks.corpus.core`, or a Ray Data job, `tasks.corpus.ray_dedup`) addresses documents
by *corpus row*: unit u holds rows starts[u]..starts[u+1]-1, in `tasks.corpus.core.unit_order`. These
readers take only the columns and the row groups they need, so no step re-reads a unit's text to find a few rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from data_specs import MinHashSpec
from tasks.dedup.lsh import band_key_matrix
from tasks.shards.core import LSH_METADATA_KEY


def unit_band_keys(path: str, mh: MinHashSpec) -> np.ndarray:
    """(rows, bands) LSH band keys of a unit file: its `band_keys` column when it was written for this banding
    (schema metadata `lmpipe.lsh`), else computed from its `minhash` column (a unit cached under other bands)."""
    fs, fpath = url_to_fs(path)
    with fs.open(fpath, "rb") as f:
        pf = pq.ParquetFile(f)
        if has_band_keys(pf.schema_arrow, mh):
            return fixed_list_matrix(pf.read(columns=["band_keys"], use_threads=False)["band_keys"])
        column = pf.read(columns=["minhash"], use_threads=False)["minhash"]
    return band_key_matrix(fixed_list_matrix(column), mh.bands, mh.rows)


def has_band_keys(schema: pa.Schema, mh: MinHashSpec) -> bool:
    """The unit file holds `band_keys` computed for this spec's banding (`bands` x `rows`)."""
    return (schema.metadata or {}).get(LSH_METADATA_KEY) == f"{mh.bands}x{mh.rows}".encode() and (
        "band_keys" in schema.names)


def fixed_list_matrix(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A fixed-size list column (`minhash`: n x P uint32, `band_keys`: n x bands uint64) as an (n, k) array,
    without copying when it is one chunk."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.values.to_numpy().reshape(len(column), column.type.list_size)


def read_signature_rows(paths: Sequence[str], starts: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(len(rows), P) uint32 signatures of the given corpus rows, from the unit files' `minhash` column."""
    picked = _read_rows(paths, starts, rows, "minhash")
    if not picked:
        return np.zeros((0, 0), np.uint32)
    sig = np.concatenate([fixed_list_matrix(column) for _, column in picked])
    order = np.concatenate([picks for picks, _ in picked])
    out = np.empty_like(sig)
    out[order] = sig
    return out


def load_texts(paths: Sequence[str], starts: np.ndarray, rows: np.ndarray) -> UnitTexts:
    """Texts of the given corpus rows (ascending; only for ambiguous LSH pairs), read lazily: see `UnitTexts`."""
    return UnitTexts(paths, starts, rows)


class UnitTexts:
    """The texts of corpus rows `rows` (ascending), in that order, read as they are iterated.

    Rows are grouped by (unit, row group): each unit file is opened once and each row group that holds a
    wanted row is read once (its `text` column only), its wanted texts are yielded and the group is released
    before the next is read. Memory: one row group's text column. So a caller that asks once for all the rows
    it needs (`tasks.dedup.exact_verify.ExactJaccard`) reads each text at most once, however scattered the rows.

    Counts, for the manifest: `bytes_read`, the UTF-8 bytes of the text column in the row groups read (the
    unwanted rows of a group included); `bytes_wanted`, those of the wanted texts.
    """

    def __init__(self, paths: Sequence[str], starts: np.ndarray, rows: np.ndarray):
        self.paths, self.starts = paths, np.asarray(starts, dtype=np.int64)
        self.rows = np.asarray(rows, dtype=np.int64)
        rows = self.rows
        if rows.size and (np.any(np.diff(rows) < 0) or rows[0] < 0 or rows[-1] >= self.starts[-1]):
            raise ValueError(f"UnitTexts needs ascending corpus rows in [0, {int(self.starts[-1])}): sort them first")
        self.bytes_read = self.bytes_wanted = 0

    def __len__(self) -> int:
        return int(self.rows.size)

    def __iter__(self) -> Iterator[str]:
        if self.rows.size == 0:
            return
        unit_of = np.searchsorted(self.starts, self.rows, side="right") - 1
        for picks in np.split(np.arange(self.rows.size), np.flatnonzero(np.diff(unit_of)) + 1):
            u = int(unit_of[picks[0]])
            local = self.rows[picks] - self.starts[u]
            fs, path = url_to_fs(self.paths[u])
            with fs.open(path, "rb") as f:
                pf = pq.ParquetFile(f)
                group_starts = np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)])
                groups = np.searchsorted(group_starts, local, side="right") - 1
                for at in np.split(np.arange(local.size), np.flatnonzero(np.diff(groups)) + 1):
                    g = int(groups[at[0]])
                    column = pf.read_row_group(g, columns=["text"], use_threads=False)["text"]
                    taken = column.take(pa.array(local[at] - group_starts[g], pa.int64()))
                    self.bytes_read += _text_bytes(column)
                    self.bytes_wanted += _text_bytes(taken)
                    del column
                    yield from taken.to_pylist()


def _text_bytes(column: pa.ChunkedArray) -> int:
    """UTF-8 bytes of a string column's values (nulls count 0)."""
    return int(pc.sum(pc.binary_length(column)).as_py() or 0)


def _read_rows(paths: Sequence[str], starts: np.ndarray, rows: np.ndarray,
               column: str) -> list[tuple[np.ndarray, pa.Array]]:
    """One `column` at the given corpus rows: per unit, (positions in `rows`, values), each unit file opened
    once and only the row groups that hold a wanted row read."""
    rows = np.asarray(rows, dtype=np.int64)
    unit_of = np.searchsorted(starts, rows, side="right") - 1
    out = []
    for u in np.unique(unit_of).tolist():
        picks = np.flatnonzero(unit_of == u)
        local = rows[picks] - starts[u]
        fs, path = url_to_fs(paths[u])
        with fs.open(path, "rb") as f:
            pf = pq.ParquetFile(f)
            group_starts = np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)])
            groups = np.searchsorted(group_starts, local, side="right") - 1
            wanted = np.unique(groups)
            values = pf.read_row_groups(wanted.tolist(), columns=[column], use_threads=False)[column]
            offsets = np.cumsum(np.r_[0, [group_starts[g + 1] - group_starts[g] for g in wanted]])
            at = offsets[np.searchsorted(wanted, groups)] + (local - group_starts[groups])
            out.append((picks, values.take(pa.array(at, pa.int64())).combine_chunks()))
    return out
