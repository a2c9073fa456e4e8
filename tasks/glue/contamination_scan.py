"""The contamination check of an evaluation run: which dev examples the pretraining corpus holds, cached and
scanned in parallel, and each task's score on its clean subset.

    found = scan_dev_sets(curated_dir, ["rte", "stsb"], spec, max_eval, cache_dir=".lmpipe/glue/contamination")
    clean = clean_subset_scores(found, predictions)    # result key -> metrics on the rows not found

**Cache.** A scan is a pure function of the corpus, the dev rows and the matching rules, so its result is
stored under a key of (the curated manifest's fingerprint and shard hashes, each dev set's texts, n,
`short_fields`, `pairs`); a rerun on the same corpus and dev rows reads it instead of scanning.
**Parallel.** Shards are split over `workers` processes (default: the cores this process may use); each builds
the dev index and scans its shards; the dirty masks are OR-ed. The result equals one serial scan.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

import numpy as np

from data_specs import fingerprint
from tasks.glue.contamination import EvalNgramIndex, curated_shards, iter_shard_documents


def scan_dev_sets(curated_dir: str, task_names: Sequence[str], spec: Any, max_eval: Mapping[str, int | None], *,
                  cache_dir: str | None = None, workers: int | None = None) -> dict[str, dict[str, Any]]:
    """n-gram overlap of the curated corpus with every dev split scored (`spec`: the GlueSpec; `max_eval`: each
    task's `max_eval_examples`): result key -> {n_examples, n_contaminated, rate, contaminated, examples,
    cached}."""
    from tasks.glue.data import load_glue_split
    from tasks.glue.tasks import TASKS, result_key

    examples = {}
    for name in task_names:
        for split in TASKS[name].eval_splits:
            ex = load_glue_split(name, split, spec.data.dir, hub_repo=spec.data.hub_repo,
                                 hub_revision=spec.data.hub_revision)
            ex = ex.head(max_eval[name]) if max_eval.get(name) else ex
            examples[result_key(name, split)] = list(zip(*ex.texts))
    rules = {"n": spec.contamination.ngram, "short_fields": spec.contamination.short_fields,
             "pairs": spec.contamination.pairs}
    shards = curated_shards(curated_dir)
    key = scan_key(curated_dir, shards, examples, rules)
    cached = _read(cache_dir, key)
    if cached is not None:
        return {k: {**v, "cached": True} for k, v in cached.items()}
    results = scan_parallel(examples, shards, rules, workers=workers)
    out = {}
    for k, r in results.items():
        out[k] = {"n_examples": r.n_examples, "n_contaminated": r.n_contaminated, "rate": r.rate,
                  "contaminated": list(r.contaminated),
                  "examples": [" ||| ".join(examples[k][i]) for i in list(r.contaminated)[:5]]}
    _write(cache_dir, key, out)
    return {k: {**v, "cached": False} for k, v in out.items()}


def scan_parallel(examples: Mapping[str, Sequence[Sequence[str]]], shards: Sequence[str], rules: Mapping[str, Any],
                  *, workers: int | None = None) -> dict:
    """`EvalNgramIndex(examples, **rules)` scanned over `shards`, split across `workers` processes."""
    workers = max(1, min(workers or default_workers(), len(shards)))
    index = EvalNgramIndex(examples, **rules)
    if workers == 1:
        index.scan(iter_shard_documents(shards))
        return index.results()
    groups = [list(shards[i::workers]) for i in range(workers)]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        masks = list(pool.map(_dirty_mask, [examples] * workers, [dict(rules)] * workers, groups))
    return index.results(np.logical_or.reduce(masks))


def clean_subset_scores(found: Mapping[str, Mapping[str, Any]],
                        predictions: Mapping[str, tuple]) -> dict[str, dict[str, float]]:
    """result key -> the official metrics on the dev rows not found in the corpus (seeds averaged) and
    "n_clean"; keys with no clean row, or an empty clean subset a metric cannot score, are left out."""
    from tasks.glue.metrics import compute_metrics
    from tasks.glue.tasks import TASK_NAMES, result_keys

    out = {}
    for key, entry in found.items():
        if key not in predictions:
            continue
        labels, by_seed = predictions[key][0], predictions[key][1]
        keep = np.ones(len(labels), dtype=bool)
        keep[list(entry["contaminated"])] = False
        if not keep.any():
            continue
        task = next(t for t in TASK_NAMES if key in result_keys(t))
        rows = np.flatnonzero(keep)
        ys = [labels[i] for i in rows]
        try:
            per_seed = [compute_metrics(task, [preds[i] for i in rows], ys) for preds in by_seed.values()]
        except ValueError:
            continue
        out[key] = {m: float(np.mean([s[m] for s in per_seed])) for m in per_seed[0]} | {"n_clean": int(keep.sum())}
    return out


def scan_key(curated_dir: str, shards: Sequence[str], examples: Mapping[str, Sequence[Sequence[str]]],
             rules: Mapping[str, Any]) -> str:
    """The cache key of a scan: the corpus (manifest fingerprint, else shard sizes and names), the dev texts
    and the rules."""
    corpus: Any = None
    try:
        with open(os.path.join(curated_dir, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        corpus = [manifest.get("fingerprint"), [s.get("sha256") for s in manifest.get("shards", [])]]
    except (OSError, ValueError):
        pass
    if corpus is None or corpus[0] is None:  # no manifest: names, sizes and mtimes of the shards
        from fsspec.core import url_to_fs

        corpus = []
        for path in shards:
            fs, p = url_to_fs(path)
            info = fs.info(p)
            corpus.append([path, info.get("size"), str(info.get("mtime") or info.get("LastModified"))])
    dev = hashlib.sha256(json.dumps({k: list(map(list, v)) for k, v in examples.items()}, sort_keys=True)
                         .encode("utf-8")).hexdigest()
    return fingerprint({"corpus": corpus, "dev": dev, "rules": dict(rules)}, 16)


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _dirty_mask(examples, rules, shards) -> np.ndarray:
    index = EvalNgramIndex(examples, **rules)
    index.scan(iter_shard_documents(shards))
    return index.dirty_mask()


def _read(cache_dir: str | None, key: str) -> dict | None:
    from tasks.pretrain.core import read_json_or_none

    return read_json_or_none(os.path.join(cache_dir, f"{key}.json")) if cache_dir else None


def _write(cache_dir: str | None, key: str, data: dict) -> None:
    if cache_dir:
        from tasks.shards.core import write_bytes_atomic

        os.makedirs(cache_dir, exist_ok=True)
        write_bytes_atomic(os.path.join(cache_dir, f"{key}.json"), json.dumps(data, sort_keys=True).encode())
