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
