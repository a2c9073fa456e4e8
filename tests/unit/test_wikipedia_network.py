"""Network errors are not corrupt input, and not silence: a Wikipedia dump read over HTTP that meets a
connection reset or a timeout raises an I/O error (the unit is retried), never a `ReaderError` (which ships the
unit partial and reports the dump as corrupt) and never a silently short unit; a retry reads every page.

The bz2 probe case: a unit of a split multistream dump finds its first stream header and verifies it by
decompressing (`_verify_bz2`). A timeout during that probe read used to count as "not a stream", so the unit
skipped the stream and its pages were lost with no error, the unit cached as complete. The dump here is built
so that the probe needs bytes beyond what the header scan fetched (stream A is over the scan's 1 MiB window;
stream B's first bz2 block is ~0.5 MB): the server stalls in the middle of that first block.

Served by the loopback `faulty_http_server`; fsspec reads in 64 KiB blocks here (5 MiB by default).
"""

from __future__ import annotations

import bz2
import hashlib
import random
from pathlib import Path

import aiohttp
import fsspec
import pytest

from data_specs import load_curate_spec
from tasks.common.documents import Document
from tasks.sources.core import ReaderError, WorkUnit, read_unit
from tests.fixtures.make_sample_corpus import SITEINFO_HEADER, page_xml
from tests.flows.helpers import write_spec
from tests.unit._sources_http import FaultPlan, faulty_http_server, unit_raises_then_retry_completes  # noqa: F401

BLOCK = 1 << 16
IO_ERRORS = (TimeoutError, ConnectionError, aiohttp.ClientError)  # a stall: FSTimeoutError; a reset: aiohttp's


def _page(i: int, text: str) -> str:
    return page_xml(100 + i, 0, f"Page {i}", "2020-01-01T00:00:00Z", None, text)


def _ids(n: int, first: int = 0) -> list[str]:
    return [f"wikipedia/enwiki/{100 + i}" for i in range(first, first + n)]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wiki-net")
    rng = random.Random(14)
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 9))) for _ in range(3000)]
    prose = [" ".join(rng.choices(words, k=1500)) + "." for _ in range(40)]  # ~10 KB a page
    xml = (SITEINFO_HEADER + "".join(_page(i, t) for i, t in enumerate(prose)) + "</mediawiki>\n").encode()
    (folder / "dump.xml").write_bytes(xml)
    (folder / "dump.xml.bz2").write_bytes(bz2.compress(xml, 9))  # 1 stream, whole-file read
    # 3 streams of 10 pages: A (~1.08 MB of bz2, more than the 1 MiB scan window), B (~0.6 MB), C (small).
    sizes = [180_000] * 10 + [100_000] * 10 + [5_000] * 10
    letters = "abcdefghijklmnopqrstuvwxyz     "
    pages = [_page(i, "".join(rng.choices(letters, k=n))) for i, n in enumerate(sizes)]
    parts = [SITEINFO_HEADER] + ["".join(pages[i : i + 10]) for i in (0, 10, 20)] + ["</mediawiki>\n"]
    streams = [bz2.compress(p.encode(), 9) for p in parts]
    (folder / "ms.xml.bz2").write_bytes(b"".join(streams))
    (folder / "ms.offsets").write_text(" ".join(str(sum(map(len, streams[:k]))) for k in range(len(streams) + 1)))
    return folder


@pytest.fixture
def small_blocks(monkeypatch, faulty_http_server):  # noqa: F811
    """The faulty server, with fsspec reading in 64 KiB blocks (the fixture's conf gains block_size)."""
    monkeypatch.setitem(fsspec.config.conf["http"], "block_size", BLOCK)
    return faulty_http_server


def _unit(url: str, path: Path, start: int | None = None, end: int | None = None) -> WorkUnit:
    # The content fingerprint given, as the planner gives it for local files: the fault hits the reader.
    return WorkUnit(0, "wikipedia", url, start=start, end=end,
                    content=f"sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}")


def _spec(url: str, tmp_path: Path, **source):
    return load_curate_spec(write_spec(tmp_path / "spec.yaml", tmp_path / "out",
                                       sources=[{"kind": "wikipedia", "paths": [url], **source}]))


