"""The scale-run corpus generator (benchmarks/gen_corpus.py): deterministic, and its truth file is right.

One module-scoped corpus of 300 documents (all four formats, many planted copies) is generated twice, once
with 2 processes, from the real paragraphs of ../shared/data (skipped when that folder is absent). Every
document is then read back with lmpipe's own readers, so the checks hold for what curate will see.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from pydantic import TypeAdapter

from benchmarks import gen_corpus
from data_specs.sources import SourceSpec
from tasks.common.documents import Document
from tasks.dedup.synthetic import jaccard
from tasks.sources.core import plan_units, read_unit

N_DOCS = 300
MIX = {"warc": 0.3, "wet": 0.3, "wiki": 0.35, "books": 0.05}
RATES = {"exact_rate": 0.1, "near_rate": 0.1, "far_rate": 0.1}


@pytest.fixture(scope="module")
def pool() -> list[str]:
    try:
        return gen_corpus.load_pool()
    except gen_corpus.NoData as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def corpus(pool, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "a"
    gen_corpus.generate(out, N_DOCS, seed=7, mix=MIX, file_mb=0.2, pool=pool, **RATES)
    return out


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "corpus.json"}


def _read_back(corpus: Path) -> dict[str, str]:
    """id -> text of every document, as lmpipe's readers produce them from the corpus' spec sources."""
    texts: dict[str, str] = {}
    for index, raw in enumerate(gen_corpus.curate_sources(corpus)):
        source = TypeAdapter(SourceSpec).validate_python(raw)
        units, problems = plan_units(source, index)
        assert not problems
        for unit in units:
            for rec in read_unit(source, unit):
                assert isinstance(rec, Document), rec
                assert rec.id not in texts
                texts[rec.id] = rec.text
    return texts


def test_same_seed_same_bytes_whatever_the_processes(corpus, pool, tmp_path, monkeypatch):
    monkeypatch.setattr(gen_corpus, "CHUNK_DOCS", 100)  # 3 chunks, so 2 processes really split the work
    a, b = tmp_path / "a", tmp_path / "b"
    gen_corpus.generate(a, N_DOCS, seed=7, mix=MIX, file_mb=0.2, pool=pool, jobs=1, **RATES)
    gen_corpus.generate(b, N_DOCS, seed=7, mix=MIX, file_mb=0.2, pool=pool, jobs=2, **RATES)
    assert _digests(a) == _digests(b)
    c = tmp_path / "c"
    gen_corpus.generate(c, N_DOCS, seed=8, mix=MIX, file_mb=0.2, pool=pool, **RATES)
    assert _digests(c) != _digests(a)


def test_every_document_reads_back_with_the_planned_id(corpus):
    texts = _read_back(corpus)
    assert len(texts) == N_DOCS
    meta = json.loads((corpus / "corpus.json").read_text())
    assert sum(sum(c.values()) for c in meta["counts"].values()) == N_DOCS
    assert all(meta["files"][f] >= 1 for f in gen_corpus.FORMATS)  # every format is written
    assert meta["files"]["wet"] >= 2  # --file-mb rolls files over


def test_truth_names_planted_pairs_at_their_similarity(corpus):
    """Each truth row is a real pair as read back: exact copies equal, Jaccards as recorded and near their targets."""
    texts = _read_back(corpus)
    truth = pq.read_table(corpus / "truth.parquet").to_pylist()
    kinds = {k: [r for r in truth if r["kind"] == k] for k in ("exact", "near", "far")}
    assert all(len(rows) >= 10 for rows in kinds.values()), {k: len(v) for k, v in kinds.items()}
    planted = {r["id"] for r in truth}
    for r in truth:
        assert r["of_id"] not in planted  # a copy copies an original
        got = jaccard(texts[r["id"]], texts[r["of_id"]], gen_corpus.NGRAM)
        assert got == pytest.approx(r["jaccard"], abs=0.02), r  # HTML extraction may move a line break
        if r["kind"] == "exact":
            assert " ".join(texts[r["id"]].split()) == " ".join(texts[r["of_id"]].split())
        elif r["kind"] == "near":
            assert 0.8 < r["jaccard"] < 0.9, r
        else:
            assert 0.5 < r["jaccard"] < 0.7, r
    # originals that no truth row names are not accidental near-duplicates of each other
    originals = sorted(set(texts) - planted)[:40]
    for a, b in zip(originals, originals[1:]):
        assert jaccard(texts[a], texts[b], gen_corpus.NGRAM) < 0.3


def test_fast_jaccard_is_the_reference(pool):
    a = "\n".join(pool[:3])
    b = gen_corpus.vary(pool[:3], 0.85, np.random.default_rng(0), ["river", "stone"])
    assert gen_corpus.exact_jaccard(a, "\n".join(b)) == jaccard(a, "\n".join(b), gen_corpus.NGRAM)
    assert gen_corpus.exact_jaccard("one two", "one two") == jaccard("one two", "one two", gen_corpus.NGRAM)
