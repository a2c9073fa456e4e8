"""Exact verification reads each wanted text once (issue 14, section 3), however scattered the ambiguous pairs.

Before: `ExactJaccard` settled the pairs in blocks of `block_pairs` and loaded each block's texts, so every
block re-read every row group that held one of its rows. With pairs scattered over the corpus a block re-read
almost all of the text, and the number of blocks grows with n: O(n²) bytes. The corpus here has every document
in one ambiguous pair with a document far away (planted signatures whose estimate lies within the exact margin,
texts whose exact Jaccard falls on both sides of the threshold), in unit files of 256-row row groups, as the
unit stage writes them (`benchmarks/bench_verify_reads.py::paired_corpus`, which measures the same at scale).
Blocks are forced small (`block_pairs=64`) so that 4 k documents behave as 1 M do at the default block size.
Bytes read are counted at pyarrow (every `ParquetFile.read_row_group(s)` that returns a `text` column), apart
from the counters the code reports; the decisions are checked against the in-memory reference of
`test_dedup_streaming.py` and against Jaccard computed from the texts directly.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

import tasks.corpus.core as corpus_core
import tasks.corpus.ray_dedup as ray_dedup
from benchmarks.bench_verify_reads import PairedCorpus, TextReads, paired_corpus
from data_specs import DedupSpec
from tasks.corpus.unit_files import load_texts
from tasks.dedup.synthetic import jaccard
from tests.unit.test_dedup_streaming import _assert_same, _reference_dedup, _streaming

SPEC = DedupSpec()
N = 4096  # documents: 2,048 ambiguous pairs, 16 row groups of 256 rows


def _verified(corpus: PairedCorpus) -> set[tuple[int, int]]:
    """The planted pairs whose exact shingle Jaccard reaches the threshold, computed from the texts directly."""
    mh = SPEC.minhash
    return {(int(a), int(b)) for a, b in corpus.pairs
            if jaccard(corpus.texts[a], corpus.texts[b], mh.ngram) >= mh.threshold}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> PairedCorpus:
    """N documents, all in N/2 scattered ambiguous pairs: every text is needed exactly once."""
    return paired_corpus(tmp_path_factory.mktemp("paired"), N, SPEC, seed=3)


@pytest.mark.parametrize("verifier", [{"block_pairs": 64}, {"block_pairs": 64, "max_hashes": 20_000}],
                         ids=["small-blocks", "small-blocks-spilled"])
def test_one_node_reads_each_text_once(corpus, tmp_path, monkeypatch, verifier):
    """Before: 32 blocks each re-read nearly the whole text: about 32x the text bytes verification needs."""
    want = _reference_dedup(corpus.results, SPEC)
    assert want["exact_checked"] == N // 2 == want["candidate_pairs"]  # every pair, and only they, ambiguous
    verified = _verified(corpus)
    assert 0 < len(verified) < N // 2 and want["verified_pairs"] == len(verified)

    monkeypatch.setattr(corpus_core, "ExactJaccard", partial(corpus_core.ExactJaccard, **verifier))
    reads = TextReads(monkeypatch.setattr)
    got = _streaming(corpus.results, SPEC, tmp_path / "work")
    assert reads.bytes <= 1.1 * corpus.wanted_bytes, (reads.bytes, corpus.wanted_bytes)
    _assert_same(got, want)
    removed = set(zip(got["removed_table"]["id"], got["removed_table"]["survivor_id"]))
    assert removed == {(max(corpus.ids[a], corpus.ids[b]), min(corpus.ids[a], corpus.ids[b])) for a, b in verified}

    first = reads.bytes
    out = corpus_core.deduplicate_units(corpus.results, SPEC, str(tmp_path / "again"))
    assert out.text_bytes_read == reads.bytes - first  # the counters the manifest gets, for this second run
    assert out.text_bytes_wanted == corpus.wanted_bytes  # every document is in an ambiguous pair


def test_ray_verify_task_reads_each_text_once(corpus, monkeypatch):
    """One verify task of the Ray Data job (`_verified_pairs`, called directly) with all the pairs."""
    monkeypatch.setattr(ray_dedup, "ExactJaccard", partial(ray_dedup.ExactJaccard, block_pairs=64))
    lo, hi = corpus.pairs[:, 0], corpus.pairs[:, 1]  # local index = corpus row here (m = N)
    group = {"code": lo * N + hi, "lo": lo, "hi": hi, "lo_row": lo, "hi_row": hi}
    reads = TextReads(monkeypatch.setattr)
    summary = ray_dedup._verified_pairs(group, corpus.paths, corpus.starts, SPEC.minhash)
    assert reads.bytes <= 1.1 * corpus.wanted_bytes, (reads.bytes, corpus.wanted_bytes)
    edges = zip(*(np.frombuffer(summary[k][0], np.int64).tolist() for k in ("lo", "hi")))
    assert set(edges) == _verified(corpus) and int(summary["exact_checked"][0]) == N // 2
    assert int(summary["text_bytes_read"][0]) == reads.bytes
    assert int(summary["text_bytes_wanted"][0]) == corpus.wanted_bytes


def test_unit_texts_reads_row_groups_once_and_counts(corpus, monkeypatch):
    rows = np.array([3, 4, 300, 1000, 1001, N - 1], dtype=np.int64)
    reads = TextReads(monkeypatch.setattr)
    texts = load_texts(corpus.paths, corpus.starts, rows)
    assert list(texts) == [corpus.texts[r] for r in rows.tolist()]
    assert texts.bytes_wanted == sum(len(corpus.texts[r]) for r in rows.tolist())
    assert texts.bytes_read == reads.bytes > texts.bytes_wanted  # whole row groups, not only the rows
    assert list(load_texts(corpus.paths, corpus.starts, rows[:0])) == []
    with pytest.raises(ValueError, match="ascending"):
        load_texts(corpus.paths, corpus.starts, rows[::-1])
