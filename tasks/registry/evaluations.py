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
LAST_STATUS, LAST_RUN_ID = "lmpipe.glue.last_status", "lmpipe.glue.last_run_id"
# Tags on each evaluation's parent run: the records of a version are found by these.
EVAL_MODEL, EVAL_VERSION, EVAL_STATUS = "lmpipe.eval.model", "lmpipe.eval.version", "lmpipe.eval.status"
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
    """Mark the start (running) or failure of an evaluation on a base model version.

    Only the `last_*` tags change: the summary of the version's last complete evaluation (status, tasks, score,
    results, run id) stays, so a failed or partial re-evaluation never erases a complete record."""
    c = client(tracking_uri)
    c.set_model_version_tag(name, version, LAST_STATUS, status)
    if run_id:
        c.set_model_version_tag(name, version, LAST_RUN_ID, run_id)
        c.set_tag(run_id, EVAL_MODEL, name)
        c.set_tag(run_id, EVAL_VERSION, str(version))
        c.set_tag(run_id, EVAL_STATUS, status)
        if tasks is not None:
            c.set_tag(run_id, "lmpipe.glue.tasks", ",".join(tasks))


def store_record(record: EvalRecord, predictions: dict[str, tuple], glue_score: float | None,
                 tracking_uri: str) -> None:
    """Log one evaluation's record and its per-example predictions on its parent run (`record.run_id`), then
    its status tag, last: a record is found complete only once its files are there. A complete evaluation of
    the spec's whole task set also becomes the version's summary tags (what the UI and `read_eval_record`
    show)."""
    c = client(tracking_uri)
    log_record_files(c, record, predictions, glue_score)
    c.set_tag(record.run_id, EVAL_STATUS, record.status)
    c.set_model_version_tag(record.model, record.version, LAST_STATUS, record.status)
    if record.status == "complete" and record.setup is not None and record.setup.full and glue_score is not None:
        write_eval_record(record.model, record.version, list(record.tasks), record.results, glue_score,
                          record.run_id, tracking_uri)


def log_record_files(c: MlflowClient, record: EvalRecord, predictions: dict[str, tuple],
                     glue_score: float | None) -> None:
    """`predictions/<key>.csv` and `evaluation.json` on the record's run."""
    from tasks.glue.records import PREDICTIONS_DIR, RECORD_FILE, predictions_csv, record_to_json

    for key, value in predictions.items():  # (labels, {seed: predictions}[, {seed: scores}])
        c.log_text(record.run_id, predictions_csv(*value), f"{PREDICTIONS_DIR}/{key}.csv")
    c.log_dict(record.run_id, record_to_json(record, glue_score), RECORD_FILE)


def list_records(name: str, version: str, tracking_uri: str) -> list[EvalRecord]:
    """Every evaluation run of `name` v`version`, newest first, as records (running or failed ones without
    files come with their status and no results)."""
    from tasks.glue.records import RECORD_FILE, record_from_json

    c = client(tracking_uri)
    experiments = [e.experiment_id for e in c.search_experiments()]
    if not experiments:
        return []
    runs = c.search_runs(experiments, filter_string=f"tags.`{EVAL_MODEL}` = '{name}' and "
                                                    f"tags.`{EVAL_VERSION}` = '{version}'",
                         order_by=["attribute.start_time DESC"], max_results=1000)
    records = []
    for run in runs:
        status = run.data.tags.get(EVAL_STATUS, "running")
        data = None
        if status == "complete":
            try:
                data = _download_json(c, run.info.run_id, RECORD_FILE)
            except (MlflowException, OSError, ValueError):
                status = "unreadable"
        tasks = tuple(t for t in run.data.tags.get("lmpipe.glue.tasks", "").split(",") if t)
        records.append(record_from_json({**data, "status": status}) if data else
                       EvalRecord(str(version), status, tasks, {}, model=name, run_id=run.info.run_id))
    return records


def load_predictions(run_id: str, keys: list[str], tracking_uri: str) -> dict[str, tuple]:
    """result key -> (labels (n,), predictions (seeds, n)) from an evaluation run's artifacts."""
    import tempfile

    from tasks.glue.records import PREDICTIONS_DIR, read_predictions

    c = client(tracking_uri)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key in keys:
            out[key] = read_predictions(Path(c.download_artifacts(run_id, f"{PREDICTIONS_DIR}/{key}.csv", tmp)))
    return out


def _download_json(c: MlflowClient, run_id: str, path: str) -> dict:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return json.loads(Path(c.download_artifacts(run_id, path, tmp)).read_text())


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


class ChampionMoveError(RuntimeError):
    """`champion` could not move for every model of a version; nothing was moved (or all was put back)."""


def move_champion(name: str, version: str, tasks: list[str], tracking_uri: str, alias: str = "champion") -> list[str]:
    """Point `alias` at `name` v`version` and at every task model fine-tuned from it, or at none of them.

    Every task in `tasks` must have a task model of that version (else ChampionMoveError, nothing moved).
    Task models that point `alias` at an older base version but have no model of this one lose the alias, so
    `champion` never mixes versions. A failure half-way puts the previous aliases back. Returns what moved."""
    c = client(tracking_uri)
    plan: dict[str, str | None] = {}  # registered model -> its new alias target (None: delete the alias)
    for task in tasks:
        task_name = task_model_name(name, task)
        newest = _task_model_of(c, name, version, task_name)
        if newest is None:
            raise ChampionMoveError(f"{task_name} has no version fine-tuned from {name} v{version}; nothing moved "
                                    f"(re-run `lmpipe glue models:/{name}/{version} --tasks {task}`)")
        plan[task_name] = newest
    for rm in c.search_registered_models(f"name LIKE '{task_model_name(name, '')}%'"):
        if rm.name not in plan and alias in (rm.aliases or {}):
            plan[rm.name] = _task_model_of(c, name, version, rm.name)
    plan[name] = str(version)
    previous = {model: _alias_target(c, model, alias) for model in plan}
    moved: list[str] = []
    try:
        for model, target in plan.items():
            _point_alias(c, model, alias, target)
            moved.append(f"{model} v{target}" if target else f"{model}: alias removed (no model of v{version})")
    except Exception as exc:
        for model, target in previous.items():
            try:
                _point_alias(c, model, alias, target)
            except MlflowException:
                pass
        raise ChampionMoveError(f"moving {alias} to {name} v{version} failed ({exc}); the previous aliases were "
                                "put back") from exc
    return [moved[-1], *moved[:-1]]


def _task_model_of(c: MlflowClient, name: str, version: str, task_name: str) -> str | None:
    found = c.search_model_versions(f"name = '{task_name}'")
    mine = [v for v in found if (v.tags or {}).get(BASE_VERSION) == str(version) and (v.tags or {}).get(BASE_NAME) == name]
    return str(max(mine, key=lambda v: int(v.version)).version) if mine else None


def _point_alias(c: MlflowClient, model: str, alias: str, target: str | None) -> None:
    """Point `alias` of `model` at version `target`; None removes the alias."""
    if target is None:
        c.delete_registered_model_alias(model, alias)
    else:
        c.set_registered_model_alias(model, alias, target)


def _alias_target(c: MlflowClient, model: str, alias: str) -> str | None:
    try:
        return str(c.get_model_version_by_alias(model, alias).version)
    except MlflowException:
        return None
