"""The curate flow: sources → clean, deduplicated, balanced Parquet shards + manifest + data card.

    lmpipe curate data_specs/curate/sample.yaml

Refuse an output folder that is not empty and not lmpipe's (`ForeignOutput`, before anything is written)
→ take the output's lock (a second run on the same output fails at once with `OutputLocked`) → plan
the work units (a file, or a byte range of a large file) → process each unit in parallel (read, clean,
sign; complete units are skipped on rerun) → global exact + MinHash dedup across all sources → write
balanced shards → write `manifest.json` last. A bad input never stops the run: it is listed in the
manifest with its error, and the CLI exits non-zero.

Reruns: the manifest and shards of an earlier run are reused only when the run key (spec + every
unit's key and outcome) is unchanged, so a rerun that reads a once-failed input whole rebuilds the
output. A killed run leaves complete units (reused), maybe some shards and no manifest: the rerun
reassembles from the units and gets the same bytes. An earlier output counts as present only when every
shard has the manifest's sha256 (`tasks.corpus.output.shards_present`).

Clean-up deletes only lmpipe's own names (stale `data/shard-*.parquet`, its `*.tmp-<hex>` files, dedup
scratch under `_work/`); a user's files and folders in the output survive every run
(`tasks/corpus/output.py`).

Fault points (`tasks/common/faults.py`, inert unless LMPIPE_FAULTS is set): `curate.unit_written`
(tasks/units/core.py), `curate.dedup_done`, `curate.shard_written` (detail: shard name) and
`curate.before_manifest`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from contextlib import closing, nullcontext
from typing import Any

from fsspec.core import url_to_fs
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, create_table_artifact
from prefect.artifacts import update_progress_artifact
from prefect.futures import PrefectFuture, as_completed

from data_specs import CurateSpec, curate_fingerprint, load_curate_spec
from flows.runners import apply_run_overrides, chosen_dedup_engine, chosen_runner, make_task_runner, ray_session
from flows.timeouts import flow_timeout
from tasks.common.faults import fault_point
from tasks.common.lock import output_lock
from tasks.corpus.core import plan_shards, read_manifest, remove_stale_shards
from tasks.corpus.ids import fail_clashing_units
from tasks.corpus.manifest import build_manifest, render_data_card, run_key, sample_examples
from tasks.corpus.output import check_output_is_ours, mark_output, remove_orphan_temp_files, shards_present
from tasks.corpus.task import deduplicate_task, write_shard_task
from tasks.shards.core import ShardPlan, bounded_in_order, write_bytes_atomic
from tasks.sources.core import WorkUnit
from tasks.sources.task import plan_work_units
from tasks.units.core import UnitResult
from tasks.units.task import process_unit_task, unit_process_pool


def resolve_output(output: str) -> str:
    """Absolute local path (so every worker agrees), or the URL unchanged."""
    return output if "://" in output else os.path.abspath(output)


def _failed_unit(unit: WorkUnit, error: BaseException) -> UnitResult:
    return UnitResult(
        key="", label=unit.label, source_index=unit.source_index, kind=unit.kind, url=unit.url,
        start=unit.start, end=unit.end, path="", error=f"{type(error).__name__}: {error}",
    )


@flow(name="curate-units", log_prints=True, timeout_seconds=flow_timeout("curate-units"))
def process_units(spec: CurateSpec, units: list[tuple[int, WorkUnit]], work_dir: str) -> list[UnitResult]:
    """Map every work unit (bounded by run.workers); a unit that fails after retries becomes a failed input."""
    logger = get_run_logger()
    progress = create_progress_artifact(0.0, key="curate-units-progress", description="Work units finished")
    task = process_unit_task.with_options(retries=spec.run.retries)
    futures = {}
    with unit_process_pool(spec.run.workers if chosen_runner(spec.run) == "threads" else 1):
        for index, unit in units:
            future = task.submit(
                spec.sources[index], unit, spec.clean, spec.dedup.minhash, work_dir,
                spec.shards.row_group_rows, spec.shards.compression_level,
            )
            futures[future] = unit
        results: list[UnitResult] = []
        for done, future in enumerate(as_completed(list(futures)), start=1):
            unit = futures[future]
            outcome = future.result(raise_on_failure=False)
            if isinstance(outcome, BaseException):
                outcome = _failed_unit(unit, outcome)
            results.append(outcome)
            status = "cached" if outcome.cached else ("FAILED: " + outcome.error if outcome.error else "done")
            logger.info(
                "[%d/%d] %s: %d in, %d kept (%s)", done, len(futures), unit.label, outcome.docs_in, outcome.kept,
                status,
            )
            update_progress_artifact(progress, 100.0 * done / len(futures))
    return results


@flow(name="curate", log_prints=True, timeout_seconds=flow_timeout("curate"))
def curate(spec_path: str) -> dict[str, Any]:
    """Curate the corpus described by the spec at `spec_path`; returns the manifest.

    Raises `tasks.common.lock.OutputLocked` at once when another run holds the output, and
    `tasks.corpus.output.ForeignOutput` when the output folder holds files lmpipe did not write.
    """
    spec = apply_run_overrides(load_curate_spec(spec_path))
    output = resolve_output(spec.output)
    check_output_is_ours(output)  # before the lock file: a refused folder is left untouched
    with output_lock(output):
        mark_output(output)
        manifest = _curate_locked(spec, output)
        _publish(manifest, output)
    return manifest


def _curate_locked(spec: CurateSpec, output: str) -> dict[str, Any]:
    """The run proper, with the output's lock held: units, then (unless up to date) the assembly."""
    logger = get_run_logger()
    work_dir = f"{output.rstrip('/')}/_work"
    spec_fp = curate_fingerprint(spec)
    logger.info("Curating %s (fingerprint %s) into %s", spec.name, spec_fp, output)
    if orphans := remove_orphan_temp_files(output):
        logger.info("Removed %d temporary file(s) or folder(s) left by a killed run", len(orphans))

    units, problems = plan_work_units(spec.sources, spec.run)  # inputs hashed in parallel (threads or Ray)
    for pattern, error in problems:
        logger.warning("Input %s: %s", pattern, error)
    runner = make_task_runner(spec.run)
    results = process_units.with_options(task_runner=runner)(spec, units, work_dir)

    key = run_key(spec_fp, results, problems)
    previous = read_manifest(output)
    if previous and previous.get("run_key") == key and shards_present(output, previous["shards"]):
        logger.info("Output is up to date (run key %s): nothing to write", key)
        return previous
    return _assemble(spec, spec_fp, key, results, problems, output, work_dir)


