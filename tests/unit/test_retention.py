"""Retention (`lmpipe gc`, tasks/common/retention.py): ten nightly runs keep the disk within the rule.

Fake run folders in the layout the flows write (pretraining under `<tokens>/runs`, GLUE under
`$LMPIPE_STATE_DIR/glue/runs`: run folders with checkpoints and final_model, job folders with LATEST.json),
a real SQLite MLflow registry in tmp_path holding a version registered from night 2's pretraining run, a
running job, a locked one and leftover downloads. Checked: after each night's `lmpipe gc --keep 3` at most 3
finished runs of each kind remain besides the registered and protected ones; the exact kept set after ten
nights; --dry-run deletes nothing; deleting the version from the registry lets the next gc delete its run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from flows.cli import app
from tasks.common.lock import output_lock
from tasks.common.retention import RUN_NAME, Download, RunFolder, lock_is_live, plan_gc, plan_retention, scan_storage

KEEP = 3


def _files(folder: Path, names: dict[str, int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, size in names.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"\0" * size)


def _run_name(kind: str, night: int) -> str:
    fp = f"{night:08x}"
    return f"{kind}-{fp}-202612{night:02d}T020000-{night:04x}"


def pretrain_night(runs: Path, night: int, *, status: str = "finished") -> Path:
    """`<tokens>/runs/nightly-<fp>/LATEST.json` + `<tokens>/runs/<run name>/{checkpoint_*, final_model}`."""
    name = _run_name("nightly", night)
    run = runs / name
    _files(run, {"checkpoint_000000/model.pt": 4000, "checkpoint_000000/train_state.json": 20,
                 "checkpoint_000001/model.pt": 4000, "checkpoint_000001/train_state.json": 20})
    if status == "finished":
        _files(run / "final_model", {"config.json": 50, "model.safetensors": 2000, "tokenizer.json": 300})
    job = runs / f"nightly-{night:016x}"
    job.mkdir(parents=True, exist_ok=True)
    (job / "LATEST.json").write_text(json.dumps({"run_name": name, "status": status, "mlflow_run_id": "r"}))
    return run


def glue_night(storage: Path, night: int) -> Path:
    """`<state>/glue/runs/jobs/nightly-sst2/<fp>/{LATEST,result}.json` + `<state>/glue/runs/<run name>/`."""
    name = _run_name("sst2-s0", night)
    run = storage / name
    _files(run, {"checkpoint_000000/model.pt": 3000, "final_model/config.json": 50,
                 "final_model/model.safetensors": 1500})
    job = storage / "jobs" / f"nightly-v{night}-sst2" / f"{night:016x}"
    job.mkdir(parents=True, exist_ok=True)
    (job / "LATEST.json").write_text(json.dumps({"run_name": name, "status": "finished"}))
    (job / "result.json").write_text(json.dumps({"model_dir": str(run / "final_model"), "final_step": 4}))
    return run


@pytest.fixture()
def home(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("LMPIPE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("LMPIPE_USE_SERVICES", "0")
    return {"uri": uri, "runs": tmp_path / "tokens" / "runs", "glue": tmp_path / "state" / "glue" / "runs"}


def _gc(*args: str) -> str:
    result = CliRunner().invoke(app, ["gc", "--keep", str(KEEP), *args], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return result.output


def _run_folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if RUN_NAME.match(p.name))


def _finished(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if (p / "final_model" / "config.json").is_file())


def test_ten_nightly_runs_stay_within_the_rule(home):
    client = MlflowClient(home["uri"], registry_uri=home["uri"])
    client.create_registered_model("nightly")
    nights = {}
    for night in range(1, 11):
        nights[night] = pretrain_night(home["runs"], night)
        glue_night(home["glue"], night)
        if night == 2:  # the registered version (and champion) came from night 2's final model
            mv = client.create_model_version("nightly", source=str(nights[2] / "final_model"),
                                             tags={"lmpipe.source_dir": str(nights[2] / "final_model")})
            client.set_registered_model_alias("nightly", "champion", mv.version)
        out = _gc()  # the pretraining root is found through the registered version: no --root needed
        assert str(home["glue"]) in out and (str(home["runs"]) in out) == (night >= 2)
        pretrain_kept = [n for n in _finished(home["runs"]) if n != _run_name("nightly", 2)]
        assert len(pretrain_kept) <= KEEP and len(_finished(home["glue"])) <= KEEP
        if night >= 2:
            assert nights[2].is_dir()

    # Night 11 is running (killed: resumable), an abandoned unfinished run of night 0 lies around, night 5 is
    # gone already; a download left by a killed GLUE flow two days ago, and a fresh one of a running flow.
    running = pretrain_night(home["runs"], 11, status="running")
    abandoned = home["runs"] / _run_name("nightly", 0)
    _files(abandoned, {"checkpoint_000000/model.pt": 4000})
    old_dl, new_dl = home["glue"] / "model-abcd1234", home["glue"] / "model-efgh5678"
    _files(old_dl, {"hf_model/model.safetensors": 2000})
    _files(new_dl, {"hf_model/model.safetensors": 2000})
    two_days_ago = time.time() - 2 * 86400
    os.utime(old_dl, (two_days_ago, two_days_ago))

    with output_lock(str(nights[8])):  # a run holding night 8's folder: kept even once it is too old
        glue_night(home["glue"], 11)
        pretrain_night(home["runs"], 12)
        dry = _gc("--dry-run")
        assert "Would delete" in dry and abandoned.is_dir() and old_dl.is_dir()
        _gc()
        assert _run_folders(home["runs"]) == sorted(
            [nights[2].name, nights[8].name, nights[9].name, nights[10].name, running.name,
             _run_name("nightly", 12)])
    assert not abandoned.exists(), "an unfinished run no LATEST.json names running is garbage"
    assert not old_dl.exists() and new_dl.is_dir()
    assert _finished(home["glue"]) == [_run_name("sst2-s0", n) for n in (9, 10, 11)]
    # Each deleted run's job folder went with it: a later run of that job trains afresh.
    jobs = sorted(json.loads(p.read_text())["run_name"] for p in home["runs"].glob("*/LATEST.json"))
    assert jobs == sorted([nights[2].name, nights[8].name, nights[9].name, nights[10].name, running.name,
                           _run_name("nightly", 12)])
    assert sorted(p.parent.name for p in home["glue"].glob("jobs/*/*/LATEST.json")) == [
        f"{n:016x}" for n in (9, 10, 11)]

    # Unlocked now, and the version deleted from the registry: the next gc deletes both old runs.
    client.delete_model_version("nightly", mv.version)
    _gc()
    assert not nights[2].exists() and not nights[8].exists()
    assert _run_folders(home["runs"]) == sorted(
        [nights[9].name, nights[10].name, running.name, _run_name("nightly", 12)])


def _run(kind: str, night: int, status: str = "finished", **kw) -> RunFolder:
    return RunFolder(f"/s/{_run_name(kind, night)}", kind, f"202612{night:02d}T020000", status, **kw)


def test_plan_says_why_for_every_folder():
    runs = [_run("a", n) for n in range(1, 6)] + [_run("b", 1), _run("a", 6, "running"),
                                                   _run("a", 0, "unfinished"), _run("b", 2, "unfinished")]
    runs.append(_run("a", 7, locked=True))
    plan = {Path(d.path).name: d for d in plan_retention(
        runs, [Download("/s/model-aaaaaaaa", mtime=0.0)], keep=2, now=10 * 86400.0,
        registered={f"/s/{_run_name('a', 1)}/final_model": "m v1"},
        registered_runs={_run_name("a", 2): "m v2"})}
    assert plan[_run_name("a", 7)].reason.startswith("locked")
    assert plan[_run_name("a", 6)].reason.startswith("running")
    assert plan[_run_name("a", 1)].reason == "registered: m v1 came from it"
    assert plan[_run_name("a", 2)].reason == "registered: m v2 came from it"  # the run-name tag of older versions
    # Newest finished first: the locked night 7 counts among the 2 kept, so only night 5 joins it.
    assert [n for n in range(1, 8) if plan[_run_name("a", n)].action == "delete"] == [3, 4]
    assert plan[_run_name("a", 0)].action == "delete" and "superseded" in plan[_run_name("a", 0)].reason
    assert plan[_run_name("b", 2)].action == "keep"  # unfinished but the newest of b: maybe still to resume
    assert plan[_run_name("b", 1)].action == "keep"
    assert plan["model-aaaaaaaa"].action == "delete"
    assert all(d.reason for d in plan.values())
    with pytest.raises(ValueError, match="at least 1"):
        plan_retention(runs, keep=0)


def test_locks_are_read_not_taken(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    assert not lock_is_live(folder)
    with output_lock(str(folder)):
        assert lock_is_live(folder)
    assert not lock_is_live(folder)  # released: emptied by tasks.common.lock
    (folder / ".lmpipe.lock").write_text(json.dumps({"pid": 2**22 + 12345, "host": os.uname().nodename}))
    assert not lock_is_live(folder)  # a dead process on this host: a killed run
    (folder / ".lmpipe.lock").write_text(json.dumps({"pid": 1, "host": "another-host"}))
    assert lock_is_live(folder)  # someone else's machine on a shared mount: keep


def test_scan_reads_status_from_latest_json(tmp_path, monkeypatch):
    monkeypatch.setenv("LMPIPE_STATE_DIR", str(tmp_path / "state"))
    runs = tmp_path / "runs"
    pretrain_night(runs, 1)
    pretrain_night(runs, 2, status="running")
    found = {Path(r.path).name: r for r in scan_storage(runs)[0]}
    assert found[_run_name("nightly", 1)].status == "finished"
    assert found[_run_name("nightly", 2)].status == "running"
    assert found[_run_name("nightly", 1)].job_dirs == (str(runs / f"nightly-{1:016x}"),)
    assert found[_run_name("nightly", 1)].size_bytes == 2 * 4020 + 2350
    roots, plan = plan_gc(1, f"sqlite:///{tmp_path}/m.db", [str(runs)])
    assert str(runs) in roots and {d.action for d in plan} == {"keep"}


def test_models_published_from_a_storage_url_are_pruned_like_runs(home):
    """A pretraining run on an s3:// storage publishes its final model under `<state>/models/<run>/final_model`
    (`ray_entry.published_dir`); gc finds that root through the registered version and keeps the rule there."""
    from cluster.train.ray_entry import published_dir

    client = MlflowClient(home["uri"], registry_uri=home["uri"])
    client.create_registered_model("nightly-s3")
    published = {}
    for night in range(1, 7):
        name = _run_name("nightly-s3", night)
        published[night] = Path(published_dir("s3://bucket/runs", name))
        _files(published[night], {"config.json": 50, "model.safetensors": 2000})
    mv = client.create_model_version("nightly-s3", source=str(published[1]),
                                     tags={"lmpipe.source_dir": str(published[1])})
    assert published[1].parent.parent == home["glue"].parent.parent / "models"
    out = _gc()
    assert str(published[1].parent.parent) in out
    kept = _finished(published[1].parent.parent)
    assert kept == sorted(_run_name("nightly-s3", n) for n in (1, 4, 5, 6))  # the registered one + newest KEEP
    client.delete_model_version("nightly-s3", mv.version)
    _gc()  # the root is remembered: still cleaned without a registered version
    assert _finished(published[1].parent.parent) == sorted(_run_name("nightly-s3", n) for n in (4, 5, 6))
