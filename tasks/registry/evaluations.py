"""GLUE evaluations on registered models: what the evaluation writes on a model version and what the gate reads.

A base model version (e.g. `sample-bert` v3) carries its latest GLUE evaluation as version tags:

    lmpipe.glue.status   running | complete | failed
    lmpipe.glue.tasks    "rte,stsb"                 (HF task names, in run order)
    lmpipe.glue.score    "0.5123"                   (glue_score over those tasks, fraction)
    lmpipe.glue.results  {"rte": {"accuracy": ...}, "stsb": {...}}   (JSON)
    lmpipe.glue.run_id   the parent MLflow run that holds the table

and each fine-tuned task model `<base>-glue-<task>` version carries `lmpipe.base_model_name/_version`, so the
gate can move `champion` on the task models of exactly that base version. MLflow side effects only; the
decision itself is `tasks.glue.gate.decide` (pure).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from tasks.glue.gate import EvalRecord

STATUS, TASKS, SCORE, RESULTS, RUN_ID = (f"lmpipe.glue.{k}" for k in ("status", "tasks", "score", "results", "run_id"))
BASE_NAME, BASE_VERSION = "lmpipe.base_model_name", "lmpipe.base_model_version"
_URI = re.compile(r"^models:/(?P<name>[^@/]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")


@dataclass(frozen=True)
class BaseModel:
    """The model being evaluated: where its files are and what it descends from."""

    uri: str  # what the user passed
    name: str  # registered name, or --name / the folder name for a local directory
    version: str | None  # registered version; None for a local directory
    hf_dir: str  # local save_pretrained folder
    run_id: str | None  # the run that produced the version (pretraining), for lineage
    curated_dir: str | None  # the curated corpus it was pretrained on, when its lineage names one


def client(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def safe_model_name(text: str) -> str:
    """A registry-friendly base name from a folder name: lower case, [a-z0-9._-]."""
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.")
    return name or "model"


def resolve_base_model(model: str, tracking_uri: str, download_to: str, name: str | None = None) -> BaseModel:
    """A `models:/<name>@<alias>` / `models:/<name>/<version>` URI (downloaded into `download_to`) or a local
    Hugging Face folder. Raises ValueError with the fix when neither."""
    from tasks.registry.core import download_hf_dir

    m = _URI.match(model)
    if m:
        c = client(tracking_uri)
        try:
            mv = (c.get_model_version_by_alias(m["name"], m["alias"]) if m["alias"]
                  else c.get_model_version(m["name"], m["version"]))
        except MlflowException as exc:
            raise ValueError(f"{model}: not found in the registry at {tracking_uri} ({exc.message})") from exc
        hf_dir = download_hf_dir(f"models:/{m['name']}/{mv.version}", download_to, tracking_uri)
        return BaseModel(model, m["name"], str(mv.version), hf_dir, mv.run_id,
                         _curated_dir_of_run(c, mv.run_id, mv.tags or {}))
    if model.startswith("models:/"):
        raise ValueError(f"expected models:/<name>@<alias> or models:/<name>/<version>, got {model!r}")
    path = Path(model)
    if not (path / "config.json").is_file():
        raise ValueError(f"{model}: neither a models:/ URI nor a Hugging Face folder (no config.json there)")
    return BaseModel(model, name or safe_model_name(path.resolve().name), None, str(path.resolve()), None, None)


def _curated_dir_of_run(c: MlflowClient, run_id: str | None, tags: dict[str, str]) -> str | None:
    """The curated corpus a pretraining run names: its tag, else the token manifest it logged."""
    if tags.get("lmpipe.curated_path"):
        return tags["lmpipe.curated_path"]
    if not run_id:
        return None
    try:
        run = c.get_run(run_id)
        if run.data.tags.get("lmpipe.curated_path"):
            return run.data.tags["lmpipe.curated_path"]
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            local = c.download_artifacts(run_id, "token_manifest.json", tmp)
            return json.loads(Path(local).read_text())["curated"]["path"]
    except (MlflowException, OSError, KeyError, ValueError):
        return None


def set_eval_status(name: str, version: str, status: str, tracking_uri: str, *, run_id: str | None = None,
                    tasks: list[str] | None = None) -> None:
    """Mark the start (running) or failure of an evaluation on a base model version."""
    c = client(tracking_uri)
    c.set_model_version_tag(name, version, STATUS, status)
    if run_id:
        c.set_model_version_tag(name, version, RUN_ID, run_id)
    if tasks is not None:
        c.set_model_version_tag(name, version, TASKS, ",".join(tasks))
    if status != "complete":  # an older score must not pass for this evaluation's
        for key in (SCORE, RESULTS):
            if key in (c.get_model_version(name, version).tags or {}):
                c.delete_model_version_tag(name, version, key)


def write_eval_record(name: str, version: str, tasks: list[str], results: dict[str, dict[str, float]],
                      score: float, run_id: str, tracking_uri: str) -> None:
    """A complete evaluation: results and score on the version, status last (what the gate trusts)."""
    c = client(tracking_uri)
    c.set_model_version_tag(name, version, TASKS, ",".join(tasks))
    c.set_model_version_tag(name, version, RESULTS, json.dumps(results, sort_keys=True))
    c.set_model_version_tag(name, version, SCORE, f"{score:.6f}")
    c.set_model_version_tag(name, version, RUN_ID, run_id)
    c.set_model_version_tag(name, version, STATUS, "complete")


def read_eval_record(name: str, alias: str, tracking_uri: str) -> EvalRecord | None:
    """The evaluation on the version behind `name@alias`; None when the alias does not exist.

    A version never evaluated gives a record with status "missing" (the gate refuses it)."""
    c = client(tracking_uri)
    try:
        mv = c.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    tags = mv.tags or {}
    try:
        results = json.loads(tags.get(RESULTS, "{}"))
    except json.JSONDecodeError:
        results = {}
    tasks = tuple(t for t in tags.get(TASKS, "").split(",") if t)
    return EvalRecord(version=str(mv.version), status=tags.get(STATUS, "missing"), tasks=tasks, results=results)


def task_model_name(base: str, task: str) -> str:
    return f"{base}-glue-{task}"


def move_champion(name: str, version: str, tasks: list[str], tracking_uri: str, alias: str = "champion") -> list[str]:
    """Point `alias` at `name` v`version` and at the task models fine-tuned from it; returns what moved."""
    c = client(tracking_uri)
    moved = []
    for task in tasks:
        task_name = task_model_name(name, task)
        found = c.search_model_versions(f"name = '{task_name}'")
        mine = [v for v in found if (v.tags or {}).get(BASE_VERSION) == str(version)
                and (v.tags or {}).get(BASE_NAME) == name]
        if mine:
            newest = max(mine, key=lambda v: int(v.version))
            c.set_registered_model_alias(task_name, alias, newest.version)
            moved.append(f"{task_name} v{newest.version}")
    c.set_registered_model_alias(name, alias, str(version))
    moved.insert(0, f"{name} v{version}")
    return moved
