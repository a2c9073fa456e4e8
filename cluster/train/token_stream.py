"""Each data-parallel rank's pretraining micro-batches, read straight from the Parquet token shards.

What it gives: `TokenStream(paths, batch_size, rank=r, world_size=w, start=k)` yields rank r's (B, T) batches of
token ids from its k-th micro-batch on, epoch after epoch, forever. Rank r's k-th batch is a pure function of
(k, r, w, B, the shards' row counts), so a resumed job reads exactly what an uninterrupted one would have, and
starting at k costs one row-group read, not k batch reads.

The layout: the shards (manifest order) form one sequence of N fixed-length rows. An epoch is
G = N // (B·w) batches per rank (`drop_last`: every rank gets the same count, so DDP ranks never wait on one
another at an epoch end); global batch g covers rows [g·B, (g+1)·B), and rank r takes g = j·w + r for
j = 0 .. G-1. The w ranks of one step therefore read w neighbouring batches, and with w = 1 the stream is the
shards in order. Epochs repeat the same order (the tokenize stage already mixed the sources).

Why not Ray Data (ray 2.60), which fed training before:
- `streaming_split` (what `get_dataset_shard` returns) hands each block to whichever split has received the
  fewest rows when the block is ready ("OutputSplitter does not provide any ordering guarantees"), and the
  blocks come from read tasks whose number Ray picks from the cluster's CPUs: which rows rank r reads is not a
  function of (r, w), so "what an uninterrupted run would have read" was not defined;
- a `DataIterator` cannot start at a row offset (there is no skip/offset API), so a resume had to replay
  every consumed batch, a cost that grew with the steps already done.
Fixed-length rows make the direct read trivial: Parquet metadata alone says where any row lives.

Reads run in a background thread that keeps `prefetch` batches ready (bounded queue), so a GPU step does not
wait on Parquet decoding; batches come as int64 (what embedding lookups take) and `pin_memory=True` (GPU runs)
pins each one for an asynchronous copy to the device.
"""

from __future__ import annotations

import bisect
import queue
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq
import torch

# Shards kept open at once (least recently used closed first): a job over thousands of shards must not hit
# `ulimit -n`. Reads move through the shards in order, so a handful already makes reopening rare.
MAX_OPEN_SHARDS = 16


@dataclass(frozen=True)
class RowIndex:
    """Where every row of the shards lives: row groups in order, each with its first global row."""

    paths: tuple[str, ...]
    groups: tuple[tuple[int, int], ...]  # (shard index, row group index), in row order
    starts: tuple[int, ...]  # first global row of each group; same length as `groups`
    total_rows: int


def index_shards(paths: Sequence[str]) -> RowIndex:
    """Read the shards' Parquet footers (no data) into a `RowIndex`."""
    groups, starts, total = [], [], 0
    for s, path in enumerate(paths):
        with pq.ParquetFile(path) as f:  # closed at once: thousands of shards must not pile up open files
            meta = f.metadata
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            if n:
                groups.append((s, g))
                starts.append(total)
                total += n
    return RowIndex(tuple(paths), tuple(groups), tuple(starts), total)


def batches_per_rank(total_rows: int, batch_size: int, world_size: int) -> int:
    """Micro-batches each rank gets per epoch (full batches only, equal for every rank)."""
    n = total_rows // (batch_size * world_size)
    if n == 0:
        raise ValueError(
            f"{total_rows} training rows hold no full micro-batch of {batch_size} for each of {world_size} "
            "worker(s): lower train.micro_batch_size or scaling.num_workers, or tokenize more data"
        )
    return n


def first_row(k: int, *, rank: int, world_size: int, batch_size: int, per_rank: int) -> int:
    """The first global row of rank `rank`'s k-th micro-batch (0-based, counting across epochs)."""
    j = k % per_rank  # position within the epoch
    return (j * world_size + rank) * batch_size


