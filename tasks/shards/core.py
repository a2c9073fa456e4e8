"""Parquet layout of curated documents: the explicit schema, atomic writes, balanced shard plans.

Two kinds of files use the same document columns:
- *unit files* (`_work/units/<key>.parquet`): everything one work unit kept, plus the dedup columns
  (`exact_key`, `minhash`, `n_bytes`); they make reruns free and feed global dedup;
- *shards* (`data/shard-00000-of-00004.parquet`): the deduplicated corpus, balanced by text bytes.

Every file is written to a temporary name and renamed, so a reader never sees half a file; local files are
fsynced before and after the rename (`tasks.common.durable`), so a power loss does not leave one either.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import os
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from tasks.clean.core import SIGNAL_NAMES
from tasks.common.documents import Document
from tasks.common.durable import replace_durably

DOC_FIELDS: list[pa.Field] = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("text", pa.large_string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),
    pa.field("url", pa.string()),
    pa.field("title", pa.string()),
    pa.field("date", pa.string()),
    pa.field("origin", pa.string(), nullable=False),
    pa.field("lang", pa.string()),
    pa.field("lang_score", pa.float32()),
    *(pa.field(name, pa.float32()) for name in SIGNAL_NAMES),
]
DOC_SCHEMA = pa.schema(DOC_FIELDS)
DOC_COLUMNS = DOC_SCHEMA.names


def unit_schema(num_perm: int, lsh: tuple[int, int] | None = None) -> pa.Schema:
    """Document columns plus what global dedup needs, so it never re-reads text.

    With `lsh=(bands, rows)` the file also holds each row's LSH band keys (`band_keys`, `bands` uint64 values,
    `tasks.dedup.lsh.band_key_matrix`), and its schema metadata says for which banding (`lmpipe.lsh`: "18x7"):
    global dedup then groups rows by them without touching the signatures (see `unit_band_keys`).
    """
    fields = [
        *DOC_FIELDS,
        pa.field("n_bytes", pa.int64(), nullable=False),
        pa.field("exact_key", pa.binary(16), nullable=False),
        pa.field("minhash", pa.list_(pa.uint32(), num_perm), nullable=False),
    ]
    if lsh is None:
        return pa.schema(fields)
    fields.append(pa.field("band_keys", pa.list_(pa.uint64(), lsh[0]), nullable=False))
    return pa.schema(fields, metadata={LSH_METADATA_KEY: f"{lsh[0]}x{lsh[1]}"})


LSH_METADATA_KEY = b"lmpipe.lsh"


def documents_to_columns(docs: Sequence[Document]) -> dict[str, list]:
    """Column lists in DOC_SCHEMA order for a batch of documents."""
    cols: dict[str, list] = {
        "id": [d.id for d in docs],
        "text": [d.text for d in docs],
        "source": [d.source for d in docs],
        "url": [d.url for d in docs],
        "title": [d.title for d in docs],
        "date": [d.date for d in docs],
        "origin": [d.origin for d in docs],
        "lang": [d.lang for d in docs],
        "lang_score": [d.lang_score for d in docs],
    }
    for name in SIGNAL_NAMES:
        cols[name] = [d.signals.get(name) for d in docs]
    return cols


def writer_options(compression_level: int) -> dict:
    """Parquet options shared by every writer: zstd, stats on, no wall-clock metadata (byte-stable)."""
    return {"compression": "zstd", "compression_level": compression_level, "write_statistics": True}


class AtomicParquetWriter:
    """Stream row groups into `<path>.tmp-<uuid>` and rename to `path` on `commit()`."""

    def __init__(self, path: str, schema: pa.Schema, compression_level: int = 3):
        self.fs, self.path = url_to_fs(path)
        parent = os.path.dirname(self.path)
        if parent:
            self.fs.makedirs(parent, exist_ok=True)
        self.tmp = f"{self.path}.tmp-{uuid.uuid4().hex[:8]}"
        self._file = self.fs.open(self.tmp, "wb")
        self._writer = pq.ParquetWriter(self._file, schema, **writer_options(compression_level))
        self.schema = schema
        self.rows = 0

    def write(self, table: pa.Table, row_group_rows: int) -> None:
        if table.num_rows:
            self._writer.write_table(table.cast(self.schema), row_group_size=row_group_rows)
            self.rows += table.num_rows

    def commit(self) -> None:
        self._writer.close()
        self._file.close()
        replace_durably(self.tmp, self.path, self.fs)  # fsync, rename, fsync the folder (local files)

    def abort(self) -> None:
        try:
            self._writer.close()
            self._file.close()
        finally:
            if self.fs.exists(self.tmp):
                self.fs.rm(self.tmp)


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Write a small file (JSON, markdown) to a temp name, then rename durably (`replace_durably`)."""
    fs, p = url_to_fs(path)
    parent = os.path.dirname(p)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = f"{p}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open(tmp, "wb") as f:
        f.write(data)
    replace_durably(tmp, p, fs)


