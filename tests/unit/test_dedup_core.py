"""find_duplicates / exact_key: exact and near clusters, survivor rule, order independence, edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from data_specs.dedup import DedupSpec, ExactDedupSpec, MinHashSpec
from tasks.dedup.core import DedupResult, MinHasher, exact_key, find_duplicates
from tasks.dedup.synthetic import jaccard, plant_variant, random_doc

SPEC = DedupSpec()
NO_EXACT = DedupSpec(exact=ExactDedupSpec(enabled=False))


def run(texts: list[str], sources: list[str], ids: list[str], spec: DedupSpec = SPEC) -> DedupResult:
    sig = MinHasher(spec.minhash).signatures(texts)
    return find_duplicates(ids, sources, [exact_key(t) for t in texts], sig, spec)


def removed_ids(res: DedupResult, ids: list[str]) -> dict[str, tuple[str, str]]:
    return {ids[i]: (why, ids[s]) for i, (why, s) in res.removed.items()}


def test_exact_key_normalises_case_width_and_whitespace() -> None:
    k = exact_key("Hello  World\n")
    assert len(k) == 16
    assert exact_key("hello world") == k
    assert exact_key("  HELLO\t\tworld ") == k
    assert exact_key("ＨＥＬＬＯ world") == k  # NFKC folds full-width letters
    assert exact_key("Straße") == exact_key("STRASSE")  # casefold, not lower
    assert exact_key("hello world!") != k
    assert exact_key("helloworld") != k
    assert exact_key("") == exact_key("   \n")


@pytest.fixture(scope="module")
def planted() -> tuple[list[str], list[str], dict[str, float]]:
    """6 base docs, each with variants at several Jaccard targets, plus unrelated docs."""
    rng = np.random.default_rng(0)
    texts, ids, sims = [], [], {}
    for b in range(6):
        base = random_doc(rng, 300)
        texts.append(" ".join(base))
        ids.append(f"base{b}")
        for target in (1.0, 0.95, 0.9, 0.5, 0.3):
            var = " ".join(plant_variant(base, target, 5, rng, tag=f"b{b}t{target}"))
            vid = f"var{b}_{target}"
            texts.append(var)
            ids.append(vid)
            sims[vid] = jaccard(texts[-1], " ".join(base), 5)
    for u in range(20):
        texts.append(" ".join(random_doc(rng, 300)))
        ids.append(f"unrelated{u}")
    return texts, ids, sims


def test_planted_near_duplicates_at_known_jaccard(planted) -> None:
    texts, ids, sims = planted
    # the construction hits its targets
    for vid, s in sims.items():
        target = float(vid.split("_")[1])
        assert abs(s - target) < 0.03, (vid, s)
    res = run(texts, ["common_crawl"] * len(texts), ids)
    got = removed_ids(res, ids)
    for vid, s in sims.items():
        base = "base" + vid[3]
        if s >= 0.9:  # J=1.0 variants are identical word lists: exact duplicates
            assert got[vid] == ("dedup/exact" if s == 1.0 else "dedup/near", base), vid
        elif s <= 0.5:
            assert vid not in got, vid
    assert not any(i.startswith(("base", "unrelated")) for i in got)
    assert res.clusters == 6 and res.cluster_sizes == {4: 6}
    assert res.candidate_pairs >= res.verified_pairs >= 6 * 2  # per base: (base, 0.95), (base, 0.9)


def test_survivor_prefers_source_priority_then_smallest_id() -> None:
    rng = np.random.default_rng(1)
    base = random_doc(rng, 200)
    v1 = " ".join(plant_variant(base, 0.95, 5, rng, "a"))
    v2 = " ".join(plant_variant(base, 0.95, 5, rng, "b"))
    v3 = " ".join(plant_variant(base, 0.95, 5, rng, "c"))
    texts = [v1, v2, v3, " ".join(base)]
    sources = ["common_crawl", "wikipedia", "books", "common_crawl"]
    ids = ["common_crawl/a", "wikipedia/z", "books/b", "common_crawl/0"]
    got = removed_ids(run(texts, sources, ids), ids)
    assert got == {i: ("dedup/near", "wikipedia/z") for i in ids if i != "wikipedia/z"}

    # ties within the best source -> smallest id (string order)
    sources = ["books", "books", "common_crawl", "books"]
    ids = ["books/b", "books/c", "common_crawl/0", "books/a2"]
    got = removed_ids(run(texts, sources, ids), ids)
    assert set(got) == {"books/b", "books/c", "common_crawl/0"}
    assert {s for _, s in got.values()} == {"books/a2"}


def test_cross_source_exact_duplicate_keeps_priority_source() -> None:
    texts = ["Some article text about a topic, long enough.", "some ARTICLE text about a topic,  long enough."]
    ids = ["common_crawl/aaa", "wikipedia/zzz"]
    res = run(texts, ["common_crawl", "wikipedia"], ids)
    assert removed_ids(res, ids) == {"common_crawl/aaa": ("dedup/exact", "wikipedia/zzz")}
    assert res.clusters == 1 and res.cluster_sizes == {2: 1}


def test_exact_copy_of_a_near_removed_row_points_at_the_kept_row() -> None:
    rng = np.random.default_rng(2)
    base = random_doc(rng, 200)
    near = " ".join(plant_variant(base, 0.95, 5, rng, "n"))
    texts = [" ".join(base), near, near.upper()]
    ids = ["wikipedia/1", "common_crawl/1", "common_crawl/2"]
    res = run(texts, ["wikipedia", "common_crawl", "common_crawl"], ids)
    assert removed_ids(res, ids) == {
        "common_crawl/1": ("dedup/near", "wikipedia/1"),
        "common_crawl/2": ("dedup/exact", "wikipedia/1"),
    }
    assert res.cluster_sizes == {3: 1}


@pytest.mark.parametrize("spec", [SPEC, NO_EXACT])
def test_order_independent_and_deterministic(planted, spec: DedupSpec) -> None:
    texts, ids, _ = planted
    sources = [("wikipedia", "books", "common_crawl")[i % 3] for i in range(len(texts))]
    ref = removed_ids(run(texts, sources, ids, spec), ids)
    assert ref == removed_ids(run(texts, sources, ids, spec), ids)
    rng = np.random.default_rng(3)
    for _ in range(3):
        perm = rng.permutation(len(texts))
        res = run([texts[i] for i in perm], [sources[i] for i in perm], [ids[i] for i in perm], spec)
        assert removed_ids(res, [ids[i] for i in perm]) == ref


def test_empty_input() -> None:
    res = find_duplicates([], [], [], np.zeros((0, SPEC.minhash.num_perm), np.uint32), SPEC)
    assert res == DedupResult({}, 0, {}, 0, 0)


@pytest.mark.parametrize("spec", [SPEC, NO_EXACT])
def test_all_identical(spec: DedupSpec) -> None:
    texts = ["the same document text repeated for every row of the input"] * 50
    ids = [f"common_crawl/{i:03d}" for i in range(50)]
    res = run(texts, ["common_crawl"] * 50, ids, spec)
    reason = "dedup/exact" if spec.exact.enabled else "dedup/near"
    assert res.removed == {i: (reason, 0) for i in range(1, 50)}
    assert res.clusters == 1 and res.cluster_sizes == {50: 1}


def test_giant_bucket_uses_anchors() -> None:
    # 300 identical signatures, bucket cap 64: pairs with 4 anchors instead of 300*299/2
    spec = DedupSpec(exact=ExactDedupSpec(enabled=False), minhash=MinHashSpec(bucket_cap=64, bucket_anchors=4))
    texts = ["one boilerplate page that every site of the crawl repeats word for word"] * 300
    res = run(texts, ["common_crawl"] * 300, [f"c/{i:03d}" for i in range(300)], spec)
    assert len(res.removed) == 299 and res.cluster_sizes == {300: 1}
    assert res.candidate_pairs == sum(300 - a - 1 for a in range(4))


def test_short_and_empty_documents() -> None:
    texts = ["Hi there", "hi THERE", "there hi", "", "  ", "???", "ok"]
    ids = [f"x/{i}" for i in range(len(texts))]
    got = removed_ids(run(texts, ["books"] * len(texts), ids), ids)
    # exact: case variants and the blank texts; "???" has another exact key but no shingles: kept
    assert got == {"x/1": ("dedup/exact", "x/0"), "x/4": ("dedup/exact", "x/3")}
    got = removed_ids(run(texts, ["books"] * len(texts), ids, NO_EXACT), ids)
    # near alone: the two "hi there" share their single shingle; docs without words never pair
    assert got == {"x/1": ("dedup/near", "x/0")}


def test_disabled_stages() -> None:
    texts = ["a b c d e f g"] * 3
    spec = DedupSpec(exact=ExactDedupSpec(enabled=False), minhash=MinHashSpec(enabled=False))
    assert run(texts, ["books"] * 3, ["a", "b", "c"], spec).removed == {}


def test_verify_none_trusts_buckets(planted) -> None:
    texts, ids, sims = planted
    spec = DedupSpec(minhash=MinHashSpec(verify="none"))
    res = run(texts, ["books"] * len(texts), ids, spec)
    assert res.candidate_pairs == res.verified_pairs
    got = removed_ids(res, ids)
    assert all(v in got for v, s in sims.items() if s >= 0.9)


def test_union_find_components_are_order_free() -> None:
    from tasks.dedup.lsh import components

    lo = np.array([5, 1, 3, 7, 2], dtype=np.int64)
    hi = np.array([6, 5, 4, 8, 8], dtype=np.int64)
    root = components(10, lo, hi)
    assert root.tolist() == [0, 1, 2, 3, 3, 1, 1, 2, 2, 9]
    perm = np.random.default_rng(0).permutation(lo.size)
    assert components(10, lo[perm], hi[perm]).tolist() == root.tolist()