class _RowReader:
    """Reads row ranges, keeping the last decoded row group: consecutive batches decode each group once.

    At most `max_open` shards are open at a time (an LRU of `ParquetFile`s); an evicted shard is closed and
    reopened on its next read, which changes nothing in what is read.
    """

    def __init__(self, index: RowIndex, column: str, max_open: int = MAX_OPEN_SHARDS):
        self.index, self.column, self.max_open = index, column, max(1, max_open)
        self._files: OrderedDict[int, pq.ParquetFile] = OrderedDict()
        self._cached: tuple[int, np.ndarray] | None = None  # (group position, its rows as (n, T))

    def _file(self, shard: int) -> pq.ParquetFile:
        """The shard's open `ParquetFile`, opening it (and closing the least recently used) when needed."""
        f = self._files.get(shard)
        if f is not None:
            self._files.move_to_end(shard)
            return f
        while len(self._files) >= self.max_open:
            self._files.popitem(last=False)[1].close()
        f = self._files[shard] = pq.ParquetFile(self.index.paths[shard])
        return f

    def close(self) -> None:
        """Close every open shard."""
        while self._files:
            self._files.popitem()[1].close()

    def _group(self, pos: int) -> np.ndarray:
        if self._cached is None or self._cached[0] != pos:
            shard, group = self.index.groups[pos]
            col = self._file(shard).read_row_group(group, columns=[self.column]).column(self.column).combine_chunks()
            self._cached = (pos, col.flatten().to_numpy().reshape(len(col), -1))
        return self._cached[1]

    def rows(self, start: int, n: int) -> np.ndarray:
        """Rows [start, start + n) as an (n, T) array."""
        parts, row = [], start
        while row < start + n:
            pos = bisect.bisect_right(self.index.starts, row) - 1
            rows = self._group(pos)
            offset = row - self.index.starts[pos]
            parts.append(rows[offset : offset + (start + n - row)])
            row += len(parts[-1])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


class TokenStream(Iterator[torch.Tensor]):
    """Rank `rank`'s endless stream of (B, T) token-id batches, starting at its `start`-th micro-batch.

    `position` is the number of batches handed out so far, counted from the job's start (`start` + yielded):
    what a checkpoint saves and `start=` takes back. Close it (or use `with`) to stop the prefetch thread.
    """

    def __init__(self, paths: Sequence[str], batch_size: int, *, rank: int = 0, world_size: int = 1,
                 start: int = 0, column: str = "input_ids", prefetch: int = 4, pin_memory: bool = False):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.index = index_shards(paths)
        self.per_rank = batches_per_rank(self.index.total_rows, batch_size, world_size)
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.position = start
        self._reader = _RowReader(self.index, column)
        self._pin = pin_memory
        self._stop = threading.Event()
        self._queue: queue.Queue | None = None
        if prefetch > 0:
            self._queue = queue.Queue(maxsize=prefetch)
            self._thread = threading.Thread(target=self._produce, args=(start,), name="token-stream", daemon=True)
            self._thread.start()

    def _read(self, k: int) -> torch.Tensor:
        """This rank's k-th micro-batch, read now (by the prefetch thread, or inline when prefetch=0)."""
        row = first_row(k, rank=self.rank, world_size=self.world_size, batch_size=self.batch_size,
                        per_rank=self.per_rank)
        # int64 here, in the reader thread: the loop's `.long()` is then a no-op and a pinned batch stays pinned
        out = torch.from_numpy(np.array(self._reader.rows(row, self.batch_size), dtype=np.int64))
        return out.pin_memory() if self._pin else out

    def _produce(self, k: int) -> None:
        try:
            while not self._stop.is_set():
                item = self._read(k)
                k += 1
                while not self._put(item):
                    if self._stop.is_set():
                        return
        except BaseException as exc:  # handed to the consumer, raised there
            while not self._put(exc) and not self._stop.is_set():
                pass

    def _put(self, item: object) -> bool:
        try:
            self._queue.put(item, timeout=0.1)  # wakes up to notice close()
            return True
        except queue.Full:
            return False

    def __next__(self) -> torch.Tensor:
        if self._queue is None:
            item = self._read(self.position)
        else:
            if self._stop.is_set():
                raise StopIteration
            item = self._queue.get()
            if isinstance(item, BaseException):
                self._stop.set()  # the reader thread has ended: later calls end the stream instead of waiting
                raise RuntimeError(f"reading token shards failed at micro-batch {self.position}") from item
        self.position += 1
        return item

    def close(self) -> None:
        """Stop the prefetch thread (idempotent)."""
        self._stop.set()
        if self._queue is not None:
            self._thread.join(timeout=5)
            if self._thread.is_alive():
                return  # still reading: its files close when the process ends
        self._reader.close()

    def __enter__(self) -> TokenStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
