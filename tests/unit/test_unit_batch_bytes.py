"""MinHash batches are bounded by text bytes, not only by document count.

MinHash holds about 23x its batch's text at its peak, and a batch was 256 documents whatever their size: 256
pages of 1 MB meant about 6 GB. A batch now also ends once its text reaches `BATCH_BYTES` (8 MB).
The memory test runs the unit at a small scale (`BATCH_BYTES` lowered to 128 KB, 48 documents of 64 KB) with the
cleaner replaced by a pass-through (its cost is not what is measured), and compares tracemalloc's peak with a
run whose batch holds every document, as before.
"""

from __future__ import annotations

import random
import tracemalloc

import numpy as np
import pyarrow.parquet as pq

from data_specs import load_curate_spec
from tasks.common.documents import Document
from tasks.dedup.core import MinHasher
from tasks.sources.core import WorkUnit
from tasks.units import core
from tests.flows.helpers import write_spec

WORDS = [f"w{i}" for i in range(5000)]


def _docs(n: int, size: int) -> list[Document]:
    rng = random.Random(7)
    return [Document(id=f"cc/{i}", text=" ".join(rng.choices(WORDS, k=size // 4))[:size], source="cc", origin="x")
            for i in range(n)]


def test_batches_end_at_count_or_bytes_whichever_first():
    class Doc:  # only the text's length matters
        def __init__(self, n: int):
            self.text = "x" * n

    big = [Doc(1 << 20) for _ in range(32)]  # 32 documents of 1 MB: batches of 8 (8 MB), not one of 32
    assert [len(b) for b in core._batches(big, core.BATCH_DOCS, core.BATCH_BYTES)] == [8, 8, 8, 8]
    small = [Doc(100) for _ in range(600)]  # small documents: still cut by count
    assert [len(b) for b in core._batches(small, 256, core.BATCH_BYTES)] == [256, 256, 88]
    huge = [Doc(20 << 20), Doc(10)]  # one document over the cap is a batch of its own
    assert [len(b) for b in core._batches(huge, 256, core.BATCH_BYTES)] == [1, 1]


def _unit_peak(tmp_path, monkeypatch, docs, batch_bytes: int, name: str) -> tuple[int, str]:
    monkeypatch.setattr(core, "read_unit", lambda source, unit: iter(docs))
    monkeypatch.setattr(core, "Cleaner", lambda *a: (lambda records, stats: records))  # noqa: ARG005
    monkeypatch.setattr(core, "BATCH_BYTES", batch_bytes, raising=False)
    spec = load_curate_spec(write_spec(tmp_path / "spec.yaml", tmp_path / "out",
                                       sources=[{"kind": "common_crawl", "paths": [str(tmp_path / "x.warc.gz")]}]))
    unit = WorkUnit(0, "common_crawl", str(tmp_path / f"{name}.warc.gz"), content="sha256:fake")
    tracemalloc.start()
    try:
        result = core.process_unit(spec.sources[0], unit, spec.clean, spec.dedup.minhash, str(tmp_path / name))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, result.path


def test_minhash_peak_is_bounded_by_batch_bytes(tmp_path, monkeypatch):
    docs = _docs(48, 64 << 10)  # 3 MB of text
    text = sum(len(d.text) for d in docs)
    bounded, path = _unit_peak(tmp_path, monkeypatch, docs, 128 << 10, "bounded")
    whole, whole_path = _unit_peak(tmp_path, monkeypatch, docs, 1 << 40, "whole")  # one batch: the old behaviour
    # about 30 MB of the bounded peak is MinHash's fixed permutation block (CHUNK_BYTES) and its companions
    print(f"peak with 128 KB batches {bounded / 1e6:.0f} MB, one 3 MB batch {whole / 1e6:.0f} MB")
    assert whole > 15 * text  # the batch's text times the MinHash blow-up
    assert bounded < whole / 2
    # same rows and signatures, whatever the batching
    a, b = pq.read_table(path), pq.read_table(whole_path)
    assert a.num_rows == b.num_rows == 48 and a.column("id").equals(b.column("id"))
    assert a.column("minhash").equals(b.column("minhash"))
    spec = load_curate_spec(write_spec(tmp_path / "spec.yaml", tmp_path / "out"))
    expected = MinHasher(spec.dedup.minhash).signatures([d.text for d in docs[:2]])
    assert np.array_equal(np.array(a.column("minhash").to_pylist()[:2], dtype=np.uint32), expected)
