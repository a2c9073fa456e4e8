"""Every lmpipe writer makes its rename durable: fsync the file, rename it, fsync its folder.

Fault modelled: a power loss right after a rename. Without the first fsync the new name can point at a file
whose data never reached the disk (zero bytes under the final name); without the last, the rename itself can
be lost. The test records every `os.fsync`, `os.replace` and `os.rename` and checks, for each writer's final
file, the order file-fsync < rename < folder-fsync.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pytest


@pytest.fixture
def calls(monkeypatch):
    """(op, path, ...) for every fsync (the path behind the descriptor) and rename, in order."""
    log: list[tuple] = []
    real_fsync, real_replace, real_rename = os.fsync, os.replace, os.rename

    def fsync(fd):
        log.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst, *a, **k):
        log.append(("rename", os.path.abspath(src), os.path.abspath(dst)))
        return real_replace(src, dst, *a, **k)

    def rename(src, dst, *a, **k):
        log.append(("rename", os.path.abspath(src), os.path.abspath(dst)))
        return real_rename(src, dst, *a, **k)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "rename", rename)
    return log


def assert_durable(log: list[tuple], final: Path) -> None:
    """The rename onto `final` comes after an fsync of its source and before an fsync of its folder."""
    final = Path(os.path.abspath(final))
    renames = [i for i, c in enumerate(log) if c[0] == "rename" and c[2] == str(final)]
    assert renames, f"no rename onto {final}: {log}"
    i = renames[-1]
    src = log[i][1]
    assert ("fsync", src) in log[:i], f"{src} renamed onto {final} without fsync first: {log}"
    assert ("fsync", str(final.parent)) in log[i + 1 :], f"folder {final.parent} not fsynced after the rename"
    assert final.is_file() or final.is_dir()


def test_parquet_and_small_file_writers(tmp_path, calls):
    from tasks.shards.core import AtomicParquetWriter, write_bytes_atomic

    schema = pa.schema([pa.field("x", pa.int64())])
    writer = AtomicParquetWriter(str(tmp_path / "units" / "u.parquet"), schema)
    writer.write(pa.table({"x": [1, 2, 3]}), 1024)
    writer.commit()
    assert_durable(calls, tmp_path / "units" / "u.parquet")
    write_bytes_atomic(str(tmp_path / "units" / "u.json"), b"{}")
    assert_durable(calls, tmp_path / "units" / "u.json")


def test_text_writer_and_manifests(tmp_path, calls):
    from tasks.glue.evaluation import write_metrics_json
    from tasks.common.io import write_text_atomically
    from tasks.pipeline.core import RUN_FILE, _write

    write_text_atomically(tmp_path / "fp" / "a.json", "{}")
    assert_durable(calls, tmp_path / "fp" / "a.json")
    _write(tmp_path / "run", {"status": "running"})
    assert_durable(calls, tmp_path / "run" / RUN_FILE)
    write_metrics_json({"model": "m", "glue_score": 1.0, "tasks": {}}, str(tmp_path / "glue" / "metrics.json"))
    assert_durable(calls, tmp_path / "glue" / "metrics.json")
    assert json.loads((tmp_path / "glue" / "metrics.json").read_text())["model"] == "m"


def test_checkpoint_and_published_model(tmp_path, calls):
    import torch

    from cluster.train.checkpoints import marker_name, write_completion_marker
    from cluster.train.loop import CHECKPOINT_FILE, STATE_FILE, save_checkpoint
    from cluster.train.ray_entry import _publish_model

    save_checkpoint(tmp_path / "ckpt", {"model": {"w": torch.ones(2)}, "train_state": {"step": 3}})
    assert_durable(calls, tmp_path / "ckpt" / CHECKPOINT_FILE)
    assert_durable(calls, tmp_path / "ckpt" / STATE_FILE)
    write_completion_marker(tmp_path / "ckpt", 0, 3, 1)
    assert_durable(calls, tmp_path / "ckpt" / marker_name(0))

    hf = tmp_path / "hf"
    (hf / "sub").mkdir(parents=True)
    (hf / "config.json").write_text("{}")
    (hf / "sub" / "weights.bin").write_bytes(b"w" * 10)
    _publish_model(hf, tmp_path / "final_model", None)
    assert_durable(calls, tmp_path / "final_model")
    i = max(i for i, c in enumerate(calls) if c[0] == "rename" and c[2] == str(tmp_path / "final_model"))
    synced = {c[1] for c in calls[:i] if c[0] == "fsync"}
    src = calls[i][1]
    assert {f"{src}/config.json", f"{src}/sub/weights.bin", f"{src}/sub", src} <= synced


def test_remote_stores_are_plain_moves(calls):
    """Remote fsspec stores have no page cache to lose: no fsync, a plain move."""
    import fsspec

    from tasks.common import durable

    fs = fsspec.filesystem("memory")
    fs.pipe("/d/x.tmp", b"1")
    durable.replace_durably("/d/x.tmp", "/d/x", fs)
    assert fs.cat("/d/x") == b"1" and not any(c[0] == "fsync" for c in calls)
