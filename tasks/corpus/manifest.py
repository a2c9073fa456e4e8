"""The run manifest (written last at the output root) and the markdown data card.

Counts reconcile by construction and are checked: documents in = kept + dropped + duplicates, where
documents in counts every record the readers saw, including those read from a failed input before
its error.

`run_key` names what an assembly was built from; the flow reuses an earlier manifest and its shards
only when the run key matches, so it covers each unit's outcome as well as its key.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from data_specs import fingerprint
from tasks.corpus.core import DedupOutcome
from tasks.units.core import UnitResult

MANIFEST_FORMAT = 1


class ReconcileError(AssertionError):
    """The manifest's counts do not add up: a bug, never a data problem."""


def unit_outcome(result: UnitResult) -> dict[str, Any]:
    """What a unit contributed to the output: its key (or label when it failed before having one) and outcome."""
    return {
        "key": result.key or f"failed:{result.label}", "url": result.url, "range": [result.start, result.end],
        "complete": result.complete, "error": result.error, "docs_in": result.docs_in, "kept": result.kept,
        "text_bytes": result.text_bytes, "drops": dict(sorted(result.drops.items())),
    }


def run_key(spec_fingerprint: str, results: Sequence[UnitResult], problems: Sequence[tuple[str, str]]) -> str:
    """Key of one assembly: the spec plus every unit's key *and outcome* plus the planning problems.

    A unit's key is input content + spec, so it stays the same when the same input first fails (a cut
    connection) and then reads whole; its outcome (error, counts) does not. Any changed outcome thus
    changes the run key and rebuilds the shards and manifest instead of reusing stale ones. Execution
    details (seconds, cached) are left out: a rerun that reuses every unit keeps the run key.
    """
    outcomes = sorted((unit_outcome(r) for r in results), key=lambda o: (o["key"], o["url"], str(o["range"])))
    return fingerprint({"spec": spec_fingerprint, "units": outcomes, "problems": [list(p) for p in problems]})


def build_manifest(
    *,
    spec: dict[str, Any],
    fingerprint: str,
    run_key: str,
    results: Sequence[UnitResult],
    planning_problems: Sequence[tuple[str, str]],
    outcome: DedupOutcome,
    shards: Sequence[dict[str, Any]],
    output: str,
) -> dict[str, Any]:
    """Everything a user needs to trust and reuse the corpus, in one JSON document."""
    drops: Counter[str] = Counter()
    notes: Counter[str] = Counter()
    for r in results:
        drops.update(r.drops)
        notes.update(r.notes)
    docs_in = sum(r.docs_in for r in results)
    kept = sum(s["rows"] for s in shards)
    dropped = sum(drops.values())
    duplicates = sum(outcome.removed.values())
    by_source: dict[int, dict[str, Any]] = {}
    for r in results:
        entry = by_source.setdefault(
            r.source_index,
            {"index": r.source_index, "kind": r.kind, "inputs": 0, "documents_in": 0, "after_cleaning": 0,
             "text_bytes_after_cleaning": 0},
        )
        entry["inputs"] += 1
        entry["documents_in"] += r.docs_in
        entry["after_cleaning"] += r.kept
        entry["text_bytes_after_cleaning"] += r.text_bytes
    # Planning problems in spec order, then failed units in corpus order (never completion order, which
    # changes from run to run): a rebuilt manifest has the same bytes.
    failed = [{"input": pattern, "error": error, "documents_read": 0} for pattern, error in planning_problems]
    failed += [
        {"input": r.label, "url": r.url, "error": r.error, "documents_read": r.docs_in}
        for r in sorted(results, key=_corpus_position)
        if r.error is not None
    ]
    manifest = {
        "format": MANIFEST_FORMAT,
        "name": spec["name"],
        "version": spec["version"],
        "fingerprint": fingerprint,
        "run_key": run_key,
        "output": output,
        "counts": {
            "documents_in": docs_in,
            "kept": kept,
            "dropped": dropped,
            "duplicates_removed": duplicates,
            "failed_inputs": len(failed),
        },
        "drop_reasons": dict(sorted(drops.items())),
        # Records kept with a remark (outside the reconciliation: a note is not a drop).
        "notes": dict(sorted(notes.items())),
        "duplicates": {
            **outcome.removed,
            "clusters": outcome.clusters,
            "cluster_sizes": {str(k): v for k, v in outcome.cluster_sizes.items()},
            "candidate_pairs": outcome.candidate_pairs,
            "verified_pairs": outcome.verified_pairs,
            "exact_checked_pairs": outcome.exact_checked,
            "verify_text_bytes_read": outcome.text_bytes_read,
            "verify_text_bytes_wanted": outcome.text_bytes_wanted,
            "removed_ids": outcome.removed_path,
            "engine": outcome.engine,
        },
        "sources": [by_source[i] for i in sorted(by_source)],
        "kept_by_source": outcome.kept_by_source,
        "languages": outcome.kept_languages,
        "failed_inputs": failed,
        "inputs": [
            {"label": r.label, "url": r.url, "range": [r.start, r.end], "unit_key": r.key,
             "documents_in": r.docs_in, "kept": r.kept, "error": r.error}
            for r in sorted(results, key=_corpus_position)
        ],
        "shards": list(shards),
        "spec": spec,
    }
    check_reconciles(manifest)
    return manifest


