"""Test-wide settings: no network, Prefect and MLflow state in a temp folder, real-data paths."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Before anything imports prefect/datasets: no hub access, no state in the user's home.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
# Prefect's temporary server gets 30 s to start by default; on a busy 2-core runner a CLI run in a subprocess
# has missed that (RuntimeError: Timed out while attempting to connect to ephemeral Prefect API).
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
_STATE = Path(tempfile.mkdtemp(prefix="lmpipe-tests-"))
os.environ.setdefault("PREFECT_HOME", str(_STATE / "prefect"))
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("LMPIPE_STATE_DIR", str(_STATE / "lmpipe-state"))  # pipeline state, file fingerprints
os.environ.pop("LMPIPE_TASK_RUNNER", None)
os.environ.pop("PREFECT_API_URL", None)  # never the user's server: flow tests start their own
os.environ.pop("LMPIPE_WORKERS", None)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
SAMPLE_CORPUS = FIXTURES / "sample_corpus"
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def sample_corpus() -> Path:
    return SAMPLE_CORPUS


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data samples not found at {SHARED_DATA}")
    return SHARED_DATA
