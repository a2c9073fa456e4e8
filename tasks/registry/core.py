"""Log a Hugging Face model folder to MLflow, register it, and move aliases: the MLflow side-effect layer.

    info = log_and_register("out/model", registered_model="tiny-bert", run_id=run.info.run_id,
                            tracking_uri=uri, task="fill-mask", tags={"spec_fingerprint": "…"})
    mlflow.pyfunc.load_model(info.uri).predict(pd.DataFrame({"text": ["a [MASK] b"]}))
    promote("tiny-bert", info.version, "champion", uri)
    download_hf_dir("models:/tiny-bert@champion", "/tmp/m", uri)   # -> folder for AutoModel*.from_pretrained

    log_and_register_classifier("out/glue/sst2", registered_model="glue-sst2", run_id=…, tracking_uri=uri,
                                glue_task="sst2", text_columns=["sentence"], label_names=["negative", "positive"],
                                tags={…})
    mlflow.pyfunc.load_model("models:/glue-sst2@candidate").predict(pd.DataFrame({"sentence": ["a fine film"]}))
      -> DataFrame[label, score, negative, positive]

What one call leaves behind (MLflow 3.17, facts §C2–C3):
- a LoggedModel `m-…` in the run's experiment: a models-from-code pyfunc (`hf_pyfunc.py` for language models,
  `glue_pyfunc.py` for GLUE classifiers) with the HF folder as its "hf_model" artifact, explicit pip
  requirements (inference fails with transformers ≥5.23, STACK_NOTES) and a signature (language models: params
  top_k for fill-mask or max_new_tokens/return_full_text for generation; classifiers: the task's text columns
  in, label/score/per-label probabilities out);
- the same folder as plain run artifacts under "hf_model/" (download it and use transformers directly);
- a new version of `registered_model`, tagged with `tags` (+ task, model_id, lmpipe.source_dir = the absolute
  folder logged, which `lmpipe gc` keeps; + glue_task for classifiers),
  with `alias` moved onto it.

The run is only written to, never started or ended, so a caller's open run stays RUNNING.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

import mlflow
import pandas as pd
import yaml
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus
from mlflow.models import Model, ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from tasks.registry import glue_pyfunc, hf_pyfunc

Task = Literal["fill-mask", "text-generation"]
CLASSIFIER_TASK = "text-classification"  # the "task" tag of GLUE classifiers (regression included)
HF_ARTIFACT = hf_pyfunc.HF_ARTIFACT  # artifact name in both pyfuncs and folder name among run artifacts
MODEL_NAME = "model"  # LoggedModel name inside the run
_REQUIREMENTS = ("mlflow", "torch", "transformers", "tokenizers", "pandas", "safetensors")
_URI_LOCK = threading.Lock()  # MLflow's fluent tracking URI is process-global


@dataclass(frozen=True)
class RegisteredModel:
    """A registered version and the URIs to load it by."""

    name: str
    version: str
    alias: str
    uri: str  # models:/<name>@<alias> (moves with the alias)
    model_uri: str  # models:/m-<id> (this exact LoggedModel, forever)
    run_id: str
    model_id: str


def pip_requirements() -> list[str]:
    """Pinned requirements of the serving environment, read from the installed packages.

    Local version labels are dropped ("2.13.0+cpu" -> "2.13.0"): they only exist on PyTorch's own index.
    """
    reqs = []
    for pkg in _REQUIREMENTS:
        try:
            reqs.append(f"{pkg}=={version(pkg).split('+', 1)[0]}")
        except PackageNotFoundError:
            continue
    return reqs


def signature_for(task: Task) -> ModelSignature:
    """Input: a 'text' column. Output and params by task (params must be in the signature to reach predict)."""
    inputs = Schema([ColSpec("string", "text")])
    if task == hf_pyfunc.FILL_MASK:
        outputs = Schema([ColSpec("string", "text"), ColSpec("string", "token_str"), ColSpec("double", "score")])
        params = ParamSchema([ParamSpec("top_k", "long", 5)])
    elif task == hf_pyfunc.TEXT_GENERATION:
        outputs = Schema([ColSpec("string", "text"), ColSpec("string", "generated_text")])
        params = ParamSchema(
            [ParamSpec("max_new_tokens", "long", 20), ParamSpec("return_full_text", "boolean", True)]
        )
    else:
        raise ValueError(f"task must be 'fill-mask' or 'text-generation', got {task!r}")
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def default_input_example(hf_dir: str, task: Task) -> pd.DataFrame:
    """One sentence: with the tokenizer's mask token for fill-mask, a plain prompt for generation."""
    if task == hf_pyfunc.FILL_MASK:
        from transformers import AutoTokenizer

        mask = AutoTokenizer.from_pretrained(hf_dir).mask_token
        if mask is None:
            raise ValueError(f"{hf_dir}: fill-mask needs a tokenizer with a mask token")
        return pd.DataFrame({"text": [f"The capital of France is {mask}."]})
    return pd.DataFrame({"text": ["Once upon a time"]})


