"""A pretraining job resumes only on the token shards it was trained on.

Fault: between two runs of an unfinished job, the token shards are rebuilt (a curate rerun changed the corpus,
so tokenize rewrote them under the same folder). Each rank's checkpointed position counts micro-batches into
the old shards; resumed on the new ones it silently skips and repeats data. Must hold: the resume is refused
before Ray starts, naming the fix (`--new-run`, or restore the old data); the same shards resume as before, and
checkpoints written before the hash was recorded are resumed as before.
"""

from __future__ import annotations

import json

import pytest

from cluster.train.ray_entry import check_resume
from data_specs.pretrain import TrainSpec
from tasks.pretrain.core import ResumeMismatchError

OLD, NEW = "a" * 64, "b" * 64


def _checkpoint(run, meta):
    d = run / "checkpoint_2026-01-01_00-00-01"
    d.mkdir(parents=True)
    (d / "train_state.json").write_text(json.dumps({"step": 6}))
    (d / "checkpoint.pt").write_bytes(b"w")
    (d / "run_meta.json").write_text(json.dumps(meta))
    (d / "rank_0.pt").write_bytes(b"r")
    return d


def test_resume_on_rebuilt_token_shards_is_refused_with_the_fix(tmp_path):
    layout = {"invocation": "x", "resumed_from_step": None, "world_size": 1, "micro_batch_size": 8, "grad_accum": 1}
    spec = TrainSpec(micro_batch_size=8, grad_accum=1)
    _checkpoint(tmp_path / "job", {**layout, "tokens_sha256": OLD})
    check_resume(tmp_path / "job", 1, spec, tokens_sha256=OLD)  # the same shards: resumed
    with pytest.raises(ResumeMismatchError, match=r"step-6 checkpoint.*token shards were rebuilt.*--new-run"):
        check_resume(tmp_path / "job", 1, spec, tokens_sha256=NEW)
    _checkpoint(tmp_path / "legacy", layout)  # written before the hash was recorded: resumed as before
    check_resume(tmp_path / "legacy", 1, spec, tokens_sha256=NEW)
