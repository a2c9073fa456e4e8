"""Near-dedup quality: precision/recall of lmpipe's MinHash LSH dedup against brute-force Jaccard truth.

1. Planted corpus: base documents (~300-word chunks of real books from ../shared/data/books, or
   synthetic words if absent -- said so), each with variants at shingle Jaccard targets 0.3 ... 1.0
   (`tasks.dedup.synthetic.plant_variant`), plus unrelated chunks. Ground truth: the exact Jaccard of
   the word 5-gram sets over ALL pairs, duplicate iff >= threshold (0.8). Predictions:
   - "verified pairs": pairs whose signature-estimated Jaccard passed verification (direct edges);
   - "same cluster": pairs that end up in one union-find cluster (what dedup acts on).
   Baseline, same docs: datasketch `MinHashLSH(threshold=0.8, num_perm=128)` over default sha1
   MinHashes (`MinHash.bulk`), raw query results, and the same with a `MinHash.jaccard >= 0.8` check.
2. Clough & Stevenson "Corpus of Plagiarised Short Answers" (../shared/data/dedup_bench/
   clough_stevenson_plagiarism): each answer paired with `orig_task<x>.txt`; positives = 'cut',
   negatives = 'non' ('light'/'heavy' reported, not scored). This is a containment task (an answer
   copies part of a longer source), so resemblance-Jaccard dedup at 0.8 is *not expected* to
   recall it; the numbers show by how much.

Run: `.venv/bin/python benchmarks/bench_dedup_quality.py [--quick]`
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from itertools import combinations
from pathlib import Path

import datasketch
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_specs.dedup import DedupSpec  # noqa: E402
from tasks.dedup.core import ExactJaccard, MinHasher, exact_key, find_duplicates  # noqa: E402
from tasks.dedup.lsh import near_duplicates  # noqa: E402
from tasks.dedup.minhash import shingles, words  # noqa: E402
from tasks.dedup.synthetic import plant_variant, random_doc  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CLOUGH = DATA / "dedup_bench" / "clough_stevenson_plagiarism"
TARGETS = (0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)


def book_chunks(n_words: int) -> list[list[str]]:
    chunks = []
    for path in sorted((DATA / "books").glob("*.txt")):
        toks = words(path.read_text(encoding="utf-8"))
        chunks += [toks[i : i + n_words] for i in range(2000, len(toks) - n_words, n_words)]  # skip PG header
    return chunks


def planted_corpus(n_base: int, n_unrelated: int, rng: np.random.Generator) -> tuple[list[str], str]:
    chunks = book_chunks(300)
    if len(chunks) >= n_base + n_unrelated:
        pick = rng.choice(len(chunks), n_base + n_unrelated, replace=False)
        bases, others = [chunks[i] for i in pick[:n_base]], [chunks[i] for i in pick[n_base:]]
        what = "real book text"
    else:
        bases = [random_doc(rng, 300) for _ in range(n_base)]
        others = [random_doc(rng, 300) for _ in range(n_unrelated)]
        what = f"SYNTHETIC words ({DATA / 'books'} absent)"
    texts = []
    for b, base in enumerate(bases):
        texts.append(" ".join(base))
        texts += [" ".join(plant_variant(base, t, 5, rng, tag=f"b{b}t{t}x")) for t in TARGETS]
    texts += [" ".join(o) for o in others]
    return texts, what


def truth_pairs(texts: list[str], threshold: float) -> tuple[set[tuple[int, int]], dict[tuple[int, int], float]]:
    sets = [frozenset(shingles(t, 5)) for t in texts]
    sims = {}
    for i, j in combinations(range(len(texts)), 2):
        inter = len(sets[i] & sets[j])
        if inter:
            sims[(i, j)] = inter / (len(sets[i]) + len(sets[j]) - inter)
    return {p for p, s in sims.items() if s >= threshold}, sims


def cluster_pairs(labels: np.ndarray) -> set[tuple[int, int]]:
    out = set()
    for lab in np.unique(labels):
        members = np.flatnonzero(labels == lab)
        out.update(combinations(members.tolist(), 2))
    return out


def pr(pred: set, truth: set) -> tuple[float, float, int]:
    tp = len(pred & truth)
    return (tp / len(pred) if pred else 1.0), (tp / len(truth) if truth else 1.0), len(pred)


def lmpipe_predictions(texts: list[str], spec: DedupSpec, verify: str) -> tuple[set, set, float]:
    """LSH + verification as the pipeline runs it; `verify` = 'exact' (default) or 'signature'."""
    mh = spec.minhash
    t0 = time.perf_counter()
    sig = MinHasher(mh).signatures(texts)
    exact = ExactJaccard(lambda rows: [texts[r] for r in rows], mh.ngram)
    g = near_duplicates(sig, mh.bands, mh.rows, mh.threshold, verify, mh.bucket_cap, mh.bucket_anchors,
                        exact=exact, exact_margin=mh.exact_margin)
    dt = time.perf_counter() - t0
    lo, hi = g.edges
    verified = set(zip(lo.tolist(), hi.tolist()))
    return verified, cluster_pairs(g.root), dt


def datasketch_predictions(texts: list[str], threshold: float, num_perm: int) -> tuple[set, set, float]:
    t0 = time.perf_counter()
    mhs = datasketch.MinHash.bulk(
        ([" ".join(s).encode("utf-8") for s in shingles(t, 5)] for t in texts), num_perm=num_perm
    )
    lsh = datasketch.MinHashLSH(threshold=threshold, num_perm=num_perm)
    for i, m in enumerate(mhs):
        lsh.insert(i, m)
    raw = {(min(i, j), max(i, j)) for i, m in enumerate(mhs) for j in lsh.query(m) if j != i}
    dt = time.perf_counter() - t0
    checked = {(i, j) for i, j in raw if mhs[i].jaccard(mhs[j]) >= threshold}
    return raw, checked, dt


def planted_report(quick: bool, spec: DedupSpec) -> None:
    rng = np.random.default_rng(0)
    texts, what = planted_corpus(15 if quick else 80, 50 if quick else 300, rng)
    thr = spec.minhash.threshold
    truth, sims = truth_pairs(texts, thr)
    n = len(texts)
    print(f"\n## planted corpus ({what}): {n} docs, {n * (n - 1) // 2} pairs, {len(truth)} true pairs "
          f"(exact 5-gram Jaccard >= {thr}); num_perm={spec.minhash.num_perm}, "
          f"bands x rows = {spec.minhash.bands} x {spec.minhash.rows}")
    verified, clustered, t_ours = lmpipe_predictions(texts, spec, "exact")
    sig_verified, sig_clustered, t_sig = lmpipe_predictions(texts, spec, "signature")
    raw, checked, t_ds = datasketch_predictions(texts, thr, spec.minhash.num_perm)
    # pairs within +-0.05 of the threshold are coin flips for any 128-value estimator: also score without them
    margin = {p for p, s in sims.items() if abs(s - thr) < 0.05}
    print(f"{'method':52s} {'pairs':>7s} {'precision':>9s} {'recall':>7s} {'P (±.05 out)':>12s} "
          f"{'R (±.05 out)':>12s} {'time s':>7s}")
    for name, pred, dt in [
        ("lmpipe verify=exact (default): verified pairs", verified, t_ours),
        ("lmpipe verify=exact: same cluster (union-find)", clustered, t_ours),
        ("lmpipe verify=signature: verified pairs", sig_verified, t_sig),
        ("lmpipe verify=signature: same cluster", sig_clustered, t_sig),
        ("datasketch MinHashLSH(threshold=0.8): raw query", raw, t_ds),
        ("datasketch MinHashLSH + MinHash.jaccard >= 0.8", checked, t_ds),
    ]:
        p, r, k = pr(pred, truth)
        pm, rm, _ = pr(pred - margin, truth - margin)
        print(f"{name:52s} {k:7d} {p:9.3f} {r:7.3f} {pm:12.3f} {rm:12.3f} {dt:7.2f}")
    # where the errors are: detection rate per exact-Jaccard bin
    edges = [0.0, 0.5, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0001]
    print(f"\n{'exact Jaccard bin':18s} {'pairs':>6s} {'lm exact-verif':>16s} {'lm exact-clust':>15s} "
          f"{'lm sig-verif':>13s} {'ds LSH raw':>11s} {'ds LSH+check':>13s}")
    for lo_e, hi_e in zip(edges[:-1], edges[1:]):
        pairs = {p for p, s in sims.items() if lo_e <= s < hi_e}
        if not pairs:
            continue
        rates = [len(pairs & pred) / len(pairs) for pred in (verified, clustered, sig_verified, raw, checked)]
        label = f"[{lo_e:.2f}, {min(hi_e, 1.0):.2f}{']' if hi_e > 1 else ')'}"
        print(f"{label:18s} {len(pairs):6d} " + " ".join(f"{r:>{w}.3f}" for r, w in zip(rates, (16, 15, 13, 11, 13))))
    print("(rates = share of the bin's pairs predicted duplicate; pairs with no shared shingle omitted)")


def clough_report(spec: DedupSpec) -> None:
    if not CLOUGH.exists():
        print(f"\n## Clough-Stevenson: SKIPPED, {CLOUGH} is absent")
        return
    rows = list(csv.DictReader(open(CLOUGH / "file_information.csv", encoding="utf-8")))
    answers = [r for r in rows if r["Category"] != "orig"]
    origs = {r["Task"]: r["File"] for r in rows if r["Category"] == "orig"}
    files = [r["File"] for r in answers] + [origs[t] for t in sorted(origs)]
    texts = [(CLOUGH / f).read_text(encoding="utf-8", errors="replace") for f in files]
    idx = {f: i for i, f in enumerate(files)}
    verified, clustered, _ = lmpipe_predictions(texts, spec, "exact")
    raw, checked, _ = datasketch_predictions(texts, spec.minhash.threshold, spec.minhash.num_perm)
    # full pipeline too (exact + near with the survivor rule): answer removed into its source's cluster
    sig = MinHasher(spec.minhash).signatures(texts)
    res = find_duplicates(files, ["common_crawl"] * len(files), [exact_key(t) for t in texts], sig, spec)
    print(f"\n## Clough-Stevenson plagiarism corpus: {len(answers)} answers vs {len(origs)} sources "
          "(resemblance dedup on a containment task: low recall expected)")
    print(f"{'category':9s} {'n':>3s} {'median J':>9s} {'max J':>6s} {'lm verified':>12s} {'lm cluster':>11s} "
          f"{'ds raw':>7s} {'ds+check':>9s}")
    scored = {}
    for cat in ("cut", "light", "heavy", "non"):
        group = [r for r in answers if r["Category"] == cat]
        pairs = [tuple(sorted((idx[r["File"]], idx[origs[r["Task"]]]))) for r in group]
        js = [len(set(shingles(texts[i], 5)) & set(shingles(texts[j], 5)))
              / max(1, len(set(shingles(texts[i], 5)) | set(shingles(texts[j], 5)))) for i, j in pairs]
        hits = [[p in pred for p in pairs] for pred in (verified, clustered, raw, checked)]
        scored[cat] = hits
        print(f"{cat:9s} {len(group):3d} {np.median(js):9.3f} {max(js):6.3f} "
              + " ".join(f"{np.mean(h):>{w}.3f}" for h, w in zip(hits, (12, 11, 7, 9))))
    print(f"{'':9s} {'':3s} {'':9s} {'':6s} (share of the category's answer/source pairs flagged)")
    for name, k in (("lmpipe verified", 0), ("lmpipe cluster", 1), ("datasketch raw", 2), ("datasketch+check", 3)):
        tp, fn = sum(scored["cut"][k]), len(scored["cut"][k]) - sum(scored["cut"][k])
        fp = sum(scored["non"][k])
        prec = tp / (tp + fp) if tp + fp else float("nan")
        print(f"  strict P/R ({name:16s}): precision {prec:.3f}  recall {tp / (tp + fn):.3f}  (tp={tp} fp={fp} fn={fn})")
    print(f"  find_duplicates over the 100 files: {len(res.removed)} removed, clusters {res.cluster_sizes}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="15 bases + 50 unrelated docs instead of 80 + 300")
    ap.add_argument("--num-perm", type=int, default=None, help="with --bands/--rows: try another LSH layout")
    ap.add_argument("--bands", type=int, default=None)
    ap.add_argument("--rows", type=int, default=None)
    args = ap.parse_args()
    overrides = {k: v for k, v in (("num_perm", args.num_perm), ("bands", args.bands), ("rows", args.rows)) if v}
    spec = DedupSpec(minhash=DedupSpec().minhash.model_copy(update=overrides)) if overrides else DedupSpec()
    spec = DedupSpec.model_validate(spec.model_dump())  # re-validate the overridden layout
    planted_report(args.quick, spec)
    clough_report(spec)


if __name__ == "__main__":
    main()
