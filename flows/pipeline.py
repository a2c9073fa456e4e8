"""The whole pipeline as one flow: curate → tokenize + pretrain → GLUE fine-tune and evaluate → promote.

    lmpipe pipeline data_specs/pipeline/sample.yaml                  # what `make demo` runs
    lmpipe pipeline SPEC --stages glue,promote                       # some stages alone

Each stage is the existing flow, run as a subflow: `curate`, `pretrain` (which tokenizes first), `glue`, `promote`.
The pretrain spec's `data.curated` must be the curate spec's output. The GLUE stage evaluates exactly the version
that the pretrain stage registered (`models:/<name>/<version>`), and the gate then compares that candidate with
the champion.

Resumable: `<repo>/.lmpipe/pipeline/<name>-<fingerprint>/run.json` records the finished stages of the current
run; a rerun after a crash, a kill or a failed stage skips them (a killed pretraining resumes from its last
checkpoint inside the pretrain flow). A run is complete only when every stage of the spec is done: `--stages glue`
alone leaves it `partial`, and the next run continues it. A completed run is not continued: the next run starts
afresh. The spec fingerprint, MLflow run ids and registered versions are tags and a markdown artifact on the flow run.

One run of a spec at a time: the run folder is locked (`tasks.common.lock`) for the whole run, so a second
`lmpipe pipeline SPEC` started meanwhile (a schedule while the last run still goes) fails at once with
`OutputLocked` naming the first (pid, host, start, Prefect flow run), or waits `$LMPIPE_LOCK_WAIT_S` seconds for it.
The stages lock their own folders too (curate output, token folder, pretrain and GLUE jobs).
Before any work, the pretrain spec's `data.curated` must be the curate spec's output when both stages are in it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import yaml
from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from data_specs import fingerprint, load_spec
from data_specs.pipeline import STAGES, PipelineSpec
from flows.timeouts import flow_timeout
from tasks.common.lock import output_lock


def load_pipeline_spec(path: str) -> PipelineSpec:
    return load_spec(path, PipelineSpec)


def stage_spec_path(value: str | dict[str, Any], stage: str, spec_path: str, state: Path) -> str:
    """A stage spec's path: as given (relative to the working directory, else to the pipeline spec's folder), or
    an embedded mapping written to `<state>/<stage>.yaml`."""
    if isinstance(value, dict):
        state.mkdir(parents=True, exist_ok=True)
        out = state / f"{stage}.yaml"
        out.write_text(yaml.safe_dump(value, sort_keys=False), encoding="utf-8")
        return str(out)
    for candidate in (Path(value), Path(spec_path).resolve().parent / value):
        if candidate.is_file():
            return str(candidate.resolve())
    raise FileNotFoundError(f"{spec_path}: {stage} spec {value!r} not found (relative paths are tried against the "
                            f"working directory and the pipeline spec's folder)")


def pipeline_fingerprint(spec: PipelineSpec, paths: dict[str, str]) -> str:
    """The pipeline spec plus the content of every stage spec it names (editing a stage spec changes it)."""
    contents = {stage: Path(p).read_text(encoding="utf-8") for stage, p in paths.items()}
    return fingerprint({"pipeline": spec.model_dump(mode="json", exclude={"stages"}), "stages": contents})


def _state_root() -> Path:
    from tasks.common.state import state_path

    return state_path("pipeline")


def _tag_flow_run(tags: list[str]) -> None:
    """Add tags to the running flow run (what the Prefect UI filters on)."""
    from prefect.client.orchestration import get_client

    run_id = flow_run.id
    if not run_id:
        return
    with get_client(sync_client=True) as client:
        current = client.read_flow_run(run_id)
        client.update_flow_run(run_id, tags=sorted(set(current.tags or []) | set(tags)))


@flow(name="pipeline", log_prints=True, timeout_seconds=flow_timeout("pipeline"))
def pipeline(spec_path: str, stages: list[str] | None = None, fresh: bool = False) -> dict[str, Any]:
    """Run the pipeline spec's stages (or `stages`); returns what each stage produced and the champion's URI.

    `fresh=True` starts a new run even if the last one did not finish.
    """
    started_at = time.time()
    spec = load_pipeline_spec(spec_path)
    selected = [s for s in STAGES if s in (stages or spec.stages)]
    unknown = set(stages or []) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)}; expected some of {', '.join(STAGES)}")
    state_root = _state_root()
    paths = {s: stage_spec_path(getattr(spec, s), s, spec_path, state_root / f"{spec.name}-embedded")
             for s in ("curate", "pretrain", "glue")}
    if {"curate", "pretrain"} <= set(spec.stages) | set(selected):
        check_curated_is_curate_output(paths["curate"], paths["pretrain"])  # before any work
    spec_fp = pipeline_fingerprint(spec, paths)
    from tasks.pipeline.core import run_dir

    directory = run_dir(state_root, spec.name, spec_fp)
    with output_lock(str(directory)):  # one run of these specs at a time; a second fails at once naming us
        return _run_stages(spec, spec_path, spec_fp, paths, selected, directory, fresh, started_at)


def check_curated_is_curate_output(curate_spec: str, pretrain_spec: str) -> None:
    """Raise PreflightError (naming both paths and the fix) unless pretraining reads what the curate stage writes."""
    from data_specs import load_curate_spec, load_pretrain_spec
    from flows.curate import resolve_output
    from flows.pretrain import _abs
    from tasks.pipeline.core import curated_mismatch
    from tasks.pretrain.core import PreflightError

    problem = curated_mismatch(resolve_output(load_curate_spec(curate_spec).output),
                               _abs(load_pretrain_spec(pretrain_spec).data.curated),
                               curate_spec=curate_spec, pretrain_spec=pretrain_spec)
    if problem:
        raise PreflightError(f"the pipeline cannot run: {problem}")


def _run_stages(spec: PipelineSpec, spec_path: str, spec_fp: str, paths: dict[str, str], selected: list[str],
                directory: Path, fresh: bool, started_at: float) -> dict[str, Any]:
    """The stages of one run, with the run folder's lock held; returns the flow's summary."""
    from flows.curate import curate
    from flows.glue import glue, load_glue_spec, promote
    from flows.pretrain import pretrain
    from tasks.pipeline.core import finish_run, mark_stage, remaining_stages, run_status, stage_done, start_run

    run = start_run(directory, fresh=fresh)
    _tag_flow_run([f"pipeline:{spec.name}", f"spec:{spec_fp}"])
    print(f"pipeline {spec.name} ({spec_fp}), stages {', '.join(selected)}; state {directory}"
          + (f" (attempt {run['attempts']}: finished stages are skipped)" if run["attempts"] > 1 else ""))

    timings: dict[str, float] = {}
    outputs: dict[str, Any] = {}

    def stage(name: str, fn) -> Any:
        done = stage_done(run, name)
        if done is not None:
            print(f"[{name}] already done in this run: skipped")
            outputs[name] = done
            return done
        if name not in selected:
            return None
        print(f"[{name}] starting")
        t0 = time.perf_counter()
        try:
            out = fn()
        except BaseException:
            finish_run(directory, run, "failed")
            raise
        timings[name] = time.perf_counter() - t0
        out = {**out, "seconds": round(timings[name], 1)}
        mark_stage(directory, run, name, out)  # drops later stages' records: they judged the old output
        for later in STAGES[STAGES.index(name) + 1:]:
            outputs.pop(later, None)
        outputs[name] = out
        print(f"[{name}] done in {timings[name]:.1f} s")
        return out

    stage("curate", lambda: _curate_output(curate(paths["curate"])))
    pre = stage("pretrain", lambda: _pretrain_output(pretrain(paths["pretrain"])))
    model_uri = _model_uri(pre, paths["pretrain"])
    glue_spec = load_glue_spec(paths["glue"])
    stage("glue", lambda: _glue_output(glue(model_uri, tasks=spec.glue_tasks, spec_path=paths["glue"])))
    registered = _registered_name(paths["pretrain"])
    evaluated = (outputs.get("glue") or {}).get("version")  # the version GLUE judged, never a moved @candidate
    stage("promote", lambda: _promote_output(promote(registered, spec_path=paths["glue"], version=evaluated)))
    status = run_status(run, spec.stages)  # complete only when every stage of the spec is done
    remaining = remaining_stages(run, spec.stages)
    finish_run(directory, run, status)
    if remaining:
        print(f"run left open ({status}): {', '.join(remaining)} not done yet; the next `lmpipe pipeline "
              f"{spec_path}` continues it and skips the finished stages")

    tags = [f"model:{registered}"]
    if outputs.get("pretrain"):
        tags.append(f"version:{outputs['pretrain']['version']}")
    _tag_flow_run(tags)
    summary = {"name": spec.name, "fingerprint": spec_fp, "stages": outputs, "selected": selected,
               "timings": timings, "model": model_uri, "registered_model": registered,
               "champion_uri": f"models:/{registered}@champion", "tracking_uri": _tracking_uri(glue_spec),
               "model_kind": _pretrain_kind(paths["pretrain"]), "started_at": started_at,
               "status": status, "remaining": remaining, "state_dir": str(directory)}
    _publish(summary)
    return summary


def _curate_output(manifest: dict[str, Any]) -> dict[str, Any]:
    return {"output": manifest["output"], "fingerprint": manifest["fingerprint"], "kept": manifest["counts"]["kept"],
            "failed_inputs": len(manifest["failed_inputs"])}


def _pretrain_output(summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("model_uri", "registered_model", "version", "run_id", "run_name", "final_step", "resumed_from_step",
            "init_from")
    return {k: summary.get(k) for k in keys}


def _glue_output(summary: dict[str, Any]) -> dict[str, Any]:
    return {"glue_score": summary["glue_score"], "run_id": summary["run_id"], "registered": summary["registered"],
            "tasks": summary["tasks"], "version": summary["base_model_version"]}


def _promote_output(decision: dict[str, Any]) -> dict[str, Any]:
    return {k: decision[k] for k in ("promoted", "reason", "candidate_score", "champion_score", "moved", "run_id")}


def _registered_name(pretrain_spec: str) -> str:
    from data_specs import load_pretrain_spec

    return load_pretrain_spec(pretrain_spec).mlflow.registered_model


def _pretrain_kind(pretrain_spec: str) -> str:
    from data_specs import load_pretrain_spec

    return load_pretrain_spec(pretrain_spec).model.kind


def _model_uri(pre: dict[str, Any] | None, pretrain_spec: str) -> str:
    """The version the pretrain stage registered; without that stage, the current candidate."""
    name = _registered_name(pretrain_spec)
    return f"models:/{name}/{pre['version']}" if pre else f"models:/{name}@candidate"


def _tracking_uri(glue_spec: Any) -> str:
    from tasks.registry.tracking import default_tracking_uri

    return os.environ.get("MLFLOW_TRACKING_URI") or glue_spec.mlflow.tracking_uri or default_tracking_uri()


def _publish(summary: dict[str, Any]) -> None:
    """What the run produced, on the flow run: fingerprint, MLflow run ids, registered versions, timings."""
    s = summary["stages"]
    lines = [f"# Pipeline `{summary['name']}` (spec fingerprint `{summary['fingerprint']}`)", "",
             "| stage | seconds | result |", "|---|---:|---|"]
    for name in STAGES:
        out = s.get(name)
        if out is None:
            lines.append(f"| {name} | | not run |")
            continue
        result = {
            "curate": lambda o: f"{o['kept']:,} documents kept → `{o['output']}`",
            "pretrain": lambda o: f"`{o['model_uri']}` v{o['version']}, MLflow run `{o['run_id']}`",
            "glue": lambda o: f"GLUE score {o['glue_score'] * 100:.2f}, MLflow run `{o['run_id']}`; "
            + ", ".join(f"`{u}`" for u in o["registered"].values()),
            "promote": lambda o: ("**promoted**: " if o["promoted"] else "**refused**: ") + o["reason"],
        }[name](out)
        lines.append(f"| {name} | {out.get('seconds', '')} | {result} |")
    if summary.get("remaining"):
        lines += ["", f"Run **{summary['status']}**: {', '.join(summary['remaining'])} not done yet (the next run "
                  "of this spec continues it)."]
    lines += ["", f"Champion: `{summary['champion_uri']}` in `{summary['tracking_uri']}`"]
    create_markdown_artifact("\n".join(lines), key="pipeline-summary", description=f"pipeline {summary['name']}")

