"""Planning on Ray (issue 14, section 8): with the Ray task runner on a cluster, inputs are hashed by Ray tasks
in the workers, and the units, fingerprints and order are the ones serial planning gives."""

from __future__ import annotations

import hashlib
import os

import pytest

from data_specs import RunSpec
from data_specs.sources import BooksSource
from tasks.sources.core import plan_units
from tasks.sources.planning import RayMap, planner_map, serial_map

pytestmark = pytest.mark.usefixtures("ray_local")


def test_ray_planning_hashes_in_workers_with_serial_results(tmp_path, monkeypatch):
    monkeypatch.delenv("LMPIPE_TASK_RUNNER", raising=False)
    for i in range(20):
        (tmp_path / f"b{i:02d}.txt").write_bytes(f"book {i}\n".encode() * (500 + i))
    source = BooksSource(kind="books", paths=[str(tmp_path / "*.txt")])
    mapper = planner_map(RunSpec(task_runner="ray"))
    assert isinstance(mapper, RayMap)  # this process is connected to a Ray: hash there
    urls = [str(tmp_path / f"b{i:02d}.txt") for i in range(20)]
    ran = mapper(lambda url: (url, os.getpid()), urls)
    assert [url for url, _ in ran] == urls  # input order kept across tasks
    assert os.getpid() not in {pid for _, pid in ran}  # in Ray's workers, not on the driver
    units, problems = plan_units(source, 0, mapper)
    serial, _ = plan_units(source, 0, serial_map)
    assert not problems and units == serial
    assert [u.content for u in units] == [u.content for u in serial] == [
        "sha256:" + hashlib.sha256(open(url, "rb").read()).hexdigest() for url in urls]
