"""The streaming global dedup (band keys spilled per band, signatures memory-mapped, one text read per unit)
decides exactly as the in-memory implementation it replaced, kept here as `_reference_dedup`.

Compared on the units of the bundled sample corpus and on generated unit files (20 k documents by default,
100 k under `-m slow`) with planted exact copies, near-duplicates around the threshold, an oversized LSH
bucket, empty signatures, repeated ids with the same text, and several sources and languages.
"""

from __future__ import annotations

import tracemalloc
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.core import url_to_fs

from data_specs import CleanSpec, DedupSpec, load_curate_spec
from tasks.corpus.core import check_unique_ids, deduplicate_units, unit_order
from tasks.dedup.core import ExactJaccard, _priority_order
from tasks.dedup.lsh import band_keys, bucket_pairs, components, verify, verify_exact
from tasks.dedup.minhash import EMPTY, shingle_hashes
from tasks.shards.core import AtomicParquetWriter, unit_schema
from tasks.sources.core import plan_units
from tasks.units.core import UnitResult, process_unit
from tests.flows.helpers import write_spec

SPEC = DedupSpec()


# --- the implementation before streaming (tasks/corpus/core.py, tasks/dedup/{core,lsh}.py), verbatim in logic ---

def _reference_near(sig, bands, rows, threshold, verify_mode, bucket_cap, anchors, exact, exact_margin):
    m = sig.shape[0]
    seen = np.zeros(0, dtype=np.int64)
    edges_lo, edges_hi = [], []
    n_cand = n_ver = n_exact = 0
    for band in range(bands):
        keys = band_keys(sig[:, band * rows : (band + 1) * rows])
        lo, hi = bucket_pairs(keys, bucket_cap, anchors)
        codes = np.unique(lo * m + hi)
        codes = codes[~np.isin(codes, seen, assume_unique=True)]
        if codes.size == 0:
            continue
        seen = np.union1d(seen, codes)
        lo, hi = codes // m, codes % m
        n_cand += codes.size
        if verify_mode == "exact" and exact is not None:
            keep, checked = verify_exact(sig, lo, hi, threshold, exact_margin, exact)
            n_exact += checked
        elif verify_mode in ("signature", "exact"):
            keep = verify(sig, lo, hi, threshold)
        else:
            keep = np.ones(lo.size, dtype=bool)
        n_ver += int(keep.sum())
        edges_lo.append(lo[keep])
        edges_hi.append(hi[keep])
    lo = np.concatenate(edges_lo) if edges_lo else np.zeros(0, dtype=np.int64)
    hi = np.concatenate(edges_hi) if edges_hi else np.zeros(0, dtype=np.int64)
    return components(m, lo, hi), n_cand, n_ver, n_exact


def _reference_find(ids, sources, exact_keys, signatures, spec, exact_jaccard):
    n = len(ids)
    if n == 0:
        return {}, 0, {}, 0, 0, 0
    mh = spec.minhash
    order = _priority_order(ids, sources, spec.source_priority)
    final = np.arange(n, dtype=np.int64)
    reason: dict[int, str] = {}
    survivors = order
    if spec.exact.enabled:
        first: dict[bytes, int] = {}
        survivors = []
        for i in order:
            s = first.setdefault(exact_keys[i], i)
            if s == i:
                survivors.append(i)
            else:
                final[i] = s
                reason[i] = "dedup/exact"
    cand = ver = checked = 0
    if mh.enabled and survivors:
        local = np.asarray(survivors, dtype=np.int64)
        local = local[~np.all(signatures[local] == EMPTY, axis=1)]
        root, cand, ver, checked = _reference_near(
            np.ascontiguousarray(signatures[local]), mh.bands, mh.rows, mh.threshold, mh.verify, mh.bucket_cap,
            mh.bucket_anchors, lambda lo, hi: exact_jaccard(local[lo], local[hi]), mh.exact_margin)
        dup = np.flatnonzero(root != np.arange(local.size))
        final[local[dup]] = local[root[dup]]
        for i in local[dup].tolist():
            reason[i] = "dedup/near"
        final = final[final]
    removed = {i: (reason[i], int(final[i])) for i in sorted(reason)}
    _, sizes = np.unique(final, return_counts=True)
    hs, hc = np.unique(sizes[sizes >= 2], return_counts=True)
    return removed, int(hc.sum()), {int(s): int(c) for s, c in zip(hs, hc)}, cand, ver, checked


