"""MinHasher: bit-identical to datasketch's affine32 MinHash, LeanMinHash/MinHashLSH round trip, shingling edge cases."""

from __future__ import annotations

import datasketch
import numpy as np
import pytest

from data_specs.dedup import MinHashSpec
from tasks.dedup.core import MinHasher, to_lean_minhash
from tasks.dedup.minhash import EMPTY, SCHEME, hash_shingle, shingle_hashes, shingles

TEXTS = [
    "The quick brown fox jumps over the lazy dog, and the dog sleeps on.",
    "",
    "two words",  # shorter than n: one shingle of all words
    "Ünïcode ﬁne words: THE the The quick   brown\tfox; jumps over 3 lazy dogs " * 4,
    "!!! ... ???",  # no words at all
    "日本語 の 文章 も 単語 として 扱う こと が できる か どうか",
]


def _datasketch_reference(text: str, spec: MinHashSpec) -> np.ndarray:
    m = datasketch.MinHash(num_perm=spec.num_perm, seed=spec.seed, hashfunc=hash_shingle, scheme=SCHEME)
    m.update_batch(shingles(text, spec.ngram))
    return m.hashvalues


@pytest.mark.parametrize("spec", [MinHashSpec(), MinHashSpec(num_perm=64, bands=8, rows=8, seed=7, ngram=3)])
def test_signatures_bit_identical_to_datasketch(spec: MinHashSpec) -> None:
    sig = MinHasher(spec).signatures(TEXTS)
    assert sig.shape == (len(TEXTS), spec.num_perm) and sig.dtype == np.uint32
    for text, row in zip(TEXTS, sig):
        ref = _datasketch_reference(text, spec)
        assert ref.dtype == np.uint32
        np.testing.assert_array_equal(row, ref)


def test_chunking_does_not_change_signatures() -> None:
    spec = MinHashSpec()
    whole = MinHasher(spec).signatures(TEXTS)
    small = MinHasher(spec)
    small.chunk = 3  # blocks that cut documents in pieces
    np.testing.assert_array_equal(small.signatures(TEXTS), whole)
    # a document's signature does not depend on the rest of its batch
    for i, text in enumerate(TEXTS):
        np.testing.assert_array_equal(MinHasher(spec).signatures([text])[0], whole[i])


def test_vectorised_shingle_hashes_match_scalar_reference() -> None:
    h, off = shingle_hashes(TEXTS, 5)
    for i, text in enumerate(TEXTS):
        assert h[off[i] : off[i + 1]].tolist() == [hash_shingle(s) for s in shingles(text, 5)]


def test_short_and_empty_documents() -> None:
    spec = MinHashSpec()
    sig = MinHasher(spec).signatures(["", "!!!", "two words", "Two   WORDS", "words two"])
    assert np.all(sig[0] == EMPTY) and np.all(sig[1] == EMPTY)
    assert datasketch.MinHash(num_perm=spec.num_perm, scheme=SCHEME).hashvalues.tolist() == sig[0].tolist()
    assert not np.all(sig[2] == EMPTY)
    np.testing.assert_array_equal(sig[2], sig[3])  # casefold + whitespace
    assert not np.array_equal(sig[2], sig[4])  # word order matters inside a shingle
    assert MinHasher(spec).signatures([]).shape == (0, spec.num_perm)


def test_lean_minhash_and_minhashlsh_round_trip() -> None:
    spec = MinHashSpec()
    base = " ".join(f"w{i}" for i in range(200))
    near = base.replace("w100 ", "changed ")  # Jaccard of 5-gram sets ~0.95
    other = " ".join(f"x{i}" for i in range(200))
    sig = MinHasher(spec).signatures([base, near, other])
    lsh = datasketch.MinHashLSH(num_perm=spec.num_perm, params=(spec.bands, spec.rows))
    leans = [to_lean_minhash(row, spec) for row in sig]
    for key, lean in zip(["base", "near", "other"], leans):
        lsh.insert(key, lean)
    assert sorted(lsh.query(leans[0])) == ["base", "near"]
    assert lsh.query(leans[2]) == ["other"]
    # a plain datasketch MinHash of the same shingles finds the same documents
    ref = datasketch.MinHash(num_perm=spec.num_perm, seed=spec.seed, hashfunc=hash_shingle)
    ref.update_batch(shingles(near, spec.ngram))
    assert sorted(lsh.query(ref)) == ["base", "near"]
    assert leans[0].jaccard(leans[1]) == pytest.approx(float(np.mean(sig[0] == sig[1])))
    # serialisation keeps the values
    buf = bytearray(leans[1].bytesize())
    leans[1].serialize(buf)
    np.testing.assert_array_equal(datasketch.LeanMinHash.deserialize(buf).hashvalues, sig[1])
