"""Unit identity without re-reading (issue 9): a file split into many units is hashed once per run, and
not at all on a rerun while its path, inode, size and mtime are unchanged.

Fault: a dump in N byte-range units was hashed N times per run, and again on every fully cached rerun.
What must survive: the unit fingerprints (they key the unit cache), which must equal the strings earlier
versions produced, so existing caches stay valid. Output must equal: `sha256:<hex of the file>[<a>:<b>]`
per unit, with `content_fingerprint` called once per run for the file, zero times on an unchanged rerun,
and once again after the mtime or the content changes.

A "run" here is what the curate flow does for identity: plan in the parent, ship the units to workers
(pickled), and take each unit's `unit_content_fingerprint` there.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
from pathlib import Path

import pytest

import tasks.common.io as io_module
import tasks.sources.core as core_module
from data_specs.sources import WikipediaSource
from tasks.sources.core import plan_units, unit_content_fingerprint

DUMP = Path(__file__).resolve().parents[1] / "fixtures" / "sample_corpus" / "wiki" / "sample-pages-articles.xml.bz2"
PAST_NS = 1_600_000_000 * 10**9  # an mtime well before any hashing: not "racy"


@pytest.fixture
def hashed(monkeypatch, tmp_path) -> list[str]:
    """Names of the files `content_fingerprint` reads, in order; the fingerprint cache lives in tmp_path."""
    monkeypatch.setenv("LMPIPE_STATE_DIR", str(tmp_path / "state"))
    calls: list[str] = []
    real = io_module.content_fingerprint

    def counting(url, *args, **kwargs):
        calls.append(os.path.basename(str(url)))
        return real(url, *args, **kwargs)

    monkeypatch.setattr(io_module, "content_fingerprint", counting)
    # Older code imported the name into tasks.sources.core; count those calls as well.
    monkeypatch.setattr(core_module, "content_fingerprint", counting, raising=False)
    return calls


def run(source: WikipediaSource) -> list[str]:
    """Plan, ship each unit to a 'worker' (a pickle round trip) and fingerprint it there."""
    units, problems = plan_units(source, 0)
    assert not problems and len(units) > 1
    return [unit_content_fingerprint(source, pickle.loads(pickle.dumps(u))) for u in units]


def expected(path: Path, source: WikipediaSource) -> list[str]:
    """The fingerprints earlier versions gave: the file's sha256 plus each unit's byte range."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    size = path.stat().st_size
    return [f"sha256:{digest}[{a}:{min(a + source.split_bytes, size)}]" for a in range(0, size, source.split_bytes)]


def test_split_file_is_hashed_once_per_run_and_not_on_unchanged_rerun(tmp_path, hashed):
    path = tmp_path / DUMP.name
    shutil.copy(DUMP, path)
    os.utime(path, ns=(PAST_NS, PAST_NS))
    source = WikipediaSource(kind="wikipedia", paths=[str(path)], split_bytes=2048)

    first = run(source)
    assert first == expected(path, source) and len(first) == 4
    assert hashed == [path.name]  # once for all 4 units (before: once per unit)

    hashed.clear()
    assert run(source) == first
    assert hashed == []  # unchanged (path, inode, size, mtime): nothing read

    os.utime(path, ns=(PAST_NS + 10**9, PAST_NS + 10**9))  # touched: same bytes, new mtime
    hashed.clear()
    assert run(source) == first and hashed == [path.name]

    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, new content
    path.write_bytes(bytes(data))
    os.utime(path, ns=(PAST_NS + 2 * 10**9, PAST_NS + 2 * 10**9))
    hashed.clear()
    changed = run(source)
    assert hashed == [path.name] and changed == expected(path, source) and changed != first


def test_file_modified_just_now_is_hashed_but_not_remembered(tmp_path, hashed):
    # Its mtime could still move within one timestamp tick without the size changing: never trust it.
    path = tmp_path / DUMP.name
    shutil.copy(DUMP, path)  # mtime: now
    source = WikipediaSource(kind="wikipedia", paths=[str(path)], split_bytes=2048)
    assert run(source) == run(source) == expected(path, source)
    assert hashed == [path.name, path.name]
