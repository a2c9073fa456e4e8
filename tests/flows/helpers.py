"""Spec writing and shard reading shared by the flow tests."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import SAMPLE_CORPUS


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