def _corpus_position(result: UnitResult) -> tuple:
    """Where a unit stands in the corpus: source, input URL, byte range (then label, to break any tie)."""
    return (result.source_index, result.url, result.start or 0, result.end or 0, result.label)


def check_reconciles(manifest: dict[str, Any]) -> None:
    """Raise ReconcileError unless in = kept + dropped + duplicates, and shards hold `kept` rows."""
    c = manifest["counts"]
    if c["documents_in"] != c["kept"] + c["dropped"] + c["duplicates_removed"]:
        raise ReconcileError(
            f"documents_in {c['documents_in']} != kept {c['kept']} + dropped {c['dropped']} + "
            f"duplicates {c['duplicates_removed']}"
        )
    if sum(s["rows"] for s in manifest["shards"]) != c["kept"]:
        raise ReconcileError("shard rows do not add up to kept")
    if sum(manifest["drop_reasons"].values()) != c["dropped"]:
        raise ReconcileError("drop reasons do not add up to dropped")


def sample_examples(
    output: str,
    shards: Sequence[dict[str, Any]],
    per_source: int,
    chars: int,
    kept_by_source: Mapping[str, int] | None = None,
) -> dict[str, list]:
    """The first `per_source` documents of each source in corpus order, for the data card.

    Reads row group by row group: the `source` column first, then the quoted columns of the chosen rows'
    row group only; stops as soon as every source in `kept_by_source` has its quota (or, without it,
    after the last shard). Memory is bounded by a row group, never by a shard or the corpus.
    """
    if per_source <= 0:
        return {}
    quota = None if kept_by_source is None else {s: min(per_source, n) for s, n in kept_by_source.items() if n > 0}
    examples: dict[str, list[dict[str, str]]] = {}

    def satisfied() -> bool:
        return quota is not None and all(len(examples.get(s, ())) >= q for s, q in quota.items())

    for shard in shards:
        if satisfied():
            break
        fs, path = url_to_fs(f"{output.rstrip('/')}/data/{shard['path']}")
        with fs.open(path, "rb") as f:
            parquet = pq.ParquetFile(f)
            for group in range(parquet.num_row_groups):
                if satisfied():
                    break
                chosen = _choose_rows(parquet.read_row_group(group, columns=["source"])["source"].to_pylist(),
                                      examples, per_source)
                if not chosen:
                    continue
                rows = parquet.read_row_group(group, columns=_EXAMPLE_COLUMNS).take(chosen).to_pylist()
                for row in rows:
                    text = row["text"][:chars].replace("\n", " ")
                    examples[row["source"]].append({"id": row["id"], "where": row["title"] or row["url"] or "",
                                                    "text": text})
    return examples


_EXAMPLE_COLUMNS = ["id", "source", "title", "url", "text"]


