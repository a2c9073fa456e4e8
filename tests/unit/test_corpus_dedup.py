"""Global dedup over unit files uses exact Jaccard, read from the text, for ambiguous LSH pairs."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from data_specs import DedupSpec
from tasks.common.documents import Document
from tasks.corpus.core import deduplicate_units
from tasks.dedup.core import MinHasher, exact_key
from tasks.dedup.synthetic import jaccard, plant_variant, random_doc
from tasks.shards.core import AtomicParquetWriter, documents_to_columns, unit_schema
from tasks.units.core import UnitResult


def _unit(tmp_path, name, docs, spec):
    path = str(tmp_path / f"{name}.parquet")
    writer = AtomicParquetWriter(path, unit_schema(spec.minhash.num_perm))
    cols = documents_to_columns(docs)
    cols["n_bytes"] = [len(d.text.encode()) for d in docs]
    cols["exact_key"] = [exact_key(d.text) for d in docs]
    sig = MinHasher(spec.minhash).signatures([d.text for d in docs])
    cols["minhash"] = pa.FixedSizeListArray.from_arrays(pa.array(sig.reshape(-1), pa.uint32()), spec.minhash.num_perm)
    writer.write(pa.table(cols, schema=writer.schema), 100)
    writer.commit()
    return UnitResult(key=name, label=name, source_index=0, kind="common_crawl", url=name, start=None, end=None,
                      path=path, kept=len(docs))


def test_ambiguous_pairs_are_settled_by_the_text(tmp_path):
    spec = DedupSpec()
    rng = np.random.default_rng(3)
    base = random_doc(rng, 400)
    variants = [plant_variant(base, target, spec.minhash.ngram, rng, f"v{i}")
                for i, target in enumerate((0.74, 0.78, 0.82, 0.86))]
    texts = [" ".join(base)] + [" ".join(v) for v in variants]
    docs = [Document(id=f"common_crawl/{i}", text=t, source="common_crawl", origin="x") for i, t in enumerate(texts)]
    units = [_unit(tmp_path, "a", docs[:3], spec), _unit(tmp_path, "b", docs[3:], spec)]
    outcome = deduplicate_units(units, spec, str(tmp_path / "work"))
    assert outcome.exact_checked > 0  # the text was read for pairs near the threshold
    # Every variant whose exact Jaccard with the base is >= 0.8 is gone.
    kept_rows = {(p, r) for p, r, _ in outcome.kept_rows}
    for i, text in enumerate(texts[1:], start=1):
        where = (units[0].path, i) if i < 3 else (units[1].path, i - 3)
        if jaccard(texts[0], text, spec.minhash.ngram) >= spec.minhash.threshold:
            assert where not in kept_rows, (i, jaccard(texts[0], text, spec.minhash.ngram))
    assert (units[0].path, 0) in kept_rows  # the base (smallest id) survives


def test_duplicate_id_fails_both_inputs_naming_them(tmp_path):
    # Before: nothing checked, and removed.parquet's id -> survivor map became ambiguous; then the run failed.
    spec = DedupSpec()
    rng = np.random.default_rng(5)
    texts = [" ".join(random_doc(rng, 200)) for _ in range(4)]
    a = [Document(id=f"wikipedia/{i}", text=t, source="wikipedia", origin="x") for i, t in enumerate(texts[:2])]
    b = [Document(id="wikipedia/1", text=texts[2], source="wikipedia", origin="y")]
    c = [Document(id="wikipedia/3", text=texts[3], source="wikipedia", origin="z")]
    units = [_unit(tmp_path, "first-dump.xml", a, spec), _unit(tmp_path, "second-dump.xml", b, spec),
             _unit(tmp_path, "third-dump.xml", c, spec)]
    outcome = deduplicate_units(units, spec, str(tmp_path / "work"))
    assert sorted(outcome.failed_units) == sorted(u.path for u in units[:2])
    for error in outcome.failed_units.values():
        assert re.match(r"DuplicateDocumentId: document id 'wikipedia/1'.*first-dump\.xml.*second-dump\.xml", error)
    assert [(p, r) for p, r, _ in outcome.kept_rows] == [(units[2].path, 0)]  # the rest ships
    b[0].id = "wikipedia/2"
    units[1] = _unit(tmp_path, "second-dump.xml", b, spec)
    outcome = deduplicate_units(units, spec, str(tmp_path / "work"))
    assert len(outcome.kept_rows) == 4 and not outcome.failed_units


def test_the_same_document_read_twice_is_an_exact_duplicate_not_a_collision(tmp_path):
    """Two overlapping slices of one crawl file hold the same record: one id, one text. Kept once, the later copy
    removed as an exact duplicate of itself; the error is only for two *different* documents under one id."""
    spec = DedupSpec()
    rng = np.random.default_rng(7)
    texts = [" ".join(random_doc(rng, 200)) for _ in range(2)]
    first = [Document(id=f"common_crawl/r{i}", text=t, source="common_crawl", origin="x") for i, t in enumerate(texts)]
    again = [Document(id="common_crawl/r1", text=texts[1], source="common_crawl", origin="y")]
    units = [_unit(tmp_path, "head.wet.gz", first, spec), _unit(tmp_path, "slice.wet.gz", again, spec)]
    outcome = deduplicate_units(units, spec, str(tmp_path / "work"))
    assert [(p, r) for p, r, _ in outcome.kept_rows] == [(units[0].path, 0), (units[0].path, 1)]
    assert outcome.removed == {"dedup/exact": 1}
    assert pq.read_table(outcome.removed_path).to_pylist() == [
        {"id": "common_crawl/r1", "reason": "dedup/exact", "survivor_id": "common_crawl/r1"}]
