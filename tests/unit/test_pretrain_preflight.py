"""Pretrain specs validate, and preflight stops impossible jobs before any work with a fix in the message."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from data_specs import SPECS_DIR, PretrainSpec, SpecError, load_pretrain_spec
from tasks.pretrain.core import PreflightError, check, new_run_name, preflight, read_job_state, write_job_state
from tasks.pretrain.core import JobState

BASE = {
    "name": "t",
    "data": {"curated": "/nowhere/curated", "tokens": "/nowhere/tokens"},
    "model": {"kind": "gpt", "preset": "tiny"},
    "packing": {"seq_len": 64},
    "train": {"micro_batch_size": 8, "max_steps": 10, "warmup_steps": 2},
    "scaling": {"num_workers": 2, "cpus_per_worker": 0.5},
    "mlflow": {"registered_model": "t"},
}
CURATED = {"shards": [{"path": "shard-00000-of-00001.parquet", "rows": 100, "text_bytes": 200_000}]}


def spec(**patch) -> PretrainSpec:
    raw = yaml.safe_load(yaml.safe_dump(BASE))
    for key, value in patch.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return PretrainSpec.model_validate(raw)


@pytest.mark.parametrize("path", sorted((SPECS_DIR / "pretrain").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_pretrain_specs_validate(path: Path):
    assert load_pretrain_spec(path).mlflow.registered_model


def test_spec_rejects_inconsistent_training_settings(tmp_path):
    raw = yaml.safe_load(yaml.safe_dump(BASE))
    raw["train"].update({"lr": 1e-4, "min_lr": 1e-3})
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match="min_lr"):
        load_pretrain_spec(tmp_path / "bad.yaml")


def test_a_good_job_passes():
    assert preflight(spec(), curated_manifest=CURATED, gpus_available=0, cpus_available=2) == []


def test_missing_curated_dataset_says_how_to_fix():
    problems = preflight(spec(), curated_manifest=None, gpus_available=0, cpus_available=2)
    assert len(problems) == 1 and "lmpipe curate" in problems[0]
    with pytest.raises(PreflightError, match="no curated dataset"):
        check(problems)


def test_more_gpus_than_exist():
    problems = preflight(spec(scaling={"use_gpu": True, "num_workers": 4}), curated_manifest=CURATED,
                         gpus_available=1, cpus_available=None)
    assert any("4 GPU worker(s) requested but 1" in p for p in problems)


def test_more_cpus_than_exist():
    problems = preflight(spec(scaling={"cpus_per_worker": 2}), curated_manifest=CURATED, gpus_available=0,
                         cpus_available=2)
    assert any("0.5 works on a 2-core machine" in p for p in problems)


def test_impossible_sequence_length_or_batch_before_tokenizing():
    tiny = {"shards": [{"path": "s", "rows": 1, "text_bytes": 1000}]}
    problems = preflight(spec(packing={"seq_len": 512}), curated_manifest=tiny, gpus_available=0, cpus_available=2)
    assert any("fewer than one global batch" in p for p in problems)


def test_batch_larger_than_the_token_shards():
    tokens = {"splits": {"train": {"sequences": 10}, "val": {"sequences": 1}}}
    problems = preflight(spec(), curated_manifest=CURATED, gpus_available=0, cpus_available=2, token_manifest=tokens)
    assert any("only 10 training sequences" in p for p in problems)
    assert any("validation sequences" in p for p in problems)


def test_heads_must_divide_width():
    problems = preflight(spec(model={"n_head": 5}),  # preset width 64
                         curated_manifest=CURATED, gpus_available=0, cpus_available=2)
    assert any("not divisible" in p for p in problems)


def test_run_names_are_unique_and_job_state_round_trips(tmp_path):
    assert new_run_name("t", "abcdef123456") != new_run_name("t", "abcdef123456")
    assert read_job_state(str(tmp_path)) is None
    write_job_state(str(tmp_path), JobState("t-1", "running", "r1"))
    assert read_job_state(str(tmp_path)) == JobState("t-1", "running", "r1")