def _choose_rows(sources: Sequence[str], examples: dict[str, list], per_source: int) -> list[int]:
    """Indices of the rows that fill a source's quota, in order; opens a bucket for each new source."""
    wanted: Counter[str] = Counter()
    chosen = []
    for i, source in enumerate(sources):
        have = len(examples.setdefault(source, [])) + wanted[source]
        if have < per_source:
            wanted[source] += 1
            chosen.append(i)
    return chosen


def _mb(n: float) -> str:
    return f"{n / 1e6:,.2f} MB"


def render_data_card(manifest: dict[str, Any], examples: dict[str, list[dict[str, str]]]) -> str:
    """A markdown data card: sources, sizes, languages, drop reasons, dedup rate, examples."""
    c = manifest["counts"]
    dedup = manifest["duplicates"]
    after_clean = c["kept"] + c["duplicates_removed"]
    rate = c["duplicates_removed"] / after_clean if after_clean else 0.0
    total_bytes = sum(s["text_bytes"] for s in manifest["shards"])
    lines = [
        f"# Data card: {manifest['name']} (v{manifest['version']}, fingerprint `{manifest['fingerprint']}`)",
        "",
        f"- Documents in: **{c['documents_in']:,}**; kept: **{c['kept']:,}** "
        f"({_mb(total_bytes)} of text in {len(manifest['shards'])} shard(s)); dropped by rules: "
        f"{c['dropped']:,}; duplicates removed: {c['duplicates_removed']:,}.",
        f"- Dedup rate (of documents that passed cleaning): **{rate:.1%}** — exact "
        f"{dedup.get('dedup/exact', 0):,}, near {dedup.get('dedup/near', 0):,}; {dedup['clusters']:,} clusters.",
        f"- Failed inputs: {c['failed_inputs']}.",
        "",
        "## Sources",
        "",
        "| # | kind | inputs | documents in | after cleaning | text after cleaning | kept after dedup |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for s in manifest["sources"]:
        lines.append(
            f"| {s['index']} | {s['kind']} | {s['inputs']} | {s['documents_in']:,} | {s['after_cleaning']:,} | "
            f"{_mb(s['text_bytes_after_cleaning'])} | {manifest['kept_by_source'].get(s['kind'], 0):,} |"
        )
    lines += ["", "## Languages (kept documents)", "", "| language | documents |", "|---|---:|"]
    lines += [f"| {lang} | {n:,} |" for lang, n in manifest["languages"].items()]
    lines += ["", "## Drop reasons", "", "| reason | documents |", "|---|---:|"]
    lines += [f"| `{reason}` | {n:,} |" for reason, n in sorted(manifest["drop_reasons"].items(), key=lambda kv: -kv[1])]
    if manifest.get("notes"):
        lines += ["", "## Reader notes (records kept with a remark)", "", "| note | records |", "|---|---:|"]
        lines += [f"| `{note}` | {n:,} |" for note, n in sorted(manifest["notes"].items(), key=lambda kv: -kv[1])]
    if dedup["cluster_sizes"]:
        lines += ["", "## Duplicate cluster sizes", "", "| size | clusters |", "|---:|---:|"]
        lines += [f"| {size} | {n:,} |" for size, n in dedup["cluster_sizes"].items()]
    if manifest["failed_inputs"]:
        lines += ["", "## Failed inputs", "", "| input | documents read | error |", "|---|---:|---|"]
        lines += [
            f"| {f['input']} | {f['documents_read']:,} | {f['error'].replace('|', '/')} |"
            for f in manifest["failed_inputs"]
        ]
    if examples:
        lines += ["", "## Example documents"]
        for source, docs in examples.items():
            lines += ["", f"### {source}"]
            for d in docs:
                lines += ["", f"**{d['id']}** — {d['where']}", "", f"> {d['text']}…"]
    lines += ["", "## Shards", "", "| shard | rows | bytes | sha256 |", "|---|---:|---:|---|"]
    lines += [f"| {s['path']} | {s['rows']:,} | {s['bytes']:,} | `{s['sha256'][:16]}…` |" for s in manifest["shards"]]
    return "\n".join(lines) + "\n"
