"""SIGKILL of a whole `lmpipe curate` process group at three moments, then a plain rerun.

Fault: `LMPIPE_FAULTS=<point>=killpg` kills the CLI and every process in its group (as a machine
losing power would) after some unit summaries are written, after global dedup, or after the first
shard file is written.
What must survive: every unit whose summary was written (the rerun reuses it: same file, same
mtime, logged as cached), and no lock (the kernel drops the killed run's flock, so the rerun is not
refused).
What the output must equal: a clean run's — the same shard files byte for byte (sha256), the same
manifest counts and shard list, no failed input, exit code 0, and no temporary file left.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from flows.curate import curate
from tests.conftest import REPO
from tests.flows.helpers import shard_digests, write_spec

LMPIPE = str(Path(sys.executable).parent / "lmpipe")
SETTINGS = {"shards": {"target_mb": 0.03}, "run": {"workers": 1, "retries": 0}}


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Path, dict]:
    """One uninterrupted run of the sample corpus (in-process flow), shared by every kill point."""
    root = tmp_path_factory.mktemp("clean")
    manifest = curate(str(write_spec(root / "spec.yaml", root / "out", **SETTINGS)))
    assert len(manifest["shards"]) >= 2, "the kill-after-first-shard case needs several shards"
    return root / "out", manifest


def _curate_cli(spec: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`lmpipe curate SPEC` in a session (process group) of its own, so `killpg` spares pytest."""
    return subprocess.run([LMPIPE, "curate", str(spec)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, start_new_session=True)


def _units(out: Path) -> dict[Path, tuple[int, str]]:
    """Each unit summary on disk: (mtime_ns, unit label)."""
    summaries = (out / "_work" / "units").glob("*.json")
    return {p: (p.stat().st_mtime_ns, json.loads(p.read_text())["label"]) for p in summaries}


@pytest.mark.parametrize(
    "point",
    ["curate.unit_written@sample.warc.wet.gz", "curate.dedup_done", "curate.shard_written"],
    ids=["during-units", "after-dedup", "after-first-shard"],
)
def test_killed_run_resumes_to_identical_output(clean, point, tmp_path, prefect_env):
    clean_out, clean_manifest = clean
    spec = write_spec(tmp_path / "spec.yaml", tmp_path / "out", **SETTINGS)
    env = {**prefect_env, "LMPIPE_FAULTS": f"{point}=killpg"}

    killed = _curate_cli(spec, env)
    assert killed.returncode == -signal.SIGKILL, killed.stdout[-2000:] + killed.stderr[-3000:]
    assert os.listdir(prefect_env["LMPIPE_FAULTS_DIR"]), "the fault never fired"
    assert not (tmp_path / "out" / "manifest.json").exists()
    survivors = _units(tmp_path / "out")
    assert survivors, "the kill came before any unit summary was written"
    if point.startswith("curate.unit_written"):
        assert len(survivors) < len(clean_manifest["inputs"])  # killed with units still to do

    # The rerun keeps LMPIPE_FAULTS: the fault fires once per run family, so it gets past the point.
    rerun = _curate_cli(spec, {**env, "PREFECT_LOGGING_LEVEL": "INFO"})
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-3000:]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert shard_digests(tmp_path / "out") == shard_digests(clean_out)
    assert manifest["counts"] == clean_manifest["counts"] and manifest["counts"]["failed_inputs"] == 0
    assert manifest["shards"] == clean_manifest["shards"]
    after = _units(tmp_path / "out")
    assert {p: after[p] for p in survivors} == survivors  # no finished unit was redone
    logs = rerun.stdout + rerun.stderr
    for _, label in survivors.values():
        assert re.search(rf"{re.escape(label)}: \d+ in, \d+ kept \(cached\)", logs), f"{label} not reported cached"
    assert not list((tmp_path / "out").rglob("*.tmp-*")), "temporary files of the killed run were left behind"
