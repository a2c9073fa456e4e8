"""Training faults on a local 2-CPU Ray: a data-parallel worker dies mid-run, and an interrupted job is rerun
with another worker count. Tiny models, 10 steps, checkpoints every 4."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from cluster.train.loop import train
from cluster.train.model import build_model
from cluster.train.ray_entry import BatchTrace, run_pretraining
from cluster.train.token_stream import TokenStream
from data_specs.pretrain import ModelSpec, ScalingSpec, TrainSpec
from flows.cli import app
from flows.pretrain import pretrain
from tests.cluster.helpers import BERT_SPECIAL, SEQ_LEN, VOCAB, write_token_dir
from tests.unit._tokenize_helpers import make_docs, write_curated

pytestmark = [pytest.mark.ray]

TWO_WORKERS = ScalingSpec(num_workers=2, cpus_per_worker=0.5, max_failures=2)


@pytest.fixture(scope="module")
def ray_local():
    """A 2-CPU local Ray for this module (the one tests/cluster starts, if it is up already: left running)."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
                                           "RAY_USAGE_STATS_ENABLED": "0"}})
    yield ray
    if started:
        ray.shutdown()


def _read_trace(path: Path) -> tuple[list[list[tuple[int, int, str]]], list[dict]]:
    """One rank's trace → its sessions (a new one starts where the step goes back: a restart), each a list of
    (step, micro-batch index within the step, sha), and its per-step loss lines."""
    sessions: list[list[tuple[int, int, str]]] = []
    losses, last = [], None
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if "loss" in rec:
            losses.append(rec)
            continue
        if last is None or rec["step"] < last:
            sessions.append([])
        micro = sum(1 for s, _, _ in sessions[-1] if s == rec["step"])
        sessions[-1].append((rec["step"], micro, rec["sha"]))
        last = rec["step"]
    return sessions, losses


def _uninterrupted(tokens: Path, model_spec: ModelSpec, spec: TrainSpec, rank: int, world: int,
                   out: Path) -> dict[tuple[int, int], str]:
    """What rank `rank` of an uninterrupted `world`-worker run trains on, step by step: the same loop, stream,
    seeds and trace, run here without Ray. A rank's inputs (ids, masks) do not depend on the weights, so no DDP
    is needed to know them."""
    manifest = json.loads((tokens / "manifest.json").read_text())
    paths = [str(tokens / s["path"]) for s in manifest["splits"]["train"]["shards"]]
    torch.manual_seed(spec.seed)
    model = build_model(model_spec, VOCAB, SEQ_LEN, BERT_SPECIAL)
    val = [next(TokenStream(paths, spec.micro_batch_size, prefetch=0))]
    trace = BatchTrace(out)
    train(model, lambda k: TokenStream(paths, spec.micro_batch_size, rank=rank, world_size=world, start=k),
          lambda: iter(val), spec, "bert", BERT_SPECIAL, VOCAB, "cpu", on_batch=trace.batch, rank=rank,
          world_size=world)
    (sessions,), _ = _read_trace(out)
    return {(step, micro): sha for step, micro, sha in sessions}


def test_dead_worker_restarts_every_rank_where_it_stopped(ray_local, tmp_path):
    """Fault: rank 1 of 2 BERT workers (dropout on, so every RNG matters) kills its process at step 6; the last
    checkpoint is step 4. Must survive: the job, which restarts the worker group from the step-4 checkpoint
    inside the same call, each rank with its own RNG states and data position. Output must equal: every
    micro-batch each rank trained on (token ids after masking, labels), before and after the restart, is the one
    an uninterrupted run of that rank reads at that step; the losses of the re-done steps 5 and 6 equal those
    computed before the crash (weights, optimizer, data and RNG all restored)."""
    tokens = write_token_dir(tmp_path / "tokens", "bert", with_tokenizer=True)
    model_spec = ModelSpec(kind="bert", dropout=0.1)
    spec = TrainSpec(max_steps=10, micro_batch_size=8, grad_accum=2, lr=5e-3, min_lr=5e-4, warmup_steps=2,
                     eval_every=100, eval_batches=1, checkpoint_every=4)
    out = run_pretraining(tokens_dir=str(tokens), model=model_spec, train=spec, scaling=TWO_WORKERS,
                          run_name="bert-dies", storage_path=str(tmp_path / "runs"), fail_once_at_step=6,
                          trace_batches_to=str(tmp_path / "trace"))
    assert (tmp_path / "runs" / "bert-dies" / ".failed_once_at_6").exists()  # rank 1 did die
    assert out.restarted_from_step == 4 and out.resumed_from_step is None and out.final_step == 10
    final = max((d for d in (tmp_path / "runs" / "bert-dies").glob("checkpoint_*") if d.is_dir()),
                key=lambda d: json.loads((d / "train_state.json").read_text())["step"])
    assert {p.name for p in final.glob("rank_*.pt")} == {"rank_0.pt", "rank_1.pt"}  # both ranks' states merged

    for rank in (0, 1):
        sessions, losses = _read_trace(tmp_path / "trace" / f"rank_{rank}.jsonl")
        expected = _uninterrupted(tokens, model_spec, spec, rank, 2, tmp_path / f"reference_{rank}.jsonl")
        assert len(sessions) == 2, f"rank {rank}: one restart expected"
        before, after = sessions
        assert before[0][:2] == (1, 0) and max(s for s, _, _ in before) >= 6  # trained up to the crash
        assert after[0][:2] == (5, 0)  # picked up right after the step-4 checkpoint
        assert [(s, m) for s, m, _ in after] == [(s, m) for s in range(5, 11) for m in range(2)]
        for step, micro, sha in before + after:
            assert sha == expected[(step, micro)], f"rank {rank} step {step} micro-batch {micro} differs"
        by_step: dict[int, list[float]] = {}
        for rec in losses:
            by_step.setdefault(rec["step"], []).append(rec["loss"])
        for step in (5, 6):  # computed before the crash and again after the restart
            first, again = by_step[step]
            assert again == pytest.approx(first, rel=1e-6, abs=1e-7), (rank, step)


