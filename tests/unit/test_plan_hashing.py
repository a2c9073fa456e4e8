"""Planning hashes its inputs in parallel (issue 14, section 8): same fingerprints and order as one at a time.

Before: `with_content` hashed every local input one after the other on the driver (about 3 h for 10 TB on a
first run). The concurrency proof: a fake hash that waits until 4 hashes run at once only returns when
they really do; hashed one at a time, it times out and the unit gets no fingerprint.
"""

from __future__ import annotations

import hashlib
import threading

import pytest

import tasks.common.io as io_module
from data_specs import RunSpec
from data_specs.sources import BooksSource
from tasks.sources.core import plan_units
from tasks.sources.task import plan_work_units


@pytest.fixture
def books(tmp_path, monkeypatch):
    monkeypatch.setenv("LMPIPE_STATE_DIR", str(tmp_path / "state"))  # no remembered fingerprints
    for i in range(12):
        (tmp_path / f"b{i:02d}.txt").write_bytes(f"book {i}\n".encode() * (1000 + i))
    return BooksSource(kind="books", paths=[str(tmp_path / "*.txt")])


def _serial_units(source):
    from tasks.sources.planning import serial_map

    return plan_units(source, 0, serial_map)[0]


def test_parallel_planning_gives_the_serial_fingerprints(books, tmp_path):
    units, problems = plan_units(books, 0)  # the default: a thread pool
    assert not problems and [u.label for u in units] == [f"b{i:02d}.txt" for i in range(12)]
    assert [u.content for u in units] == [
        "sha256:" + hashlib.sha256((tmp_path / u.label).read_bytes()).hexdigest() for u in units]
    serial = _serial_units(books)
    assert units == serial and [u.content for u in units] == [u.content for u in serial]


def test_inputs_are_hashed_concurrently(books, monkeypatch):
    together = threading.Barrier(4, timeout=10)
    real = io_module.content_fingerprint

    def needs_company(url, *args, **kwargs):
        together.wait()  # returns only when 4 hashes are running at the same time
        return real(url, *args, **kwargs)

    monkeypatch.setattr(io_module, "content_fingerprint", needs_company)
    units, _ = plan_units(books, 0)
    assert all(u.content and u.content.startswith("sha256:") for u in units)


def test_a_file_that_cannot_be_hashed_fails_alone(books, tmp_path, monkeypatch):
    real = io_module.content_fingerprint

    def flaky(url, *args, **kwargs):
        if str(url).endswith("b03.txt"):
            raise PermissionError(13, "denied")
        return real(url, *args, **kwargs)

    monkeypatch.setattr(io_module, "content_fingerprint", flaky)
    units, _ = plan_units(books, 0)
    assert [u.label for u in units if u.content is None] == ["b03.txt"]  # its unit hashes it and fails later


def test_planner_map_follows_the_run(monkeypatch):
    from tasks.sources import planning
    from tasks.sources.planning import RayMap, ThreadMap, default_workers, planner_map

    # not connected to a Ray (an earlier test in the same pytest process may have left one running)
    monkeypatch.setattr(planning, "_ray_connected", lambda: False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("LMPIPE_TASK_RUNNER", raising=False)
    assert planner_map(RunSpec(workers=64)) == ThreadMap(max(64, default_workers()))
    assert isinstance(planner_map(RunSpec(task_runner="ray")), ThreadMap)  # a local Ray: this machine's cores
    assert planner_map(RunSpec(task_runner="ray", ray_address="ray://head:10001")) == RayMap(
        RunSpec(task_runner="ray", ray_address="ray://head:10001"))
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    assert isinstance(planner_map(RunSpec(task_runner="ray")), RayMap)
    assert isinstance(planner_map(RunSpec(task_runner="threads")), ThreadMap)


def test_plan_work_units_task_uses_the_run(books):
    units, problems = plan_work_units.fn([books], RunSpec(workers=3))
    assert not problems and [u for _, u in units] == _serial_units(books)
