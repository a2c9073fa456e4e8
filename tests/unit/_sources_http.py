"""A loopback HTTP file server (with Range support, as object stores have) for the reader tests."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # noqa: ANN002
        pass

    def send_head(self):  # noqa: ANN201
        rng = self.headers.get("Range")
        path = self.translate_path(self.path)
        if not rng or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        first, _, last = rng.removeprefix("bytes=").partition("-")
        start = int(first) if first else max(0, size - int(last))
        end = min(int(last), size - 1) if first and last else size - 1
        f = open(path, "rb")  # noqa: SIM115 - closed by copyfile's caller
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self._remaining = end - start + 1
        return _Limited(f, end - start + 1)


class _Limited:
    def __init__(self, f, n: int) -> None:  # noqa: ANN001
        self.f, self.n = f, n

    def read(self, size: int = -1) -> bytes:
        if self.n <= 0:
            return b""
        data = self.f.read(self.n if size < 0 else min(size, self.n))
        self.n -= len(data)
        return data

    def close(self) -> None:
        self.f.close()


@pytest.fixture
def http_server() -> Iterator[Callable[[Path], str]]:
    """Call with a directory; returns the base URL http://127.0.0.1:<port> serving it."""
    servers = []

    def serve(directory: Path) -> str:
        handler = functools.partial(_RangeHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


class FaultPlan:
    """What the faulty server does to a file: after `after` bytes of the file (counted from its start, so a
    Range request that begins past that point is served whole), `mode` "reset" aborts the connection
    (TCP RST) and "stall" stops sending (the client's read timeout fires). Only the first `times` requests
    that reach the fault point are hit; later ones (a retry) are served whole. `hits` counts faulted requests."""

    def __init__(self, mode: str, after: int, times: int = 1_000_000) -> None:
        if mode not in ("reset", "stall"):
            raise ValueError(f"fault mode {mode!r}: use 'reset' or 'stall'")
        self.mode, self.after, self.times, self.hits = mode, after, times, 0
        self.lock = threading.Lock()

    def take(self, start: int, end: int) -> int | None:
        """Bytes to send before the fault for a request of [start, end], or None to serve it whole."""
        with self.lock:
            if not start <= self.after <= end or self.hits >= self.times:
                return None
            self.hits += 1
            return self.after - start


class _FaultyHandler(http.server.BaseHTTPRequestHandler):
    """GET with Range and HEAD, over the files of `directory`; `plans` maps a URL path to its `FaultPlan`."""

    directory = ""
    plans: dict[str, FaultPlan] = {}
    stall_s = 30.0

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass

    def _file(self) -> str | None:
        path = os.path.join(self.directory, self.path.split("?", 1)[0].lstrip("/"))
        return path if os.path.isfile(path) else None

    def do_HEAD(self) -> None:  # noqa: N802
        path = self._file()
        if path is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(os.path.getsize(path)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        import socket
        import struct
        import time

        path = self._file()
        if path is None:
            self.send_error(404)
            return
        size = os.path.getsize(path)
        start, end = 0, size - 1
        rng = self.headers.get("Range")
        if rng:
            first, _, last = rng.removeprefix("bytes=").partition("-")
            start = int(first) if first else max(0, size - int(last))
            end = min(int(last), size - 1) if first and last else size - 1
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        with open(path, "rb") as f:
            f.seek(start)
            body = f.read(end - start + 1)
        plan = self.plans.get(self.path.split("?", 1)[0])
        cut = plan.take(start, end) if plan else None
        if cut is None:
            self.wfile.write(body)
            return
        self.wfile.write(body[:cut])
        self.wfile.flush()
        if plan.mode == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        else:
            time.sleep(self.stall_s)
        self.close_connection = True


@pytest.fixture
def faulty_http_server(monkeypatch) -> Iterator[Callable[[Path, dict[str, FaultPlan]], str]]:
    """Call with a directory and `{"/name": FaultPlan(...)}`; returns the base URL of a loopback server that
    injects those faults. fsspec's http client gets a 1 s read timeout for the test, so a stall fails fast
    (`FSTimeoutError`), as a stalled remote would under a production timeout; a reset surfaces as aiohttp's
    `ClientPayloadError`."""
    import aiohttp
    import fsspec

    conf = {"client_kwargs": {"timeout": aiohttp.ClientTimeout(total=30, sock_read=1)}}
    monkeypatch.setitem(fsspec.config.conf, "http", conf)
    monkeypatch.setitem(fsspec.config.conf, "https", conf)
    servers = []

    def serve(directory: Path, plans: dict[str, FaultPlan]) -> str:
        handler = type("Handler", (_FaultyHandler,), {"directory": str(directory), "plans": plans, "stall_s": 5.0})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def unit_raises_then_retry_completes(spec, unit, work: Path, plan: FaultPlan, io_errors: tuple[type, ...]):  # noqa: ANN001, ANN201
    """Run `process_unit` on a unit whose read meets `plan`'s fault: it must raise one of `io_errors` (not a
    ReaderError) and leave nothing under `work/units`; the retry (the server now serves the file whole) must
    complete. Returns the retry's UnitResult."""
    from tasks.sources.core import ReaderError
    from tasks.units.core import process_unit

    with pytest.raises(Exception) as failure:  # noqa: PT011 - not a result with `error`: it raises
        process_unit(spec.sources[0], unit, spec.clean, spec.dedup.minhash, str(work))
    assert isinstance(failure.value, io_errors) and not isinstance(failure.value, ReaderError), repr(failure.value)
    assert plan.hits == 1
    units = work / "units"
    assert not units.exists() or list(units.iterdir()) == []  # no summary, no partial unit file
    result = process_unit(spec.sources[0], unit, spec.clean, spec.dedup.minhash, str(work))  # Prefect's retry
    assert result.complete and result.error is None
    assert (units / f"{result.key}.json").exists()
    return result