def _pretrain_spec(path: Path, root: Path, curated: Path, num_workers: int) -> Path:
    spec = {
        "name": "faults-gpt",
        "data": {"curated": str(curated), "tokens": str(root / "tokens")},
        "tokenizer": {"vocab_size": 256},
        "packing": {"seq_len": 32, "validation_fraction": 0.1},
        "model": {"kind": "gpt", "preset": "tiny"},
        "train": {"max_steps": 10, "micro_batch_size": 4, "grad_accum": 1, "lr": 0.003, "min_lr": 0.0003,
                  "warmup_steps": 2, "eval_every": 100, "eval_batches": 1, "checkpoint_every": 4},
        "scaling": {"num_workers": num_workers, "cpus_per_worker": 0.5, "max_failures": 0},
        "mlflow": {"tracking_uri": f"sqlite:///{root}/mlflow.db", "experiment": "faults",
                   "registered_model": "faults-gpt"},
    }
    path.write_text(yaml.safe_dump(spec))
    return path


def test_rerun_with_another_worker_count_is_refused(ray_local, tmp_path, monkeypatch):
    """Fault: `lmpipe pretrain` with 2 workers dies during training (a worker exits at step 6, no retries left),
    after its step-4 checkpoint; the spec is then edited to 1 worker and `lmpipe pretrain` rerun. Must survive:
    the unfinished job (still `running`, same run, its checkpoints untouched). Output must equal: exit code 2
    and a message with the fix (the worker count the job was written with, or `--new-run`), before any
    training starts."""
    curated = write_curated(tmp_path / "curated", [make_docs({"wikipedia": 40}), make_docs({"books": 40}, 40)])
    two = _pretrain_spec(tmp_path / "two.yaml", tmp_path, curated, num_workers=2)
    monkeypatch.setenv("LMPIPE_TEST_FAIL_AT_STEP", "6")
    with pytest.raises(Exception, match="(?i)fail"):
        pretrain(str(two))
    monkeypatch.delenv("LMPIPE_TEST_FAIL_AT_STEP")
    (latest,) = (tmp_path / "tokens" / "runs").glob("*/LATEST.json")  # the job's record: its run, unfinished
    state = json.loads(latest.read_text())
    assert state["status"] == "running"
    run_dir = latest.parent.parent / state["run_name"]
    checkpoints = sorted(p.name for p in run_dir.glob("checkpoint_*"))
    assert checkpoints

    one = _pretrain_spec(tmp_path / "one.yaml", tmp_path, curated, num_workers=1)
    result = CliRunner().invoke(app, ["pretrain", str(one)])
    text = " ".join(result.output.split())  # the console wraps long lines
    assert result.exit_code == 2, result.output
    assert "written by 2 worker(s)" in text and "step-4 checkpoint" in text, text
    assert "set scaling.num_workers: 2 to resume, or rerun with --new-run to start a new job" in text, text
    assert json.loads(latest.read_text()) == state  # the job is kept for the fixed rerun
    assert sorted(p.name for p in run_dir.glob("checkpoint_*")) == checkpoints


def _checkpoint(run: Path, name: str, step: int, meta: dict, ranks: range) -> Path:
    d = run / name
    d.mkdir(parents=True)
    (d / "train_state.json").write_text(json.dumps({"step": step}))
    (d / "checkpoint.pt").write_bytes(b"weights")
    (d / "run_meta.json").write_text(json.dumps(meta))
    for r in ranks:
        (d / f"rank_{r}.pt").write_bytes(b"rng")
    return d


def test_checkpoint_missing_a_ranks_state_is_not_resumed_from(tmp_path):
    """Fault: the job dies after rank 0 uploaded its step-8 checkpoint files but before rank 1 uploaded its
    `rank_1.pt`. Must survive: the step-4 checkpoint, complete for both ranks. Output must equal: the newest
    complete checkpoint is step 4 (a resume never restores rank 1 from rank 0's state), and a rerun with
    another layout is refused from it with the fix."""
    from cluster.train.ray_entry import check_resume, latest_checkpoint_on_disk
    from tasks.pretrain.core import ResumeMismatchError

    layout = {"invocation": "x", "resumed_from_step": None, "world_size": 2, "micro_batch_size": 8, "grad_accum": 2}
    complete = _checkpoint(tmp_path, "checkpoint_a", 4, layout, range(2))
    _checkpoint(tmp_path, "checkpoint_b", 8, layout, range(1))  # rank 1's upload never happened
    assert latest_checkpoint_on_disk(tmp_path) == complete
    spec = TrainSpec(micro_batch_size=8, grad_accum=2)
    check_resume(tmp_path, 2, spec)  # the same layout resumes
    with pytest.raises(ResumeMismatchError, match=r"step-4 checkpoint.*set train\.grad_accum: 2 to resume"):
        check_resume(tmp_path, 2, TrainSpec(micro_batch_size=8, grad_accum=1))
    legacy = tmp_path / "legacy"  # written before the layout was recorded: nothing to compare, resumed as before
    _checkpoint(legacy, "checkpoint_c", 4, {"invocation": "x", "resumed_from_step": None}, range(0))
    check_resume(legacy, 1, spec)
