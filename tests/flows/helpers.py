"""Spec writing and shard reading shared by the flow tests."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import REPO, SAMPLE_CORPUS


def sample_sources() -> list[dict[str, Any]]:
    """The bundled sample corpus as spec sources, with absolute paths."""
    return [
        {"kind": "wikipedia", "paths": [str(SAMPLE_CORPUS / "wiki" / "*.xml.bz2")]},
        {
            "kind": "common_crawl",
            "paths": [str(SAMPLE_CORPUS / "cc" / "*.warc.gz"), str(SAMPLE_CORPUS / "cc" / "*.warc.wet.gz")],
        },
        {"kind": "books", "paths": [str(SAMPLE_CORPUS / "books" / "*.txt")]},
    ]


def write_spec(path: Path, output: Path, sources: list[dict[str, Any]] | None = None, **extra: Any) -> Path:
    spec = {"name": "test-corpus", "sources": sources or sample_sources(), "output": str(output), **extra}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def shard_digests(output: Path) -> dict[str, str]:
    """sha256 of every shard file under output/data."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((output / "data").glob("*.parquet"))
    }


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def services_cmd(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """`python -m flows.services ARGS` from the repository root, output captured."""
    return subprocess.run([sys.executable, "-m", "flows.services", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
