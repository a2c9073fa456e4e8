"""Exact verification reads each wanted text once (issue 14, section 3), however scattered the ambiguous pairs.

Before: `ExactJaccard` settled the pairs in blocks of `block_pairs` and loaded each block's texts, so every
block re-read every row group that held one of its rows. With pairs scattered over the corpus a block re-read
almost all of the text, and the number of blocks grows with n: O(n²) bytes. The corpus here has every document
in one ambiguous pair with a document far away (planted signatures whose estimate lies within the exact margin,
texts whose exact Jaccard falls on both sides of the threshold), in unit files of 256-row row groups, as the
unit stage writes them. Blocks are forced small (`block_pairs=64`) so that 4 k documents behave as 1 M do at
the default block size. Bytes read are counted at pyarrow (every `ParquetFile.read_row_group(s)` that returns a
`text` column), apart from the counters the code reports; the decisions are checked against the in-memory
reference of `test_dedup_streaming.py` and against Jaccard computed from the texts directly.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import tasks.corpus.core as corpus_core
import tasks.corpus.ray_dedup as ray_dedup
from data_specs import DedupSpec
from tasks.corpus.unit_files import load_texts
from tasks.dedup.synthetic import jaccard
from tasks.shards.core import AtomicParquetWriter, unit_schema
from tasks.units.core import UnitResult
from tests.unit.test_dedup_streaming import _assert_same, _reference_dedup, _streaming

SPEC = DedupSpec()
N = 4096  # documents: 2,048 ambiguous pairs, 16 row groups of 256 rows
ROW_GROUP = 256


class _Corpus:
    def __init__(self, results: list[UnitResult], texts: list[str], ids: list[str], pairs: np.ndarray):
        self.results, self.texts, self.ids, self.pairs = results, texts, ids, pairs  # pairs: (k, 2) corpus rows
        self.paths = [r.path for r in results]
        self.starts = np.r_[0, np.cumsum([r.kept for r in results])].astype(np.int64)
        self.text_bytes = sum(len(t.encode()) for t in texts)

    def verified(self) -> set[tuple[int, int]]:
        """The pairs whose exact shingle Jaccard reaches the threshold, computed from the texts."""
        mh = SPEC.minhash
        return {(int(a), int(b)) for a, b in self.pairs
                if jaccard(self.texts[a], self.texts[b], mh.ngram) >= mh.threshold}


def _paired_corpus(root: Path, n: int, seed: int) -> _Corpus:
    """n documents in n/2 scattered pairs, every pair ambiguous (estimate about 0.81, margin 0.15 around 0.8)."""
    mh = SPEC.minhash
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 20_000, (n, 40))
    sig = rng.integers(0, 2**32 - 1, (n, mh.num_perm), dtype=np.uint64).astype(np.uint32)
    perm = rng.permutation(n)
    a, b = perm[0::2], perm[1::2]
    same = rng.random((a.size, mh.num_perm)) < 0.8
    same[:, : mh.rows] = True  # band 0 equal: each pair is an LSH candidate, and no other pair is
    sig[b] = np.where(same, sig[a], sig[b])
    changed = rng.random((a.size, 40)) < rng.uniform(0.0, 0.06, (a.size, 1))  # 0 to a few of 40 words
    base[b] = np.where(changed, base[b], base[a])
    texts = [" ".join(f"w{w}" for w in row) for row in base]
    ids = [f"doc/{i:06d}" for i in rng.permutation(n)]
    keys = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    schema = unit_schema(mh.num_perm)
    results, cuts = [], [0, n // 5, n // 2, n - 300, n]
    for u, (lo, hi) in enumerate(zip(cuts[:-1], cuts[1:])):
        k = hi - lo
        cols = {f.name: pa.nulls(k, f.type) for f in schema if f.nullable}
        cols.update(id=ids[lo:hi], text=texts[lo:hi], source=["common_crawl"] * k, origin=["g"] * k,
                    lang=["en"] * k, n_bytes=[len(t) for t in texts[lo:hi]],
                    exact_key=pa.array([bytes(x) for x in keys[lo:hi]], pa.binary(16)),
                    minhash=pa.FixedSizeListArray.from_arrays(pa.array(sig[lo:hi].ravel(), pa.uint32()), mh.num_perm))
        path = str(root / f"unit-{u}.parquet")
        writer = AtomicParquetWriter(path, schema)
        writer.write(pa.table({f.name: cols[f.name] for f in schema}, schema=schema), ROW_GROUP)
        writer.commit()
        results.append(UnitResult(key=f"u{u}", label=f"u{u}", source_index=0, kind="generated", url=f"gen://{u}",
                                  start=None, end=None, path=path, kept=k))
    return _Corpus(results, texts, ids, np.sort(np.stack([a, b], axis=1), axis=1))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> _Corpus:
    return _paired_corpus(tmp_path_factory.mktemp("paired"), N, seed=3)


class _TextReads:
    """Text bytes returned by every pyarrow row-group read of the `text` column while installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.bytes = 0
        for name in ("read_row_group", "read_row_groups"):
            monkeypatch.setattr(pq.ParquetFile, name, self._counting(getattr(pq.ParquetFile, name)))

    def _counting(self, real):  # noqa: ANN001, ANN202
        def read(pf: pq.ParquetFile, *args, **kwargs) -> pa.Table:
            table = real(pf, *args, **kwargs)
            if "text" in table.column_names:
                self.bytes += int(pc.sum(pc.binary_length(table["text"])).as_py() or 0)
            return table
        return read