def file_sha256(path: str) -> tuple[str, int]:
    """(sha256 hex, size in bytes) of a file at any fsspec URL."""
    digest = hashlib.sha256()
    size = 0
    with fsspec.open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


@dataclass(frozen=True, slots=True)
class ShardSlice:
    """Rows of one unit file, in unit order: `rows`, or (`kept_file` set) rows `kept_range` = [start, stop) of
    that kept-row file's `row` column (the Ray engine's plan: O(1) per slice, the rows read by the shard task)."""

    unit_path: str
    rows: tuple[int, ...] = ()
    kept_file: str | None = None
    kept_range: tuple[int, int] = (0, 0)

    def unit_rows(self) -> Sequence[int]:
        if self.kept_file is None:
            return self.rows
        return read_kept_rows(self.kept_file)[0][self.kept_range[0] : self.kept_range[1]].tolist()


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """One output shard: where it goes and which unit rows it holds, in order."""

    index: int
    count: int
    path: str
    slices: tuple[ShardSlice, ...]
    rows: int
    text_bytes: int

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


def shard_name(index: int, count: int) -> str:
    return f"shard-{index:05d}-of-{count:05d}.parquet"


@dataclass(frozen=True)
class KeptRows:
    """The rows that survive dedup, in corpus order, as arrays (about 20 bytes per row, no Python objects):
    row i is row `row[i]` of unit file `paths[unit[i]]`, with `n_bytes[i]` bytes of text.
    Iterating gives `(unit_path, row, text_bytes)` tuples."""

    paths: tuple[str, ...]
    unit: np.ndarray     # (k,) int32 index into paths
    row: np.ndarray      # (k,) int64 row within its unit file
    n_bytes: np.ndarray  # (k,) int64

    @classmethod
    def from_tuples(cls, kept: Iterable[tuple[str, int, int]]) -> KeptRows:
        rows = list(kept)
        paths = tuple(dict.fromkeys(p for p, _, _ in rows))
        index = {p: i for i, p in enumerate(paths)}
        return cls(paths, np.asarray([index[p] for p, _, _ in rows], np.int32),
                   np.asarray([r for _, r, _ in rows], np.int64), np.asarray([b for _, _, b in rows], np.int64))

    def __len__(self) -> int:
        return int(self.row.size)

    def __iter__(self) -> Iterator[tuple[str, int, int]]:
        for u, r, b in zip(self.unit.tolist(), self.row.tolist(), self.n_bytes.tolist()):
            yield self.paths[u], r, b


KEPT_ROWS_SCHEMA = pa.schema([pa.field("row", pa.int64(), nullable=False),
                              pa.field("n_bytes", pa.int64(), nullable=False)])


