"""lmpipe specs: strict pydantic models loaded from the YAML files in this folder.

`load_curate_spec(path)` validates a curate spec; `fingerprint(model)` hashes a validated spec (or
any section of one) into the short id that names outputs, cache keys and run tags.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from data_specs.clean import CleanSpec, FilterSetSpec, LanguageSpec, PIISpec
from data_specs.curate import CurateSpec, DataCardSpec, RunSpec, ShardSpec
from data_specs.dedup import DedupSpec, ExactDedupSpec, MinHashSpec
from data_specs.pretrain import (
    DataSpec,
    MLflowSpec,
    ModelSpec,
    PackingSpec,
    PretrainSpec,
    ScalingSpec,
    TokenizerSpec,
    TrainSpec,
)
from data_specs.sources import BooksSource, CommonCrawlSource, HFDatasetSource, SourceSpec, WikipediaSource

SPECS_DIR = Path(__file__).resolve().parent

M = TypeVar("M", bound=BaseModel)


class SpecError(ValueError):
    """A spec file that cannot be read or does not validate; the message says what to fix."""


def load_spec(path: str | Path, model: type[M]) -> M:
    """Read a YAML spec and validate it against `model`, with errors that name the file and field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SpecError(f"spec file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{path}: invalid {model.__name__}:"]
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {where}: {err['msg']}")
        raise SpecError("\n".join(lines)) from exc


def load_curate_spec(path: str | Path) -> CurateSpec:
    """Load and validate a curate spec."""
    return load_spec(path, CurateSpec)


def load_pretrain_spec(path: str | Path) -> PretrainSpec:
    """Load and validate a pretrain spec."""
    return load_spec(path, PretrainSpec)


def canonical_json(value: Any) -> str:
    """Stable JSON text of a spec (or plain value): sorted keys, no whitespace."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint(value: Any, length: int = 12) -> str:
    """Short sha256 of the canonical JSON of a validated spec or section."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()[:length]


def curate_fingerprint(spec: CurateSpec) -> str:
    """Fingerprint of what a curate run produces: the spec minus execution-only settings (run, output)."""
    return fingerprint(spec.model_dump(mode="json", exclude={"run", "output"}))


__all__ = [
    "SPECS_DIR",
    "DataSpec",
    "MLflowSpec",
    "ModelSpec",
    "PackingSpec",
    "PretrainSpec",
    "ScalingSpec",
    "TokenizerSpec",
    "TrainSpec",
    "load_pretrain_spec",
    "BooksSource",
    "CleanSpec",
    "CommonCrawlSource",
    "CurateSpec",
    "DataCardSpec",
    "DedupSpec",
    "ExactDedupSpec",
    "FilterSetSpec",
    "HFDatasetSource",
    "LanguageSpec",
    "MinHashSpec",
    "PIISpec",
    "RunSpec",
    "ShardSpec",
    "SourceSpec",
    "SpecError",
    "WikipediaSource",
    "canonical_json",
    "curate_fingerprint",
    "fingerprint",
    "load_curate_spec",
    "load_spec",
]