@pytest.mark.parametrize("mode", ["reset", "stall"])
@pytest.mark.parametrize("name", ["dump.xml", "dump.xml.bz2"])
def test_network_fault_mid_body_is_an_io_error_and_a_retry_reads_all(inputs, small_blocks, tmp_path, name, mode):
    # Before: `_page_blocks` caught every Exception: a ReaderError after the pages read so far, the unit shipped
    # partial as "corrupt" and never retried.
    size = (inputs / name).stat().st_size
    plan = FaultPlan(mode, after=size // 2, times=1)
    url = f"{small_blocks(inputs, {'/' + name: plan})}/{name}"
    source = _spec(url, tmp_path, split_bytes=None).sources[0]
    got = []
    with pytest.raises(Exception) as failure:  # noqa: PT011 - the type is checked below
        got.extend(read_unit(source, _unit(url, inputs / name)))
    assert plan.hits == 1
    assert isinstance(failure.value, IO_ERRORS) and not isinstance(failure.value, ReaderError), repr(failure.value)
    assert len(got) < 40
    again = list(read_unit(source, _unit(url, inputs / name)))  # the retry: the server now serves it whole
    assert [r.id for r in again] == _ids(40) and all(isinstance(r, Document) for r in again)


def _probe_unit(inputs: Path, url: str) -> tuple[WorkUnit, FaultPlan]:
    """The unit whose first stream header (B's) lies 1 MiB - 2000 bytes after its start, and a stall planned
    200 KB into B's first block: past what the header scan fetched, inside what the probe must read."""
    _, _, b_start, c_start, _, size = map(int, (inputs / "ms.offsets").read_text().split())
    start = b_start - (1 << 20) + 2000
    assert start > 1000 and c_start - b_start > 400_000  # inside stream A; B's first block is large
    return _unit(url, inputs / "ms.xml.bz2", start, size), FaultPlan("stall", after=b_start + 200_000, times=1)


def test_a_timeout_during_the_bz2_probe_raises_instead_of_skipping_the_stream(inputs, small_blocks, tmp_path):
    # Before: the probe's TimeoutError read as "no stream here": the unit yielded stream C's 10 pages and ended
    # without an error, losing stream B's 10 (with unit 0's stream A: 20 of 30 pages).
    plans: dict[str, FaultPlan] = {}
    url = f"{small_blocks(inputs, plans)}/ms.xml.bz2"
    unit, plan = _probe_unit(inputs, url)
    source = _spec(url, tmp_path, split_bytes=1 << 20).sources[0]
    assert [r.id for r in read_unit(source, unit)] == _ids(20, first=10)  # unfaulted: the unit owns B and C
    plans["/ms.xml.bz2"] = plan
    got = []
    with pytest.raises(Exception) as failure:  # noqa: PT011 - the type is checked below
        got.extend(read_unit(source, unit))
    assert plan.hits == 1 and got == []
    assert isinstance(failure.value, IO_ERRORS) and not isinstance(failure.value, ReaderError), repr(failure.value)
    assert [r.id for r in read_unit(source, unit)] == _ids(20, first=10)  # the retry


def test_a_unit_that_meets_a_probe_timeout_raises_and_caches_nothing(inputs, small_blocks, tmp_path):
    plans: dict[str, FaultPlan] = {}
    url = f"{small_blocks(inputs, plans)}/ms.xml.bz2"
    unit, plan = _probe_unit(inputs, url)
    plans["/ms.xml.bz2"] = plan
    spec = _spec(url, tmp_path, split_bytes=1 << 20)
    result = unit_raises_then_retry_completes(spec, unit, tmp_path / "work", plan, IO_ERRORS)
    assert result.docs_in == 20


def test_a_corrupt_bz2_stream_is_still_a_reader_error_after_the_complete_pages(inputs, small_blocks, tmp_path):
    data = bytearray((inputs / "ms.xml.bz2").read_bytes())
    _, _, b_start, c_start, _, _ = map(int, (inputs / "ms.offsets").read_text().split())
    data[c_start + 300 : c_start + 364] = bytes(64)  # 64 zero bytes inside stream C
    (tmp_path / "corrupt.xml.bz2").write_bytes(bytes(data))
    url = f"{small_blocks(tmp_path, {})}/corrupt.xml.bz2"
    source = _spec(url, tmp_path, split_bytes=None).sources[0]
    got = []
    # (bz2's reader takes a damaged stream after a good one for trailing garbage: the dump ends early)
    with pytest.raises(ReaderError, match="after 20 complete pages"):
        got.extend(read_unit(source, _unit(url, tmp_path / "corrupt.xml.bz2")))
    assert [r.id for r in got] == _ids(20)