def read_kept_rows(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(rows, text bytes) of one kept-row file (`KEPT_ROWS_SCHEMA`, rows ascending)."""
    fs, fpath = url_to_fs(path)
    table = pq.read_table(fpath, filesystem=fs)
    return table["row"].to_numpy(), table["n_bytes"].to_numpy()


@dataclass(frozen=True)
class KeptRowFiles:
    """The survivors as one small Parquet file per unit (`KEPT_ROWS_SCHEMA`), as the Ray dedup job writes them:
    what the driver holds is per unit (its file, kept count and text bytes), and each file is read on its own.
    Iterating gives the same `(unit_path, row, text_bytes)` tuples, in corpus order, as `KeptRows`."""

    paths: tuple[str, ...]         # unit files, in corpus order
    files: tuple[str | None, ...]  # kept-row file of each unit (None: nothing kept)
    counts: tuple[int, ...]
    text_bytes: tuple[int, ...]

    def __len__(self) -> int:
        return sum(self.counts)

    def __iter__(self) -> Iterator[tuple[str, int, int]]:
        for path, file in zip(self.paths, self.files):
            if file:
                rows, n_bytes = read_kept_rows(file)
                for r, b in zip(rows.tolist(), n_bytes.tolist()):
                    yield path, r, b


def plan_balanced_shards(
    kept: KeptRows | KeptRowFiles | Iterable[tuple[str, int, int]], data_dir: str, target_bytes: int
) -> list[ShardPlan]:
    """Split kept rows `(unit_path, row, text_bytes)`, in corpus order, into balanced shards.

    The shard count is `ceil(total / target)`; row `i` goes to shard `floor(bytes_before_i * k / total)`,
    so every shard holds close to `total / k` bytes (documents are never split). The plan depends only
    on the kept rows and the target, never on worker count.
    """
    if isinstance(kept, KeptRowFiles):
        return _plan_kept_files(kept, data_dir, target_bytes)
    if not isinstance(kept, KeptRows):
        kept = KeptRows.from_tuples(kept)
    total = int(kept.n_bytes.sum())
    count = min(max(1, math.ceil(total / target_bytes)), len(kept)) if len(kept) else 0
    before = np.cumsum(kept.n_bytes) - kept.n_bytes
    index = np.minimum(count - 1, before * count // total) if total else np.zeros(len(kept), np.int64)
    bounds = np.searchsorted(index, np.arange(count + 1), side="left")  # index is non-decreasing
    plans = []
    for shard in range(count):
        lo, hi = int(bounds[shard]), int(bounds[shard + 1])
        units, rows = kept.unit[lo:hi], kept.row[lo:hi]
        runs = np.r_[0, np.flatnonzero(units[1:] != units[:-1]) + 1, hi - lo] if hi > lo else np.zeros(1, np.int64)
        slices = tuple(ShardSlice(kept.paths[int(units[a])], tuple(rows[a:b].tolist()))
                       for a, b in zip(runs[:-1].tolist(), runs[1:].tolist()))
        plans.append(ShardPlan(index=shard, count=count, path=f"{data_dir.rstrip('/')}/{shard_name(shard, count)}",
                               slices=slices, rows=hi - lo, text_bytes=int(kept.n_bytes[lo:hi].sum())))
    return plans


def _plan_kept_files(kept: KeptRowFiles, data_dir: str, target_bytes: int) -> list[ShardPlan]:
    """`plan_balanced_shards` one unit's kept-row file at a time: the same shards, each slice a range of a file."""
    total, n = sum(kept.text_bytes), len(kept)
    count = min(max(1, math.ceil(total / target_bytes)), n) if n else 0
    slices: list[list[ShardSlice]] = [[] for _ in range(count)]
    rows, text_bytes = [0] * count, [0] * count
    offset = 0
    for path, file in zip(kept.paths, kept.files):
        if not file:
            continue
        _, n_bytes = read_kept_rows(file)
        before = offset + np.cumsum(n_bytes) - n_bytes
        offset += int(n_bytes.sum())
        index = np.minimum(count - 1, before * count // total) if total else np.zeros(n_bytes.size, np.int64)
        runs = np.r_[0, np.flatnonzero(index[1:] != index[:-1]) + 1, index.size]
        for a, b in zip(runs[:-1].tolist(), runs[1:].tolist()):
            shard = int(index[a])
            slices[shard].append(ShardSlice(path, kept_file=file, kept_range=(a, b)))
            rows[shard] += b - a
            text_bytes[shard] += int(n_bytes[a:b].sum())
    return [ShardPlan(index=i, count=count, path=f"{data_dir.rstrip('/')}/{shard_name(i, count)}",
                      slices=tuple(slices[i]), rows=rows[i], text_bytes=text_bytes[i]) for i in range(count)]


def row_group_runs(rows: Sequence[int], group_starts: Sequence[int]) -> Iterator[tuple[int, list[int]]]:
    """Split unit row indices, in their order, into runs that lie in one row group: (group, local indices).

    `group_starts` holds the first row of every row group plus the total row count at the end. Rows in
    ascending order (as plans hold them) give one run per row group touched.
    """
    group, local = -1, []
    for row in rows:
        if not 0 <= row < group_starts[-1]:
            raise IndexError(f"row {row} is outside a unit of {group_starts[-1]} rows")
        g = bisect.bisect_right(group_starts, row) - 1
        if g != group and local:
            yield group, local
            local = []
        group = g
        local.append(row - group_starts[g])
    if local:
        yield group, local


def iter_slice_chunks(piece: ShardSlice, chunk_rows: int) -> Iterator[pa.Table]:
    """The rows of one slice as tables of exactly `chunk_rows` rows (the last one shorter), one contiguous chunk each.

    Only the document columns of one unit row group are read at a time and released once their rows are
    taken, so memory is bounded by a row group plus one output chunk, never by the unit. Each chunk is
    written as one row group, which is where the old whole-slice `write_table` cut them too: the output
    bytes do not change.
    """
    fs, path = url_to_fs(piece.unit_path)
    with fs.open(path, "rb") as f:
        unit = pq.ParquetFile(f)
        meta = unit.metadata
        starts = [0]
        for g in range(meta.num_row_groups):
            starts.append(starts[-1] + meta.row_group(g).num_rows)
        pending: list[pa.Table] = []
        buffered = 0
        for group, local in row_group_runs(piece.unit_rows(), starts):
            # One thread: shards already run side by side, and per-thread allocator arenas doubled the peak.
            columns = unit.read_row_group(group, columns=DOC_COLUMNS, use_threads=False)
            taken = columns.take(pa.array(local, pa.int64()))
            del columns
            pending.append(taken)
            buffered += taken.num_rows
            if buffered < chunk_rows:
                continue
            table = pa.concat_tables(pending).combine_chunks()  # one contiguous array per column, as before
            offset = 0
            while buffered - offset >= chunk_rows:
                yield table.slice(offset, chunk_rows)
                offset += chunk_rows
            rest = table.slice(offset)
            pending, buffered = ([rest] if rest.num_rows else []), rest.num_rows
        if buffered:
            yield pa.concat_tables(pending).combine_chunks()


def write_shard(plan: ShardPlan, row_group_rows: int, compression_level: int) -> dict:
    """Stream the planned rows from unit files into one shard, row group by row group; returns its manifest entry."""
    writer = AtomicParquetWriter(plan.path, DOC_SCHEMA, compression_level)
    try:
        for piece in plan.slices:
            for chunk in iter_slice_chunks(piece, row_group_rows):
                writer.write(chunk, row_group_rows)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    sha, size = file_sha256(plan.path)
    return {"path": plan.name, "rows": writer.rows, "bytes": size, "text_bytes": plan.text_bytes, "sha256": sha}


T = TypeVar("T")


class _Future(Protocol):
    def result(self) -> Any: ...


def bounded_in_order(submit: Callable[[T], _Future], items: Iterable[T], limit: int) -> Iterator[Any]:
    """Submit `items` with at most `limit` in flight; yield their results in item order.

    A window, not a map: the next item is submitted only once the oldest one finished, so a corpus of
    thousands of shards never has more than `limit` of them reading and writing at once.

    Nothing outlives it: when a result raises, or the caller stops early (an exception in its loop, `close()`),
    the items still in flight are cancelled where the future allows it and waited for otherwise, before the
    exception leaves. The caller's lock on the output is thus never released while a shard is being written.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    window: deque[_Future] = deque()
    try:
        for item in items:
            window.append(submit(item))
            if len(window) >= limit:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
    finally:
        _settle(window)


def _settle(futures: Iterable[Any]) -> None:
    """Cancel the futures that have not started (where they can be cancelled), then wait for every one of them.

    Their own errors are dropped here: the error that is already leaving (or the caller's) is the one to report.
    """
    pending = list(futures)
    for future in pending:
        if callable(getattr(future, "cancel", None)):
            future.cancel()  # concurrent.futures: only a future that has not started; Prefect's have no cancel
    for future in pending:
        if callable(getattr(future, "wait", None)):
            future.wait()  # PrefectFuture: waits for the final state, never raises the task's error
            continue
        try:
            future.result()
        except Exception:  # noqa: BLE001 - cancelled or failed: either way it no longer runs
            pass
