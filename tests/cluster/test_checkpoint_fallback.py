"""A checkpoint Ray wrote but never entered in its run snapshot is still found on disk for resume."""

from __future__ import annotations

import json

from cluster.train.loop import CHECKPOINT_FILE, STATE_FILE
from cluster.train.ray_entry import latest_checkpoint_on_disk


def _checkpoint(run, name, step, complete=True):
    d = run / name
    d.mkdir(parents=True)
    (d / STATE_FILE).write_text(json.dumps({"step": step}))
    (d / CHECKPOINT_FILE).write_bytes(b"weights")
    if complete:
        (d / "run_meta.json").write_text("{}")
    return d


def test_highest_complete_step_wins(tmp_path):
    assert latest_checkpoint_on_disk(tmp_path) is None
    _checkpoint(tmp_path, "checkpoint_2026-01-01_00-00-02", 6)
    best = _checkpoint(tmp_path, "checkpoint_2026-01-01_00-00-01", 12)  # names need not sort by step
    _checkpoint(tmp_path, "checkpoint_2026-01-01_00-00-03", 18, complete=False)  # upload cut short
    (tmp_path / "checkpoint_broken").mkdir()
    assert latest_checkpoint_on_disk(tmp_path) == best


# ---- power loss: a real checkpoint cut short under its final name -------------------------------------------------


def _real_checkpoint(run, name, step, world=1, marker=True):
    """A checkpoint as the pretraining worker writes it: torch.save'd weights and optimizer, state, run metadata,
    one rank file per rank, and (unless `marker=False`, as before markers existed) each rank's completion marker."""
    import torch

    from cluster.train.checkpoints import write_completion_marker
    from cluster.train.loop import save_checkpoint

    d = run / name
    model = torch.nn.Linear(64, 64)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 64)).sum().backward()
    optimizer.step()
    state = {"step": step, "batches_consumed": 2 * step}
    save_checkpoint(d, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "train_state": state})
    (d / "run_meta.json").write_text(json.dumps({"invocation": "x", "resumed_from_step": None, "world_size": world}))
    for r in range(world):
        torch.save({"rng": torch.get_rng_state(), "train_state": state}, d / f"rank_{r}.pt")
    if marker:
        for r in range(world):
            write_completion_marker(d, r, step, world)
    return d


def _truncate(path, keep=0):
    data = path.read_bytes()
    path.write_bytes(data[:keep])


def test_truncated_newest_checkpoint_is_not_resumed_from(tmp_path):
    """Fault: a power loss after the step-8 checkpoint was renamed into place but before its data reached the disk:
    `checkpoint.pt` is there with 0 bytes (or half its bytes). Must survive: the step-4 checkpoint. Output: the
    newest complete checkpoint is step 4 (today: step 8, whose load fails on every restart)."""
    older = _real_checkpoint(tmp_path, "checkpoint_a", 4, world=2)
    newest = _real_checkpoint(tmp_path, "checkpoint_b", 8, world=2)
    assert latest_checkpoint_on_disk(tmp_path) == newest
    full = (newest / CHECKPOINT_FILE).stat().st_size
    _truncate(newest / CHECKPOINT_FILE, full // 2)
    assert latest_checkpoint_on_disk(tmp_path) == older
    _truncate(newest / CHECKPOINT_FILE)
    assert latest_checkpoint_on_disk(tmp_path) == older
    _truncate(older / "rank_1.pt")  # rank 1's part of the older one lost too: nothing to resume from
    assert latest_checkpoint_on_disk(tmp_path) is None


def test_unloadable_checkpoint_falls_back_to_the_previous_one(tmp_path):
    """Fault: the newest checkpoint passes the file checks (a folder written before completion markers existed,
    or same-size garbled bytes) but `torch.load` fails. Must survive: the job. Output: the worker's resume walks
    to the previous checkpoint and loads its real weights and position; no loadable checkpoint → a fresh start."""
    from cluster.train.checkpoints import first_loadable
    from cluster.train.ray_entry import _load_resume, _resume_candidates

    _real_checkpoint(tmp_path, "checkpoint_a", 4, marker=False)
    legacy = _real_checkpoint(tmp_path, "checkpoint_b", 8, marker=False)
    _truncate(legacy / CHECKPOINT_FILE, 100)  # no marker: the old rule (files exist) calls it complete
    garbled = _real_checkpoint(tmp_path, "checkpoint_c", 12)
    size = (garbled / CHECKPOINT_FILE).stat().st_size
    (garbled / CHECKPOINT_FILE).write_bytes(b"\0" * size)  # sizes match the marker; the bytes do not load
    with _resume_candidates(None, tmp_path) as candidates:
        assert [c.name for c in candidates] == ["checkpoint_c", "checkpoint_b", "checkpoint_a"]
        found = first_loadable(candidates, _load_resume(0))
    assert found is not None and found[0].name == "checkpoint_a"
    resume, meta = found[1]
    assert resume["train_state"] == {"step": 4, "batches_consumed": 8} and meta["world_size"] == 1
    assert set(resume["model"]) == {"weight", "bias"}
    _truncate(tmp_path / "checkpoint_a" / CHECKPOINT_FILE)
    with _resume_candidates(None, tmp_path) as candidates:
        assert first_loadable(candidates, _load_resume(0)) is None


def test_all_ranks_resume_from_the_same_checkpoint(tmp_path):
    """One rank fails to load its part: every rank moves to the previous checkpoint together (`agree`)."""
    from cluster.train.checkpoints import first_loadable

    calls = []

    def load(d):
        calls.append(d.name)
        return d.name

    votes = iter([False, True])  # the other rank could not load the newest
    found = first_loadable([tmp_path / "checkpoint_b", tmp_path / "checkpoint_a"], load, lambda ok: next(votes))
    assert found == (tmp_path / "checkpoint_a", "checkpoint_a") and calls == ["checkpoint_b", "checkpoint_a"]
