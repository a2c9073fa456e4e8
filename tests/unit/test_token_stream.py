"""The per-rank token stream: rank r's k-th micro-batch is a pure function of (k, r, world), a seek equals a replay
and reads O(1) row groups, ranks get equal, disjoint shares, epochs wrap, and read errors reach the consumer."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from cluster.train.token_stream import TokenStream, batches_per_rank, index_shards

T = 4  # tokens per row


def _shards(root, sizes=(23, 17, 11), row_group=5):
    """Shards whose row i (global, in order) is [i, i, i, i]: a batch's values name the rows it holds."""
    paths, start = [], 0
    for s, n in enumerate(sizes):
        ids = np.repeat(np.arange(start, start + n, dtype=np.int32), T)
        table = pa.table({"input_ids": pa.FixedSizeListArray.from_arrays(pa.array(ids), T),
                          "source": ["x"] * n})
        path = root / f"shard-{s}.parquet"
        pq.write_table(table, path, row_group_size=row_group)  # groups cut across batches on purpose
        paths.append(str(path))
        start += n
    return paths


def _expected(total, batch, rank, world, k):
    """Written from the definition, not the module: epoch = floor(total / (batch·world)) batches per rank; rank r
    takes global batches r, r+world, ...; the tail rows that fill no full round are dropped."""
    per_rank = total // (batch * world)
    g = (k % per_rank) * world + rank
    return torch.arange(g * batch, (g + 1) * batch)[:, None].expand(batch, T)


def _take(stream, n):
    return [next(stream) for _ in range(n)]


@pytest.mark.parametrize("world", [1, 2, 3])
def test_each_rank_reads_its_batches_by_definition(tmp_path, world):
    paths = _shards(tmp_path)
    assert index_shards(paths).total_rows == 51
    for rank in range(world):
        with TokenStream(paths, 4, rank=rank, world_size=world) as stream:
            got = _take(stream, 30)  # several epochs
        assert all(torch.equal(b, _expected(51, 4, rank, world, k)) for k, b in enumerate(got)), (rank, world)
        assert got[0].dtype == torch.int64 and got[0].shape == (4, T)


def test_ranks_get_equal_disjoint_shares_and_epochs_wrap(tmp_path):
    paths = _shards(tmp_path)
    per_rank = batches_per_rank(51, 4, 2)
    assert per_rank == 6  # 51 rows // (4 × 2): 48 rows used per epoch, 3 dropped
    epochs = {}
    for rank in range(2):
        with TokenStream(paths, 4, rank=rank, world_size=2, prefetch=0) as stream:
            epochs[rank] = _take(stream, 2 * per_rank)
    rows = {r: torch.cat(e[:per_rank])[:, 0].tolist() for r, e in epochs.items()}
    assert len(rows[0]) == len(rows[1]) and not set(rows[0]) & set(rows[1])
    assert sorted(rows[0] + rows[1]) == list(range(48))
    for r in range(2):  # the second epoch repeats the first
        assert all(torch.equal(a, b) for a, b in zip(epochs[r][:per_rank], epochs[r][per_rank:]))


def test_seek_equals_replay_and_reads_constant_row_groups(tmp_path, monkeypatch):
    paths = _shards(tmp_path)
    with TokenStream(paths, 4, rank=1, world_size=2) as replay:
        reference = _take(replay, 40)
    reads = []
    original = pq.ParquetFile.read_row_group
    monkeypatch.setattr(pq.ParquetFile, "read_row_group",
                        lambda self, i, **kw: (reads.append(i), original(self, i, **kw))[1])
    for k in (0, 5, 6, 17, 33):
        reads.clear()
        with TokenStream(paths, 4, rank=1, world_size=2, start=k, prefetch=0) as seek:
            first = next(seek)
            assert len(reads) <= 2  # one batch spans at most two row groups: no replay of the k before it
            rest = _take(seek, 40 - k - 1)
            assert seek.position == 40
        assert all(torch.equal(a, b) for a, b in zip([first, *rest], reference[k:])), k
    reads.clear()
    with TokenStream(paths, 4, rank=0, world_size=1, start=10**9, prefetch=0) as far:  # millions of steps in
        assert torch.equal(next(far), _expected(51, 4, 0, 1, 10**9)) and len(reads) <= 2


def test_too_few_rows_and_read_errors_are_reported(tmp_path, monkeypatch):
    paths = _shards(tmp_path, sizes=(7,))
    with pytest.raises(ValueError, match="lower train.micro_batch_size or scaling.num_workers"):
        TokenStream(paths, 4, rank=0, world_size=2)
    paths = _shards(tmp_path, sizes=(20,))
    original, calls = pq.ParquetFile.read_row_group, []

    def flaky(self, i, **kw):  # the disk fails on the third row group read, in the prefetch thread
        calls.append(i)
        if len(calls) == 3:
            raise OSError("injected read error")
        return original(self, i, **kw)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", flaky)
    stream = TokenStream(paths, 5, rank=0, world_size=1, prefetch=2)  # a batch = a row group
    try:
        assert len(_take(stream, 2)) == 2
        with pytest.raises(RuntimeError, match="reading token shards failed at micro-batch 2") as err:
            next(stream)
        assert isinstance(err.value.__cause__, OSError)
    finally:
        stream.close()
    assert not stream._thread.is_alive()  # noqa: SLF001 - close() stops the reader thread


def test_more_shards_than_open_file_limit(tmp_path):
    """200 shards under a soft `ulimit -n` of (open now + 40): the stream keeps an LRU of open shards (16), so it
    reads every batch of two epochs correctly instead of failing with "Too many open files"."""
    resource = pytest.importorskip("resource")
    paths = _shards(tmp_path, sizes=(3,) * 200, row_group=2)  # batches of 4 straddle shards and row groups
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 40, hard))
    try:
        for prefetch in (0, 2):
            with TokenStream(paths, 4, prefetch=prefetch) as stream:
                got = _take(stream, 2 * 150)  # 600 rows // 4 = 150 batches per epoch: two epochs
            assert all(torch.equal(b, _expected(600, 4, 0, 1, k)) for k, b in enumerate(got)), prefetch
            assert stream.position == 300
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
