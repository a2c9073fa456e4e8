"""Two `lmpipe curate` runs on one output at once, and a lock holder killed with SIGKILL.

Faults:
- a holder of the output's lock is SIGKILLed while holding it;
- then a second `lmpipe curate` is started on the output while a first one is running (the first is
  held in the middle of its work by a loopback HTTP server that answers only when the test says so).
What must survive: the killed holder leaves no stale lock (the first run starts and finishes); the
first run is not disturbed by the second; the second fails fast (exit 2, before the first ends) with a
message naming the holder (pid, host, since when).
What the output must equal: the first run's normal result: exit 0, a manifest with the book, no
failed input.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, SAMPLE_CORPUS
from tests.flows.helpers import write_spec

LMPIPE = str(Path(sys.executable).parent / "lmpipe")
BOOK = SAMPLE_CORPUS / "books" / "the-lantern-keeper.txt"


class _GatedHandler(http.server.BaseHTTPRequestHandler):
    """Serves one book; every GET waits until `gate` is set and reports itself through `asked`."""

    protocol_version = "HTTP/1.1"
    data: bytes = BOOK.read_bytes()
    asked: threading.Event
    gate: threading.Event

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass

    def do_HEAD(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.data)))
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        self.asked.set()
        self.gate.wait(timeout=120)
        self.do_HEAD()
        self.wfile.write(self.data)


@pytest.fixture
def gated() -> Iterator[tuple[str, threading.Event, threading.Event]]:
    """(url, asked, gate): the book at a loopback URL whose downloads wait for `gate`."""
    asked, gate = threading.Event(), threading.Event()
    handler = type("Handler", (_GatedHandler,), {"asked": asked, "gate": gate})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{BOOK.name}", asked, gate
    gate.set()
    server.shutdown()
    server.server_close()


def _kill_a_lock_holder(output: Path) -> int:
    """Take the output's lock in a child process, SIGKILL it while it holds the lock; returns its pid."""
    code = ("import sys, time\nfrom tasks.common.lock import output_lock\n"
            "with output_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(output)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert json.loads((output / ".lmpipe.lock").read_text())["pid"] == holder.pid  # it died holding the lock
    return holder.pid


def test_second_run_fails_fast_and_a_killed_holder_leaves_no_stale_lock(gated, tmp_path, prefect_env):
    url, asked, gate = gated
    out = tmp_path / "out"
    spec = write_spec(tmp_path / "spec.yaml", out, sources=[{"kind": "books", "paths": [url]}],
                      run={"workers": 1, "retries": 0})
    dead = _kill_a_lock_holder(out)

    cmd = [LMPIPE, "curate", str(spec)]
    first = subprocess.Popen(cmd, cwd=REPO, env=prefect_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
    try:
        started = time.monotonic()
        while not asked.wait(timeout=0.5):  # the first run holds the lock once it reads its input
            assert first.poll() is None, f"the first run ended (stale lock of pid {dead}?):\n{first.stdout.read()}"
            assert time.monotonic() - started < 120, "the first run never read its input"

        second_started = time.monotonic()
        second = subprocess.run(cmd, cwd=REPO, env=prefect_env, capture_output=True, text=True, timeout=120)
        second_seconds = time.monotonic() - second_started
        assert first.poll() is None, "the first run must still be running when the second gives up"
        message = " ".join((second.stdout + second.stderr).split())
        assert second.returncode == 2, message[-3000:]
        assert f"locked by pid {first.pid} on host {socket.gethostname()} since 20" in message, message[-3000:]
        assert str(out / ".lmpipe.lock") in message
    finally:
        gate.set()
    first_output, _ = first.communicate(timeout=180)
    assert first.returncode == 0, first_output[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["kept"] == 1 and manifest["failed_inputs"] == []
    assert second_seconds < time.monotonic() - started  # failed fast: well before the first run ended
    assert not os.path.getsize(out / ".lmpipe.lock")  # released: no holder named any more
