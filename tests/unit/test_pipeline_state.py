"""Pipeline bookkeeping (`tasks.pipeline.core`): a run is complete only when every stage of its spec is done;
a run of some stages stays open and the next run continues it; a stage that runs again drops the records of
the stages after it; pretrain's data.curated must be the curate stage's output."""

from __future__ import annotations

import json

from data_specs.pipeline import STAGES
from tasks.pipeline.core import (
    curated_mismatch, finish_run, mark_stage, read_run, remaining_stages, run_status, stage_done, start_run,
)


def _finish(directory, run, required=STAGES) -> str:
    """What the flow does after its stages: the status the run ends with."""
    status = run_status(run, required)
    finish_run(directory, run, status)
    return status


def test_a_glue_only_run_does_not_complete_and_the_next_full_run_skips_what_is_done(tmp_path):
    # The scenario of issue 16: curate and pretrain done, GLUE failed; `--stages glue` retries GLUE.
    run = start_run(tmp_path)
    mark_stage(tmp_path, run, "curate", {"output": "/c"})
    mark_stage(tmp_path, run, "pretrain", {"version": "1"})
    finish_run(tmp_path, run, "failed")
    run = start_run(tmp_path)  # `--stages glue`
    assert run["attempts"] == 2
    mark_stage(tmp_path, run, "glue", {"version": "1", "glue_score": 0.6})
    assert _finish(tmp_path, run) == "partial"  # promote is not done: the run stays open
    assert read_run(tmp_path)["status"] == "partial"
    assert remaining_stages(run, STAGES) == ["promote"]

    run = start_run(tmp_path)  # the next full run continues it: nothing pretrains again
    assert run["attempts"] == 3
    assert [s for s in STAGES if stage_done(run, s) is None] == ["promote"]
    mark_stage(tmp_path, run, "promote", {"promoted": True})
    assert _finish(tmp_path, run) == "complete"
    assert start_run(tmp_path)["attempts"] == 1 and not read_run(tmp_path)["stages"]  # then a new run


def test_a_run_of_the_specs_own_stages_completes(tmp_path):
    run = start_run(tmp_path)
    mark_stage(tmp_path, run, "curate", {})
    mark_stage(tmp_path, run, "pretrain", {"version": "3"})
    assert _finish(tmp_path, run, ["curate", "pretrain"]) == "complete"  # a spec of two stages
    run = start_run(tmp_path)
    mark_stage(tmp_path, run, "curate", {})
    assert _finish(tmp_path, run, ["curate", "pretrain"]) == "partial"


def test_a_stage_that_runs_again_drops_the_records_built_on_its_old_output(tmp_path):
    # `--stages glue` on a fresh state evaluated the previous @candidate; a full run then pretrains a new
    # version, and that version must be evaluated, not the old score reused.
    run = start_run(tmp_path)
    mark_stage(tmp_path, run, "glue", {"version": "4"})
    assert _finish(tmp_path, run) == "partial"
    run = start_run(tmp_path)
    assert stage_done(run, "glue") == {"version": "4"}
    mark_stage(tmp_path, run, "curate", {})
    assert stage_done(run, "glue") is None and "glue" not in json.loads((tmp_path / "run.json").read_text())["stages"]
    assert remaining_stages(run, STAGES) == ["pretrain", "glue", "promote"]


def test_pretrain_must_read_what_curate_writes():
    ok = curated_mismatch("/w/out/curated", "/w/out/curated/", curate_spec="c.yaml", pretrain_spec="p.yaml")
    assert ok is None
    assert curated_mismatch("s3://b/c/", "s3://b/c", curate_spec="c.yaml", pretrain_spec="p.yaml") is None
    problem = curated_mismatch("/w/out/curated", "/w/out/other", curate_spec="c.yaml", pretrain_spec="p.yaml")
    assert problem is not None
    for part in ("/w/out/curated", "/w/out/other", "c.yaml", "p.yaml", "Set data.curated to /w/out/curated"):
        assert part in problem