def classifier_signature(text_columns: list[str], label_names: list[str]) -> ModelSignature:
    """Inputs: the task's text columns (strings). Outputs: label (name), score and one probability per label
    name; score alone for regression (label_names == [])."""
    glue_pyfunc.check_columns(text_columns, label_names)
    inputs = Schema([ColSpec("string", c) for c in text_columns])
    outputs = Schema(
        [ColSpec("string" if c == glue_pyfunc.LABEL else "double", c) for c in glue_pyfunc.output_columns(label_names)]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


_EXAMPLE_PAIR = ("A small cat sat on the warm mat.", "A cat was sitting on a mat.")


def default_classifier_example(text_columns: list[str]) -> pd.DataFrame:
    """One row: a sentence for a single-text task, two close paraphrases for a pair task."""
    return pd.DataFrame({c: [text] for c, text in zip(text_columns, _EXAMPLE_PAIR)})


@contextmanager
def _tracking(tracking_uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (which `Model.log` uses) at `tracking_uri`, then restore it exactly.

    `mlflow.set_tracking_uri` also writes MLFLOW_TRACKING_URI into os.environ, so the env vars are saved
    and restored too. Guarded by a lock: concurrent threads with different URIs would otherwise race.
    """
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    env_keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    with _URI_LOCK:
        saved_env = {k: os.environ.get(k) for k in env_keys}
        saved = (tracking_utils._tracking_uri, registry_utils._registry_uri)
        try:
            mlflow.set_tracking_uri(tracking_uri)
            mlflow.set_registry_uri(tracking_uri)
            yield
        finally:
            tracking_utils._tracking_uri, registry_utils._registry_uri = saved
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _client(tracking_uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _hf_folder(hf_dir: str) -> Path:
    hf_path = Path(hf_dir)
    if not (hf_path / "config.json").is_file():
        raise FileNotFoundError(f"{hf_dir} is not a save_pretrained folder (no config.json)")
    return hf_path


def log_and_register(
    hf_dir: str,
    *,
    registered_model: str,
    run_id: str,
    tracking_uri: str,
    task: Task,
    tags: dict[str, str],
    alias: str = "candidate",
    input_example: pd.DataFrame | None = None,
) -> RegisteredModel:
    """Log `hf_dir` as a pyfunc LoggedModel in run `run_id`, register it, tag the version, set `alias`.

    Also logs the plain folder as run artifacts under "hf_model/". The run must exist; it is not ended.
    `input_example` (a DataFrame with a 'text' column) is stored with the model and MLflow checks it by
    running predict once before anything is registered; without one, a task-appropriate sentence is used.
    """
    hf_path = _hf_folder(hf_dir)
    signature = signature_for(task)  # validates `task`
    if input_example is None:
        input_example = default_input_example(str(hf_path), task)
    return _log_pyfunc_and_register(
        hf_path,
        python_model=hf_pyfunc.__file__,
        model_config={"task": task},
        signature=signature,
        input_example=input_example,
        registered_model=registered_model,
        run_id=run_id,
        tracking_uri=tracking_uri,
        tags={**_str_tags(tags), "task": task},
        alias=alias,
    )


def log_and_register_classifier(
    hf_dir: str,
    *,
    registered_model: str,
    run_id: str,
    tracking_uri: str,
    glue_task: str,
    text_columns: list[str],
    label_names: list[str],
    tags: dict[str, str],
    alias: str = "candidate",
    input_example: pd.DataFrame | None = None,
    max_length: int | None = None,
) -> RegisteredModel:
    """Log a fine-tuned GLUE model (`AutoModelForSequenceClassification` folder) as a `glue_pyfunc` LoggedModel
    in run `run_id`, register it, tag the version (task=text-classification, glue_task), set `alias`.

    `text_columns` are the task's GLUE column names, in model order (one, or two for a pair task);
    `label_names` the names by label id, [] for regression (STS-B). They become the model config and the
    signature, so serving needs nothing from this project. The model's number of outputs must match.
    `input_example` (a DataFrame with the text columns) is run once by MLflow before registering; without
    one, a sentence (or a paraphrase pair) is used. `max_length` is the length the model was fine-tuned and
    scored with: serving cuts inputs there too (None: the model's context). Like `log_and_register` otherwise.
    """
    from transformers import AutoConfig

    hf_path = _hf_folder(hf_dir)
    text_columns, label_names = [str(c) for c in text_columns], [str(n) for n in label_names]
    signature = classifier_signature(text_columns, label_names)  # validates both lists
    if not glue_task:
        raise ValueError("glue_task must name the GLUE task (e.g. 'sst2')")
    n_out = AutoConfig.from_pretrained(hf_path).num_labels
    if n_out != (len(label_names) or 1):
        raise ValueError(f"{hf_dir} has {n_out} output(s) but label_names is {label_names!r} ([] = 1, regression)")
    if input_example is None:
        input_example = default_classifier_example(text_columns)
    return _log_pyfunc_and_register(
        hf_path,
        python_model=glue_pyfunc.__file__,
        model_config={"glue_task": glue_task, "text_columns": text_columns, "label_names": label_names,
                      **({"max_length": int(max_length)} if max_length else {})},
        signature=signature,
        input_example=input_example,
        registered_model=registered_model,
        run_id=run_id,
        tracking_uri=tracking_uri,
        tags={**_str_tags(tags), "task": CLASSIFIER_TASK, "glue_task": glue_task},
        alias=alias,
    )


def _str_tags(tags: dict[str, str]) -> dict[str, str]:
    return {str(k): str(v) for k, v in tags.items()}


def _log_pyfunc_and_register(
    hf_path: Path,
    *,
    python_model: str,
    model_config: dict,
    signature: ModelSignature,
    input_example: pd.DataFrame,
    registered_model: str,
    run_id: str,
    tracking_uri: str,
    tags: dict[str, str],
    alias: str,
) -> RegisteredModel:
    """The shared body of both log_and_register*: LoggedModel (tagged `tags`) -> plain run artifacts ->
    registered version (tagged `tags` + model_id) -> alias."""
    client = _client(tracking_uri)
    run = client.get_run(run_id)

    # Create the LoggedModel ourselves so it lands in the run's experiment, whatever experiment the
    # process has active (Model.log would otherwise prefer mlflow.set_experiment / MLFLOW_EXPERIMENT_*).
    logged = client.create_logged_model(
        experiment_id=run.info.experiment_id,
        name=MODEL_NAME,
        source_run_id=run_id,
        tags=tags,
    )
    try:
        with _tracking(tracking_uri):
            info = Model.log(
                artifact_path=None,
                name=MODEL_NAME,
                flavor=mlflow.pyfunc,
                run_id=run_id,
                model_id=logged.model_id,
                python_model=python_model,  # models-from-code: nothing pickled
                artifacts={HF_ARTIFACT: str(hf_path.resolve())},
                model_config=model_config,
                signature=signature,
                input_example=input_example,
                pip_requirements=pip_requirements(),
            )
    except Exception:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)

    # The plain folder, for `transformers` users who never touch pyfunc.
    client.log_artifacts(run_id, str(hf_path), HF_ARTIFACT)

    with _tracking(tracking_uri):
        # lmpipe.source_dir: the folder the version came from, so `lmpipe gc` keeps it (tasks.common.retention)
        mv = mlflow.register_model(info.model_uri, registered_model, tags={
            **tags, "model_id": logged.model_id, "lmpipe.source_dir": str(hf_path.resolve())})
    client.set_registered_model_alias(registered_model, alias, mv.version)
    return RegisteredModel(
        name=registered_model,
        version=str(mv.version),
        alias=alias,
        uri=f"models:/{registered_model}@{alias}",
        model_uri=info.model_uri,
        run_id=run_id,
        model_id=logged.model_id,
    )


def promote(name: str, version: str, alias: str, tracking_uri: str) -> None:
    """Point `alias` (e.g. "champion") at `version` of registered model `name`; the alias leaves any other."""
    _client(tracking_uri).set_registered_model_alias(name, alias, str(version))


_MODELS_URI = re.compile(r"^models:/(?P<name>[^@/]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))?/?$")


def resolve_model_id(uri: str, tracking_uri: str) -> str:
    """The LoggedModel id behind models:/<name>@<alias>, models:/<name>/<version> or models:/m-<id>."""
    m = _MODELS_URI.match(uri)
    if not m:
        raise ValueError(f"expected models:/<name>@<alias>, models:/<name>/<version> or models:/m-<id>, got {uri!r}")
    client = _client(tracking_uri)
    if m["alias"]:
        mv = client.get_model_version_by_alias(m["name"], m["alias"])
    elif m["version"]:
        mv = client.get_model_version(m["name"], m["version"])
    else:
        return m["name"]  # models:/m-<id>
    # The sqlite registry leaves ModelVersion.model_id empty; the source is "models:/m-<id>".
    if mv.model_id:
        return mv.model_id
    source = _MODELS_URI.match(mv.source or "")
    if source and source["name"].startswith("m-") and not (source["alias"] or source["version"]):
        return source["name"]
    raise ValueError(f"{uri} (version {mv.version}, source {mv.source!r}) is not an MLflow 3 LoggedModel")


def download_hf_dir(uri: str, dst: str, tracking_uri: str) -> str:
    """Download the plain HF folder of a registered model; returns `<dst>/hf_model`.

    The folder is the pyfunc's "hf_model" artifact of that exact version (not the run's copy, which a
    later log in the same run could overwrite), so `AutoModel*.from_pretrained(path)` loads what is
    registered.
    """
    client = _client(tracking_uri)
    model = client.get_logged_model(resolve_model_id(uri, tracking_uri))
    root = model.artifact_location.rstrip("/")
    with tempfile.TemporaryDirectory() as tmp:
        mlmodel = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{root}/MLmodel", dst_path=tmp, tracking_uri=tracking_uri
        )
        conf = yaml.safe_load(Path(mlmodel).read_text())
    subpath = conf["flavors"]["python_function"]["artifacts"][HF_ARTIFACT]["path"]  # "artifacts/hf_model"
    Path(dst).mkdir(parents=True, exist_ok=True)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{root}/{subpath}", dst_path=dst, tracking_uri=tracking_uri
    )
    return str(Path(local))
