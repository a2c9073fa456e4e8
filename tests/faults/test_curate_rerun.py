"""Transient failures must not leave stale output: a rerun retries what failed and rebuilds what changed.

Faults:
- `cut`: the loopback HTTP server (127.0.0.1, with an ETag and byte ranges, as object stores have) drops
  the connection half-way through the first download of a remote WARC. aiohttp's `ClientPayloadError`
  is not a `ReaderError`, so the unit fails whole (nothing of the file was read).
- `garbled`: the first download arrives at full length but its second half is garbage. The WARC
  reader keeps the complete records before the damage and reports a `ReaderError`: a partial unit,
  with the same unit key as the whole file (same ETag), so only its outcome differs.
- a reader raising MemoryError (`LMPIPE_FAULTS=curate.record@<unit>#3=raise`) after 3 records.
What must survive: nothing of the failed attempt is reused — the unit is read again on the rerun.
What the output must equal: a clean run's — shard sha256, manifest counts and shards, no failed input
(the CLI's exit code 0); for the MemoryError case, a rerun's unit equals a clean unit (counts, file).

Runs use `run.retries: 0`, so the failure reaches the manifest instead of being retried within the run.
"""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from data_specs import load_curate_spec
from flows.curate import curate
from tasks.common.faults import InjectedFault
from tasks.sources.core import WorkUnit
from tasks.units.core import process_unit
from tests.conftest import SAMPLE_CORPUS
from tests.flows.helpers import shard_digests, write_spec

WARC = SAMPLE_CORPUS / "cc" / "sample.warc.gz"


class _FlakyHandler(http.server.BaseHTTPRequestHandler):
    """Serves one file with ETag, Content-Length and Range; the GET after `arm(mode)` is faulty."""

    protocol_version = "HTTP/1.1"
    data: bytes = b""
    fault: list[str]  # modes of the faulty GETs still to come (set per server)

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass

    def _headers(self, length: int, status: int = 200, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in {"Content-Length": str(length), "ETag": '"v1"', "Accept-Ranges": "bytes",
                            **(extra or {})}.items():
            self.send_header(name, value)
        self.end_headers()

    def do_HEAD(self) -> None:  # noqa: N802
        self._headers(len(self.data))

    def do_GET(self) -> None:  # noqa: N802
        body, status, extra = self.data, 200, {}
        if rng := self.headers.get("Range"):
            first, _, last = rng.removeprefix("bytes=").partition("-")
            start, end = int(first), min(int(last) if last else len(self.data) - 1, len(self.data) - 1)
            body, status = self.data[start : end + 1], 206
            extra = {"Content-Range": f"bytes {start}-{end}/{len(self.data)}"}
        self._headers(len(body), status, extra)
        mode = self.fault.pop(0) if self.fault else None
        if mode == "cut":  # half the promised bytes, then the connection goes away
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if mode == "garbled":  # the right length, but the second half is not the file
            body = body[: len(body) // 2] + bytes(range(256)) * (len(body) // 512 + 1)
            body = body[: len(self.data)]
        self.wfile.write(body)


@dataclass
class Flaky:
    url: str
    faults: list[str]  # append a mode: the next GET is faulty


@pytest.fixture(scope="module")
def flaky() -> Iterator[Flaky]:
    """The sample WARC at a loopback URL; one server for the module, so every run sees the same URL."""
    faults: list[str] = []
    handler = type("Handler", (_FlakyHandler,), {"data": WARC.read_bytes(), "fault": faults})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Flaky(f"http://127.0.0.1:{server.server_address[1]}/{WARC.name}", faults)
    server.shutdown()
    server.server_close()


def _spec(root: Path, url: str) -> Path:
    return write_spec(root / "spec.yaml", root / "out", sources=[{"kind": "common_crawl", "paths": [url]}],
                      run={"workers": 1, "retries": 0})


@pytest.fixture(scope="module")
def clean(tmp_path_factory, flaky) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("clean")
    manifest = curate(str(_spec(root, flaky.url)))
    assert manifest["counts"]["kept"] > 0 and not manifest["failed_inputs"]
    return root / "out", manifest


@pytest.mark.parametrize(("mode", "error"), [("cut", "payload is not completed"), ("garbled", "ReaderError: ")])
def test_rerun_after_a_broken_download_equals_a_clean_run(clean, flaky, tmp_path, mode, error):
    clean_out, clean_manifest = clean
    spec = _spec(tmp_path, flaky.url)
    flaky.faults[:] = [mode]

    broken = curate(str(spec))
    assert not flaky.faults, "the faulty download never happened"
    (failed,) = broken["failed_inputs"]
    assert failed["input"] == WARC.name and error in failed["error"], failed
    if mode == "garbled":  # a partial unit: the records before the damage were read
        assert 0 < failed["documents_read"] < clean_manifest["counts"]["documents_in"]

    again = curate(str(spec))  # the server is whole again
    assert again["failed_inputs"] == [] and again["counts"] == clean_manifest["counts"]
    assert again["shards"] == clean_manifest["shards"]
    assert shard_digests(tmp_path / "out") == shard_digests(clean_out)


def test_memory_error_mid_stream_fails_the_unit_and_is_never_cached(tmp_path, monkeypatch):
    spec = load_curate_spec(write_spec(tmp_path / "spec.yaml", tmp_path / "out",
                                       sources=[{"kind": "common_crawl", "paths": [str(WARC)]}]))
    source, unit = spec.sources[0], WorkUnit(0, "common_crawl", str(WARC))
    args = (source, unit, spec.clean, spec.dedup.minhash)
    units = tmp_path / "work" / "units"
    monkeypatch.setenv("LMPIPE_FAULTS_DIR", str(tmp_path / "fired"))
    monkeypatch.setenv("LMPIPE_FAULTS", f"curate.record@{WARC.name}#3=raise")

    with pytest.raises(InjectedFault):  # a MemoryError: the task fails (Prefect would retry it)
        process_unit(*args, str(tmp_path / "work"))
    assert not units.exists() or not list(units.iterdir()), "a failed unit left files behind"

    retried = process_unit(*args, str(tmp_path / "work"))  # the fault fires once: this is the retry
    clean = process_unit(*args, str(tmp_path / "clean-work"))
    assert retried.complete and retried.error is None and not retried.cached
    assert (retried.docs_in, retried.kept, retried.drops) == (clean.docs_in, clean.kept, clean.drops)
    assert retried.docs_in > 3
    assert _sha(retried.path) == _sha(clean.path)
    assert process_unit(*args, str(tmp_path / "work")).cached  # complete now: reused


def _sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
