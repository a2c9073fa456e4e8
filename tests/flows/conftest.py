"""One Prefect test harness (a real temporary Prefect server) for every flow test in the session."""

from __future__ import annotations

import pytest
from prefect.settings import PREFECT_API_URL
from prefect.testing.utilities import prefect_test_harness


@pytest.fixture(scope="session", autouse=True)
def prefect_server():
    """tests/faults' server when it is already up (two nested harnesses confuse Prefect's clients), else a new one."""
    if PREFECT_API_URL.value():
        yield
        return
    with prefect_test_harness(server_startup_timeout=90):
        yield