@pytest.mark.parametrize("verifier", [{"block_pairs": 64}, {"block_pairs": 64, "max_hashes": 20_000}],
                         ids=["small-blocks", "small-blocks-spilled"])
def test_one_node_reads_each_text_once(corpus, tmp_path, monkeypatch, verifier):
    """Before: 32 blocks each re-read nearly the whole text: about 32x the text bytes verification needs."""
    want = _reference_dedup(corpus.results, SPEC)
    assert want["exact_checked"] == N // 2 == want["candidate_pairs"]  # every pair, and only they, ambiguous
    verified = corpus.verified()
    assert 0 < len(verified) < N // 2 and want["verified_pairs"] == len(verified)

    monkeypatch.setattr(corpus_core, "ExactJaccard", partial(corpus_core.ExactJaccard, **verifier))
    reads = _TextReads(monkeypatch)
    got = _streaming(corpus.results, SPEC, tmp_path / "work")
    assert reads.bytes <= 1.1 * corpus.text_bytes, (reads.bytes, corpus.text_bytes)
    _assert_same(got, want)
    removed = set(zip(got["removed_table"]["id"], got["removed_table"]["survivor_id"]))
    assert removed == {(max(corpus.ids[a], corpus.ids[b]), min(corpus.ids[a], corpus.ids[b])) for a, b in verified}

    first = reads.bytes
    out = corpus_core.deduplicate_units(corpus.results, SPEC, str(tmp_path / "again"))
    assert out.text_bytes_read == reads.bytes - first  # the counters the manifest gets, for this second run
    assert out.text_bytes_wanted == corpus.text_bytes  # every document is in an ambiguous pair


def test_ray_verify_task_reads_each_text_once(corpus, monkeypatch):
    """One verify task of the Ray Data job (`_verified_pairs`, called directly) with all the pairs."""
    monkeypatch.setattr(ray_dedup, "ExactJaccard", partial(ray_dedup.ExactJaccard, block_pairs=64))
    lo, hi = corpus.pairs[:, 0], corpus.pairs[:, 1]  # local index = corpus row here (m = N)
    group = {"code": lo * N + hi, "lo": lo, "hi": hi, "lo_row": lo, "hi_row": hi}
    reads = _TextReads(monkeypatch)
    summary = ray_dedup._verified_pairs(group, corpus.paths, corpus.starts, SPEC.minhash)
    assert reads.bytes <= 1.1 * corpus.text_bytes, (reads.bytes, corpus.text_bytes)
    edges = zip(*(np.frombuffer(summary[k][0], np.int64).tolist() for k in ("lo", "hi")))
    assert set(edges) == corpus.verified() and int(summary["exact_checked"][0]) == N // 2
    assert int(summary["text_bytes_read"][0]) == reads.bytes
    assert int(summary["text_bytes_wanted"][0]) == corpus.text_bytes


def test_unit_texts_reads_row_groups_once_and_counts(corpus, monkeypatch):
    rows = np.array([3, 4, 300, 1000, 1001, N - 1], dtype=np.int64)
    reads = _TextReads(monkeypatch)
    texts = load_texts(corpus.paths, corpus.starts, rows)
    assert list(texts) == [corpus.texts[r] for r in rows.tolist()]
    assert texts.bytes_wanted == sum(len(corpus.texts[r]) for r in rows.tolist())
    assert texts.bytes_read == reads.bytes > texts.bytes_wanted  # whole row groups: 0, 1, 3, and the last one
    assert list(load_texts(corpus.paths, corpus.starts, rows[:0])) == []
    with pytest.raises(ValueError, match="ascending"):
        load_texts(corpus.paths, corpus.starts, rows[::-1])