class _ReferenceExact:
    """The unbounded shingle-set cache it used."""

    def __init__(self, load_texts, ngram):
        self.load_texts, self.ngram, self.sets = load_texts, ngram, {}

    def __call__(self, lo, hi):
        missing = np.asarray(sorted({int(r) for r in np.r_[lo, hi]} - self.sets.keys()), dtype=np.int64)
        if missing.size:
            hashes, offsets = shingle_hashes(self.load_texts(missing), self.ngram)
            for k, row in enumerate(missing.tolist()):
                self.sets[row] = np.unique(hashes[offsets[k] : offsets[k + 1]])
        out = np.empty(lo.size)
        for k, (a, b) in enumerate(zip(lo.tolist(), hi.tolist())):
            sa, sb = self.sets[a], self.sets[b]
            inter = np.intersect1d(sa, sb, assume_unique=True).size
            out[k] = inter / (sa.size + sb.size - inter) if sa.size + sb.size - inter else 1.0
        return out


def _reference_dedup(results: Sequence[UnitResult], spec: DedupSpec) -> dict:
    """The old `deduplicate_units`: every signature and Python lists of every column in memory."""
    ordered = [r for r in unit_order(results) if r.kept]
    ids, sources, keys, langs, sigs, locations, rows_per_unit = [], [], [], [], [], [], []
    for result in ordered:
        fs, path = url_to_fs(result.path)
        table = pq.read_table(path, columns=["id", "source", "lang", "exact_key", "minhash", "n_bytes"], filesystem=fs)
        rows_per_unit.append(table.num_rows)
        ids.extend(table["id"].to_pylist())
        sources.extend(table["source"].to_pylist())
        keys.extend(table["exact_key"].to_pylist())
        langs.extend(table["lang"].to_pylist())
        minhash = table["minhash"].combine_chunks()
        sigs.append(minhash.values.to_numpy().reshape(len(minhash), minhash.type.list_size))
        locations.extend((result.path, row, n) for row, n in enumerate(table["n_bytes"].to_pylist()))
    check_unique_ids(ids, ordered, rows_per_unit, keys)
    signatures = np.concatenate(sigs) if sigs else np.zeros((0, spec.minhash.num_perm), np.uint32)

    def load_texts(rows):
        by_unit: dict[str, list[int]] = {}
        for row in rows.tolist():
            by_unit.setdefault(locations[row][0], []).append(row)
        texts = {}
        for unit_path, unit_rows in by_unit.items():
            column = pq.read_table(unit_path, columns=["text"])["text"]
            texts.update(zip(unit_rows, column.take(pa.array([locations[r][1] for r in unit_rows])).to_pylist()))
        return [texts[r] for r in rows.tolist()]

    removed, clusters, sizes, cand, ver, checked = _reference_find(
        ids, sources, keys, signatures, spec, _ReferenceExact(load_texts, spec.minhash.ngram))
    survivors = [i for i in range(len(ids)) if i not in removed]
    order = sorted(removed, key=lambda i: ids[i])
    return {
        "kept_rows": tuple(locations[i] for i in survivors),
        "removed": dict(sorted(Counter(r for r, _ in removed.values()).items())),
        "clusters": clusters, "cluster_sizes": dict(sorted(sizes.items())),
        "candidate_pairs": cand, "verified_pairs": ver, "exact_checked": checked,
        "kept_by_source": dict(sorted(Counter(sources[i] for i in survivors).items())),
        "kept_languages": dict(Counter(langs[i] or "unknown" for i in survivors).most_common()),
        "removed_table": {"id": [ids[i] for i in order], "reason": [removed[i][0] for i in order],
                          "survivor_id": [ids[removed[i][1]] for i in order]},
    }


