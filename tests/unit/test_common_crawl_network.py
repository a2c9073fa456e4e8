"""Network errors are not corrupt input: a WARC/WET read over HTTP that meets a reset or a timeout raises an
I/O error (the unit is retried), never a `ReaderError` (which ships the unit partial and reports the input
as corrupt); a retry reads every record. A truly corrupt gzip member is still a `ReaderError`.

Served by the loopback `faulty_http_server`; fsspec reads in 64 KiB blocks here (5 MiB by default), so
the fault lands after some complete records, as it would a few blocks into a 1 GB Common Crawl file.
"""

from __future__ import annotations

import gzip
import hashlib
import random
from pathlib import Path

import aiohttp
import fsspec
import pytest

from data_specs import load_curate_spec
from tasks.common.documents import Document
from tasks.sources.core import ReaderError, WorkUnit, read_unit
from tasks.units.core import process_unit
from tests.flows.helpers import write_spec
from tests.unit._sources_http import FaultPlan, faulty_http_server, unit_raises_then_retry_completes  # noqa: F401
from tests.unit._warc_build import Rec, page, warc_bytes

N_RECORDS = 60
BLOCK = 1 << 16
# What a reset (aiohttp's ClientPayloadError, or a ConnectionResetError) and a stall (fsspec's FSTimeoutError,
# a TimeoutError) surface as.
IO_ERRORS = (TimeoutError, ConnectionError, aiohttp.ClientError)


def _text(rng: random.Random, vocab: list[str]) -> str:
    return " ".join(rng.choice(vocab) for _ in range(1200))  # ~8 KB of words that gzip cannot shrink much


def _records(kind: str) -> list[Rec]:
    rng = random.Random(14)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9))) for _ in range(4000)]
    if kind == "wet":
        return [Rec(f"{kind}-{i}", _text(rng, vocab).encode(), kind="conversion") for i in range(N_RECORDS)]
    return [Rec(f"{kind}-{i}", page(_text(rng, vocab))) for i in range(N_RECORDS)]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("net")
    for kind in ("warc", "wet"):
        (folder / f"sample.{kind}.gz").write_bytes(warc_bytes(_records(kind)))  # gzip per record
    return folder


@pytest.fixture
def small_blocks(monkeypatch, faulty_http_server):  # noqa: F811
    """The faulty server, with fsspec reading in 64 KiB blocks (the fixture's conf gains block_size)."""
    monkeypatch.setitem(fsspec.config.conf["http"], "block_size", BLOCK)
    return faulty_http_server


def _unit(url: str, path: Path) -> WorkUnit:
    # The content fingerprint given, as the planner gives it for local files: the fault hits the reader,
    # not the worker's fingerprinting (which would also raise an I/O error, and the unit be retried too).
    return WorkUnit(0, "common_crawl", url, content=f"sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}")


def _spec(url: str, tmp_path: Path):
    spec = load_curate_spec(write_spec(tmp_path / "spec.yaml", tmp_path / "out",
                                       sources=[{"kind": "common_crawl", "paths": [url]}]))
    return spec


@pytest.mark.parametrize("mode", ["reset", "stall"])
@pytest.mark.parametrize("kind", ["warc", "wet"])
def test_network_fault_mid_body_is_an_io_error_and_a_retry_reads_all(inputs, small_blocks, tmp_path, kind, mode):
    # Before (stall): fsspec's FSTimeoutError is an OSError, so the reader called it a corrupt input:
    # a ReaderError after the records read so far, the unit shipped partial and never retried.
    name = f"sample.{kind}.gz"
    size = (inputs / name).stat().st_size
    plan = FaultPlan(mode, after=size // 2, times=1)
    url = f"{small_blocks(inputs, {'/' + name: plan})}/{name}"
    source = _spec(url, tmp_path).sources[0]
    got = []
    with pytest.raises(Exception) as failure:  # noqa: PT011 - the type is checked below
        got.extend(read_unit(source, _unit(url, inputs / name)))
    assert plan.hits == 1
    assert isinstance(failure.value, IO_ERRORS) and not isinstance(failure.value, ReaderError), repr(failure.value)
    assert 0 < len(got) < N_RECORDS  # the fault came mid-file, after complete records
    again = list(read_unit(source, _unit(url, inputs / name)))  # the retry: the server now serves it whole
    assert [r.id for r in again] == [f"common_crawl/{r.rid}" for r in _records(kind)]
    assert all(isinstance(r, Document) for r in again)


@pytest.mark.parametrize("mode", ["reset", "stall"])
def test_a_unit_that_meets_a_network_fault_raises_and_caches_nothing(inputs, small_blocks, tmp_path, mode):
    name = "sample.warc.gz"
    plan = FaultPlan(mode, after=(inputs / name).stat().st_size // 2, times=1)
    url = f"{small_blocks(inputs, {'/' + name: plan})}/{name}"
    result = unit_raises_then_retry_completes(_spec(url, tmp_path), _unit(url, inputs / name), tmp_path / "work", plan,
                                              IO_ERRORS)
    assert result.docs_in == N_RECORDS


def test_a_corrupt_gzip_member_is_still_a_reader_error_after_the_complete_records(small_blocks, tmp_path):
    records = _records("warc")[:10]
    members = [warc_bytes([r]) for r in records]
    bad = bytearray(members[6])
    bad[len(bad) // 2 : len(bad) // 2 + 64] = bytes(64)  # 64 zero bytes inside the deflate data
    assert gzip.decompress(members[5])  # the members before it are whole
    (tmp_path / "corrupt.warc.gz").write_bytes(b"".join(members[:6]) + bytes(bad) + b"".join(members[7:]))
    url = f"{small_blocks(tmp_path, {})}/corrupt.warc.gz"
    spec = _spec(url, tmp_path)
    unit = _unit(url, tmp_path / "corrupt.warc.gz")
    got = []
    with pytest.raises(ReaderError, match="body.* at offset 52992 after 6 records: CRC check failed"):
        got.extend(read_unit(spec.sources[0], unit))
    assert [r.id for r in got] == [f"common_crawl/{r.rid}" for r in records[:6]]
    result = process_unit(spec.sources[0], unit, spec.clean, spec.dedup.minhash, str(tmp_path / "work"))
    assert result.error and result.error.startswith("ReaderError") and result.docs_in == 6 and not result.complete
