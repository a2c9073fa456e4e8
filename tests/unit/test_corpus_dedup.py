"""Global dedup over unit files uses exact Jaccard, read from the text, for ambiguous LSH pairs."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

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
