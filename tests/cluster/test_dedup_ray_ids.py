"""An id clash under the Ray engine fails the same inputs as on one node, and the rest of the corpus ships with
the same decisions (`tasks.corpus.ray_decide`: the clash check is a Ray Data job over id partitions).

Fault: one id held by two different documents in two units, beside a unit with an exact copy and a near
variant. Must survive: the third unit's documents, deduplicated as on one node. Output must equal: the
single-node outcome (failed units and their messages, kept rows, removed ids, counts).
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from data_specs import DedupSpec
from tasks.common.documents import Document
from tasks.corpus.core import deduplicate_units
from tasks.dedup.synthetic import plant_variant, random_doc
from tests.unit.test_corpus_dedup import _unit

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.mark.slow  # the Ray engine's dozen Ray Data jobs: 1-3 min on 2 cores; run with -m slow; tests/faults/test_ids_unique.py covers one node
def test_id_clash_fails_the_same_inputs_on_ray_as_on_one_node(tmp_path):
    spec = DedupSpec(minhash={"verify": "signature"})
    rng = np.random.default_rng(8)
    base = random_doc(rng, 300)
    texts = [" ".join(random_doc(rng, 200)) for _ in range(3)]
    clash_a = [Document(id="wikipedia/1", text=texts[0], source="wikipedia", origin="x")]
    clash_b = [Document(id="wikipedia/1", text=texts[1], source="wikipedia", origin="y")]
    rest = [Document(id=f"common_crawl/{i}", text=t, source="common_crawl", origin="z") for i, t in
            enumerate([" ".join(base), " ".join(base), " ".join(plant_variant(base, 0.95, 5, rng, "v")), texts[2]])]
    units = [_unit(tmp_path, "a.xml", clash_a, spec), _unit(tmp_path, "b.xml", clash_b, spec),
             _unit(tmp_path, "rest.wet", rest, spec)]
    want = deduplicate_units(units, spec, str(tmp_path / "local"))
    got = deduplicate_units(units, spec, str(tmp_path / "ray"), engine="ray", ray_rows_per_group=2)
    assert sorted(want.failed_units) == [units[0].path, units[1].path]
    assert got.failed_units == want.failed_units
    assert want.removed == {"dedup/exact": 1, "dedup/near": 1}
    assert list(got.kept_rows) == list(want.kept_rows) == [(units[2].path, 0, len(rest[0].text.encode())),
                                                           (units[2].path, 3, len(texts[2].encode()))]
    for field in ("removed", "clusters", "cluster_sizes", "candidate_pairs", "verified_pairs", "kept_by_source",
                  "kept_languages"):
        assert getattr(got, field) == getattr(want, field), field
    assert pq.read_table(got.removed_path).equals(pq.read_table(want.removed_path))
