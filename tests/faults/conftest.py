"""The fault-injection suite: every test here carries the `faults` marker, and shares one Prefect server.

Tests that run the `lmpipe` CLI in a subprocess pass `prefect_env` to it, so the child talks to this
session's server instead of starting its own (about 10 s each).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL
from prefect.testing.utilities import prefect_test_harness

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):  # noqa: ANN001, ARG001
    for item in items:
        if Path(str(item.fspath)).resolve().parent == _HERE:
            item.add_marker(pytest.mark.faults)


@pytest.fixture(scope="session", autouse=True)
def prefect_server():
    """This session's Prefect server: tests/flows' one when it is already up (two nested harnesses confuse
    Prefect's event and API clients), else a new one."""
    if PREFECT_API_URL.value():
        yield PREFECT_API_URL.value()
        return
    with prefect_test_harness(server_startup_timeout=90):
        yield PREFECT_API_URL.value()


@pytest.fixture
def prefect_env(prefect_server, tmp_path) -> dict[str, str]:
    """Environment for a child `lmpipe` process: this session's Prefect server, faults remembered in tmp_path."""
    env = dict(os.environ)
    env["PREFECT_API_URL"] = prefect_server
    env["LMPIPE_FAULTS_DIR"] = str(tmp_path / "faults-fired")
    env.pop("LMPIPE_FAULTS", None)
    return env
