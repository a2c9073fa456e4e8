"""Global near-dedup as a Ray Data job, so the heavy part of dedup grows with the cluster, not one node.

The driver side (`tasks.corpus.ray_decide`, itself Ray Data jobs) ranks the rows and runs exact dedup;
this job takes the exact survivors that have shingles, as *local* indices in survivor-priority order (per unit:
the local index of each row, or -1), and finds the same verified edges as the single-node
`tasks.dedup.lsh.near_duplicates_banded`:

1. **band rows** (`map_batches`, one task per unit file): each unit's `band_keys` column (written by the unit
   stage; recomputed from `minhash` for a unit written under another banding) becomes rows
   (band, part, key, local, row); `part` = key mod `parts` splits a band's key space into `parts` slices, so
   a bucket never spans two slices;
2. **candidate pairs** (`groupby(["band", "part"]).map_groups`): per (band, slice), the pure
   `tasks.dedup.lsh.bucket_pairs` (members in ascending local index, so the oversized-bucket anchors are the
   same highest-priority members as on one node) gives pairs `code = lo * m + hi`, routed by a hash of the code;
3. **verify** (`groupby("cpart").map_groups`): one task per slice of the code space takes the distinct codes
   (the union over all bands: the set the single-node path builds with `seen`, and its size is
   `candidate_pairs`), reads only the signature rows of its pairs from the unit files (the row groups that
   hold them), keeps the pairs whose estimate passes, and settles the ambiguous ones by exact Jaccard of
   their texts (`verify="exact"`), as the single-node path does: a pair's decision depends only on the pair;
4. **components** of the verified edges run as Ray Data jobs too (`tasks.corpus.ray_decide`, star rounds of
   `tasks.dedup.stars`: they depend only on the edge set). The driver holds no per-row array.

Memory per task: one (band, slice) of about `rows_per_group` rows x 32 bytes, or one slice of the pairs with
their signature rows, or one unit's band keys: bounded by the group size, not by the corpus. The cluster is
whatever `ray` is connected to (`flows.runners.ray_session`: `RAY_ADDRESS`, `run.ray_address`, else a local
Ray with `run.workers` CPUs). The decisions equal the single-node path's: `tests/unit/test_dedup_ray.py` on
the sample corpus and a generated one, and `benchmarks/bench_scale.py --dedup-engine ray` at scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from data_specs import MinHashSpec
from tasks.corpus.unit_files import load_texts, read_signature_rows, unit_band_keys
from tasks.dedup.exact_verify import ExactJaccard
from tasks.dedup.lsh import bucket_pairs, estimate
from tasks.dedup.minhash import _fmix64

if TYPE_CHECKING:
    import ray.data

ROWS_PER_GROUP = 1 << 20  # band rows per (band, slice) group: about 32 MB of group data per task


def near_pair_summaries(items: ray.data.Dataset, m: int, paths: Sequence[str], starts: np.ndarray, mh: MinHashSpec,
                        rows_per_group: int = ROWS_PER_GROUP) -> ray.data.Dataset:
    """LSH candidates and verification of the m near-dedup rows, as a Ray Data job; one summary row per
    verification task (`lo`, `hi`: its verified edges as int64 bytes; `candidates`, `exact_checked`).

    `items` holds one row per unit with candidates: `path`, `start` (its first corpus row) and `local` (the
    bytes of an int64 array over the unit's rows: the row's local index, its rank in survivor priority among
    the m rows, or -1). `paths[u]` is unit file u, whose rows are corpus rows starts[u]..starts[u+1]-1.
    """
    import ray

    parts = max(1, math.ceil(m / rows_per_group))
    cparts = max(parts, int(ray.cluster_resources().get("CPU", 1)))  # verification spread over every CPU
    ds = items.map_batches(_band_rows, batch_size=1, batch_format="numpy", zero_copy_batch=True,
                           fn_kwargs={"mh": mh, "parts": parts})
    # One shuffle partition per group at most (Ray Data's default of 200 costs 200 reduce tasks however small
    # the job): a partition then holds about one group, so memory per task stays bounded by the group size.
    ds = ds.groupby(["band", "part"], num_partitions=mh.bands * parts).map_groups(
        _candidate_pairs, batch_format="numpy",
        fn_kwargs={"m": m, "bucket_cap": mh.bucket_cap, "anchors": mh.bucket_anchors, "cparts": cparts},
    )
    return ds.groupby("cpart", num_partitions=cparts).map_groups(
        _verified_pairs, batch_format="numpy",
        fn_kwargs={"paths": list(paths), "starts": np.asarray(starts, dtype=np.int64), "mh": mh},
    )


def _band_rows(batch: dict[str, np.ndarray], mh: MinHashSpec, parts: int) -> dict[str, np.ndarray]:
    """Unit files -> one row (band, part, key, local, row) per band of every near-dedup candidate row."""
    bands = mh.bands
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("band", "part", "key", "local", "row")}
    for path, start, local_bytes in zip(batch["path"], batch["start"], batch["local"]):
        local = np.frombuffer(local_bytes, np.int64)
        keys = unit_band_keys(str(path), mh)
        picked = np.flatnonzero(local >= 0)
        keys = keys[picked]  # (k, bands)
        k = picked.size
        out["band"].append(np.repeat(np.arange(bands, dtype=np.int32), k))
        flat = keys.T.reshape(-1)  # band-major: band 0's k keys, then band 1's ...
        out["key"].append(flat)
        out["part"].append((flat % np.uint64(parts)).astype(np.int32))
        out["local"].append(np.tile(local[picked], bands))
        out["row"].append(np.tile(picked.astype(np.int64) + int(start), bands))
    return {name: np.concatenate(arrays) for name, arrays in out.items()}


def _candidate_pairs(group: dict[str, np.ndarray], m: int, bucket_cap: int, anchors: int,
                     cparts: int) -> dict[str, np.ndarray]:
    """One (band, slice): the distinct bucket pairs as `code = lo * m + hi`, with their corpus rows."""
    order = np.argsort(group["local"], kind="stable")  # members of a bucket in ascending local index
    local, row, keys = group["local"][order], group["row"][order], group["key"][order]
    i, j = bucket_pairs(keys, bucket_cap, anchors)
    code, first = np.unique(local[i] * m + local[j], return_index=True)
    i, j = i[first], j[first]
    return {"code": code, "lo": local[i], "hi": local[j], "lo_row": row[i], "hi_row": row[j],
            "cpart": (_fmix64(code.astype(np.uint64)) % np.uint64(cparts)).astype(np.int64)}


def _verified_pairs(group: dict[str, np.ndarray], paths: list[str], starts: np.ndarray,
                    mh: MinHashSpec) -> dict[str, np.ndarray]:
    """One slice of the code space: distinct pairs -> verified edges, as one summary row (edges as bytes)."""
    code, first = np.unique(group["code"], return_index=True)
    lo, hi = group["lo"][first], group["hi"][first]
    lo_row, hi_row = group["lo_row"][first], group["hi_row"][first]
    exact_checked = text_read = text_wanted = 0
    if mh.verify == "none" or code.size == 0:
        keep = np.ones(code.size, dtype=bool)
    else:
        rows = np.unique(np.concatenate([lo_row, hi_row]))
        sig = read_signature_rows(paths, starts, rows)
        est = estimate(sig, np.searchsorted(rows, lo_row), np.searchsorted(rows, hi_row))
        keep = est >= mh.threshold
        if mh.verify == "exact":
            ambiguous = np.flatnonzero(np.abs(est - mh.threshold) < mh.exact_margin)
            exact_checked = int(ambiguous.size)
            if ambiguous.size:
                # all of the task's ambiguous pairs in one call: their rows are read by (unit, row group), once each
                exact = ExactJaccard(lambda r: load_texts(paths, starts, r), mh.ngram)
                keep[ambiguous] = exact(lo_row[ambiguous], hi_row[ambiguous]) >= mh.threshold
                text_read, text_wanted = exact.text_bytes_read, exact.text_bytes_wanted
    return {"lo": np.array([lo[keep].tobytes()], dtype=object), "hi": np.array([hi[keep].tobytes()], dtype=object),
            "candidates": np.array([code.size], dtype=np.int64), "exact_checked": np.array([exact_checked], np.int64),
            "text_bytes_read": np.array([text_read], np.int64), "text_bytes_wanted": np.array([text_wanted], np.int64)}