def _streaming(results: Sequence[UnitResult], spec: DedupSpec, work: Path, **engine) -> dict:
    out = deduplicate_units(results, spec, str(work), **engine)
    fields = ("kept_rows", "removed", "clusters", "cluster_sizes", "candidate_pairs", "verified_pairs",
              "exact_checked", "kept_by_source", "kept_languages")
    got = {f: getattr(out, f) for f in fields}
    got["kept_rows"] = tuple(out.kept_rows)
    got["removed_table"] = (pq.read_table(out.removed_path).to_pydict() if out.removed_path
                            else {"id": [], "reason": [], "survivor_id": []})
    return got


def _assert_same(got: dict, want: dict) -> None:
    for field in want:
        assert got[field] == want[field], field
    assert list(got["kept_languages"]) == list(want["kept_languages"])  # most_common order too


# --- generated unit files: signatures planted directly, texts that make the exact check go both ways ---

def _generated_units(root: Path, n: int, seed: int, num_perm: int = 128) -> list[UnitResult]:
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i}" for i in range(5000)])
    base_words = rng.integers(0, words.size, (n, 40))
    sig = rng.integers(0, 2**32 - 1, (n, num_perm), dtype=np.uint64).astype(np.uint32)
    keys = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    ids = np.array([f"doc/{i:07d}" for i in rng.permutation(n)], dtype=object)
    near = rng.choice(np.arange(1, n), n // 8, replace=False)
    for i in near:  # a variant of an earlier doc, estimate around the 0.8 threshold (many ambiguous)
        b = int(rng.integers(0, i))
        same = rng.random(num_perm) < rng.uniform(0.55, 1.0)
        sig[i] = np.where(same, sig[b], sig[i])
        changed = rng.random(40) < rng.uniform(0.0, 0.25)
        base_words[i] = np.where(changed, base_words[i], base_words[b])
    exact = rng.choice(np.arange(1, n), n // 50, replace=False)
    for i in exact:  # exact copies (same key; the signature follows the text)
        b = int(rng.integers(0, i))
        keys[i], sig[i], base_words[i] = keys[b], sig[b], base_words[b]
    for i in rng.choice(n, 3, replace=False):  # the same document read twice: same id, same text
        j = int(rng.integers(0, n))
        ids[j], keys[j], sig[j], base_words[j] = ids[i], keys[i], sig[i], base_words[i]
    sig[rng.choice(n, n // 200, replace=False)] = EMPTY  # documents without shingles
    template = rng.choice(n, 150, replace=False)  # one oversized bucket in band 0 (bucket_cap 64)
    sig[template, :7] = sig[template[0], :7]
    sources = rng.choice(["common_crawl", "wikipedia", "books", "hf_dataset"], n)
    langs = rng.choice(np.array(["en", "de", "", None], dtype=object), n, p=[0.6, 0.2, 0.1, 0.1])
    texts = [" ".join(words[r]) for r in base_words]
    schema = unit_schema(num_perm)
    results, cuts = [], np.r_[0, np.sort(rng.choice(np.arange(1, n), 7, replace=False)), n]
    for u, (lo, hi) in enumerate(zip(cuts[:-1], cuts[1:])):
        k = hi - lo
        cols = {f.name: pa.nulls(k, f.type) for f in schema if f.nullable}
        cols.update(id=ids[lo:hi].tolist(), text=texts[lo:hi], source=sources[lo:hi].tolist(), origin=["g"] * k,
                    lang=langs[lo:hi].tolist(), n_bytes=[len(t) for t in texts[lo:hi]],
                    exact_key=pa.array([bytes(x) for x in keys[lo:hi]], pa.binary(16)),
                    minhash=pa.FixedSizeListArray.from_arrays(pa.array(sig[lo:hi].ravel(), pa.uint32()), num_perm))
        path = str(root / f"unit-{u}.parquet")
        writer = AtomicParquetWriter(path, schema)
        writer.write(pa.table({f.name: cols[f.name] for f in schema}, schema=schema), 1000)
        writer.commit()
        results.append(UnitResult(key=f"u{u}", label=f"u{u}", source_index=u % 3, kind="generated",
                                  url=f"gen://{u}", start=None, end=None, path=path, kept=int(k)))
    return results


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> list[UnitResult]:
    return _generated_units(tmp_path_factory.mktemp("gen"), 20_000, seed=11)


@pytest.mark.parametrize("spec", [
    SPEC,
    DedupSpec(minhash={"verify": "signature"}),
    DedupSpec(exact={"enabled": False}, source_priority=["books", "wikipedia"]),
], ids=["exact-verify", "signature-verify", "near-only"])
def test_generated_corpus_decisions_equal_the_in_memory_path(generated, tmp_path, spec):
    want = _reference_dedup(generated, spec)
    assert want["exact_checked"] > 0 or spec.minhash.verify != "exact"
    assert want["removed"].get("dedup/near", 0) > 200
    _assert_same(_streaming(generated, spec, tmp_path / "work"), want)


def test_sample_corpus_decisions_equal_the_in_memory_path(tmp_path):
    spec = load_curate_spec(str(write_spec(tmp_path / "spec.yaml", tmp_path / "out")))
    results = []
    for index, source in enumerate(spec.sources):
        units, _ = plan_units(source, index)
        results += [process_unit(source, u, CleanSpec(), spec.dedup.minhash, str(tmp_path / "work")) for u in units]
    want = _reference_dedup(results, spec.dedup)
    assert want["removed"]  # the sample has planted duplicates
    _assert_same(_streaming(results, spec.dedup, tmp_path / "work"), want)


def test_text_of_each_unit_is_read_once_per_run(generated, tmp_path, monkeypatch):
    """Before: each band with new ambiguous pairs re-read the units' text columns (up to `bands` times)."""
    import tasks.corpus.core as corpus_core

    reads: Counter = Counter()
    real = corpus_core.load_texts

    def counting(paths, starts, rows):
        units = np.unique(np.searchsorted(starts, rows, side="right") - 1)
        reads.update(units.tolist())
        return real(paths, starts, rows)

    monkeypatch.setattr(corpus_core, "load_texts", counting)
    out = deduplicate_units(generated, SPEC, str(tmp_path / "work"))
    assert out.exact_checked > 0
    assert reads and max(reads.values()) == 1


def test_shingle_cache_is_bounded():
    """Before: the cache kept every set it ever computed."""
    texts = [" ".join(f"t{i}w{j}" for j in range(30)) for i in range(40)]
    loaded: list[int] = []

    def load(rows: np.ndarray) -> list[str]:
        loaded.extend(rows.tolist())
        return [texts[r] for r in rows.tolist()]

    exact = ExactJaccard(load, ngram=5, max_hashes=60, block_pairs=4)
    lo, hi = np.arange(0, 20), np.arange(20, 40)
    got = exact(lo, hi)
    assert exact.cached_hashes <= 60 and len(exact.sets) <= 3
    assert np.array_equal(got, _ReferenceExact(lambda r: [texts[i] for i in r.tolist()], 5)(lo, hi))
    assert sorted(loaded) == list(range(40))  # every row read once


def _peak(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


@pytest.mark.slow
def test_100k_generated_corpus_equal_and_leaner(tmp_path):
    results = _generated_units(tmp_path, 100_000, seed=5)
    want: dict = {}
    old_peak = _peak(lambda: want.update(_reference_dedup(results, SPEC)))
    got: dict = {}
    new_peak = _peak(lambda: got.update(_streaming(results, SPEC, tmp_path / "work")))
    _assert_same(got, want)
    assert new_peak < old_peak / 2, (new_peak, old_peak)
