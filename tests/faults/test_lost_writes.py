"""Power loss, not only SIGKILL: the newest files are left under their final names with zero bytes.

SIGKILL keeps the page cache, so a killed run's files are whole; a power loss can lose the data of the
files renamed last while their names survive. These tests stop a run and then empty the newest files by hand,
as the lost page cache would have:
- died after global dedup: the newest unit summary and the newest unit Parquet file;
- after a complete run: `manifest.json`, the newest shard, the newest unit summary and unit Parquet file.
Must survive: the run. The rerun treats every empty file as missing (rebuilds the units, the shards and the
manifest) and exits 0. Output must equal: a clean run's — the same shard files byte for byte, the same counts
and shard list, no failed input.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from flows.curate import curate
from tasks.common.faults import InjectedFault
from tests.faults.test_curate_kill import SETTINGS
from tests.flows.helpers import shard_digests, write_spec


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("clean")
    return root / "out", curate(str(write_spec(root / "spec.yaml", root / "out", **SETTINGS)))


def _newest(paths) -> Path:
    return max(paths, key=lambda p: p.stat().st_mtime_ns)


def _lose(paths: list[Path]) -> None:
    """What a power loss after the rename leaves: the name, no data."""
    for p in paths:
        p.write_bytes(b"")


def _check_equals_clean(out: Path, clean) -> None:
    clean_out, clean_manifest = clean
    manifest = json.loads((out / "manifest.json").read_text())
    assert shard_digests(out) == shard_digests(clean_out)
    assert manifest["counts"] == clean_manifest["counts"] and manifest["counts"]["failed_inputs"] == 0
    assert manifest["shards"] == clean_manifest["shards"]
    assert not [p for p in (out / "_work" / "units").iterdir() if p.stat().st_size == 0]


def test_crashed_run_with_lost_unit_writes_resumes_to_identical_output(clean, tmp_path, monkeypatch, caplog):
    """The run dies after global dedup (an injected fault, in-process: the SIGKILL variant of the same moment is
    in test_curate_kill.py; what matters here is which files a power loss empties)."""
    out = tmp_path / "out"
    spec = str(write_spec(tmp_path / "spec.yaml", out, **SETTINGS))
    monkeypatch.setenv("LMPIPE_FAULTS", "curate.dedup_done=raise")
    monkeypatch.setenv("LMPIPE_FAULTS_DIR", str(tmp_path / "faults-fired"))
    with pytest.raises(InjectedFault):
        curate(spec)
    units = out / "_work" / "units"
    assert not (out / "manifest.json").exists() and list(units.glob("*.json"))
    _lose([_newest(units.glob("*.json")), _newest(units.glob("*.parquet"))])

    with caplog.at_level(logging.WARNING, logger="tasks.units.core"):
        curate(spec)  # the fault fired once: the rerun gets past it
    _check_equals_clean(out, clean)
    assert "is damaged" in caplog.text  # the rebuilt units are logged


def test_complete_run_with_lost_manifest_shard_and_units_rebuilds(clean, tmp_path):
    out = tmp_path / "out"
    spec = str(write_spec(tmp_path / "spec.yaml", out, **SETTINGS))
    curate(spec)
    units = out / "_work" / "units"
    _lose([out / "manifest.json", _newest((out / "data").glob("*.parquet")), _newest(units.glob("*.json")),
           _newest(units.glob("*.parquet"))])
    curate(spec)
    _check_equals_clean(out, clean)