def _assemble(
    spec: CurateSpec, spec_fp: str, key: str, results: list[UnitResult], problems: list[tuple[str, str]],
    output: str, work_dir: str,
) -> dict[str, Any]:
    """Dedup, write shards, then the manifest (last) and the data card."""
    fs, manifest_path = url_to_fs(f"{output}/manifest.json")
    if fs.exists(manifest_path):
        fs.rm(manifest_path)  # the old manifest must not describe shards we are about to replace
    engine = chosen_dedup_engine(spec.run)
    with ray_session(spec.run) if engine == "ray" else nullcontext():
        outcome = deduplicate_task(results, spec.dedup, work_dir, engine)
    fault_point("curate.dedup_done")
    plans = plan_shards(outcome, output, spec.shards.target_mb)

    # At most run.workers shards in flight (not a .map of all of them): each holds about a row group.
    def submit(plan: ShardPlan) -> PrefectFuture:
        return write_shard_task.submit(plan, spec.shards.row_group_rows, spec.shards.compression_level)

    shards = []
    # closing: should this loop raise, the shards still in flight finish before the lock is released
    with closing(bounded_in_order(submit, plans, spec.run.workers)) as written:
        for entry in written:
            shards.append(entry)
            fault_point("curate.shard_written", entry["path"])
    remove_stale_shards(output, {s["path"] for s in shards})
    results = fail_clashing_units(results, outcome.failed_units)  # an id clash fails its inputs, not the run
    manifest = build_manifest(
        spec=spec.model_dump(mode="json"), fingerprint=spec_fp, run_key=key, results=results,
        planning_problems=problems, outcome=outcome, shards=shards, output=output,
    )
    examples = sample_examples(
        output, shards, spec.data_card.examples_per_source, spec.data_card.example_chars, outcome.kept_by_source
    )
    write_bytes_atomic(f"{output}/DATA_CARD.md", render_data_card(manifest, examples).encode("utf-8"))
    fault_point("curate.before_manifest")
    write_bytes_atomic(f"{output}/manifest.json", _json_bytes(manifest))
    return manifest


def _json_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _publish(manifest: dict[str, Any], output: str) -> None:
    """Data card and summary table as Prefect artifacts (visible on the flow run page)."""
    fs, card_path = url_to_fs(f"{output}/DATA_CARD.md")
    card = fs.cat_file(card_path).decode("utf-8") if fs.exists(card_path) else "(no data card)"
    create_markdown_artifact(card, key="curate-data-card", description=f"Data card of {manifest['name']}")
    c = manifest["counts"]
    reasons = Counter(manifest["drop_reasons"])
    reasons.update({k: v for k, v in manifest["duplicates"].items() if k.startswith("dedup/")})
    create_table_artifact(
        [{"what": k, "documents": v} for k, v in c.items()] + [{"what": k, "documents": v} for k, v in reasons.items()],
        key="curate-counts",
        description=f"Counts for {manifest['name']} ({manifest['fingerprint']})",
    )
