"""The CLI points a run at the Prefect server `lmpipe services` runs, instead of a temporary one, when the shell
has no PREFECT_API_URL (issue 16: orchestration time; history where the UI shows it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tasks.services.servers import running_prefect_api, use_running_prefect


class _Health(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(200 if self.path == "/api/health" else 404)
        self.end_headers()
        self.wfile.write(b"true")

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()


@pytest.fixture()
def leader():
    """A live process that leads its own process group, as `lmpipe services up` starts each server."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    yield process.pid
    process.kill()
    process.wait()


def _record(state: Path, pid: int, port: int) -> None:
    state.mkdir(parents=True, exist_ok=True)
    (state / "prefect.pid").write_text(f"{pid}\n")
    api = f"http://127.0.0.1:{port}/api"
    (state / "prefect.json").write_text(json.dumps({"client_url": api, "health_url": f"{api}/health",
                                                    "ui_url": f"http://127.0.0.1:{port}"}))


def test_a_running_healthy_server_is_used_when_the_shell_has_none(tmp_path, server, leader):
    _record(tmp_path, leader, server)
    env: dict[str, str] = {}
    assert use_running_prefect(env, tmp_path) == f"http://127.0.0.1:{server}/api"
    assert env["PREFECT_API_URL"] == f"http://127.0.0.1:{server}/api"


def test_an_explicit_url_or_the_opt_out_wins(tmp_path, server, leader):
    _record(tmp_path, leader, server)
    env = {"PREFECT_API_URL": "http://10.0.0.1:4200/api"}
    assert use_running_prefect(env, tmp_path) is None and env["PREFECT_API_URL"] == "http://10.0.0.1:4200/api"
    env = {"LMPIPE_USE_SERVICES": "0"}
    assert use_running_prefect(env, tmp_path) is None and "PREFECT_API_URL" not in env


def test_a_dead_or_unhealthy_server_is_not_used(tmp_path, server, leader):
    dead = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    dead.wait()
    _record(tmp_path, dead.pid, server)
    assert running_prefect_api(tmp_path) is None  # its pid is gone: a stale record
    _record(tmp_path, leader, server + 1 if server < 65535 else server - 1)  # alive, but nothing answers there
    assert running_prefect_api(tmp_path) is None
    assert running_prefect_api(tmp_path / "nothing-here") is None


def test_the_cli_uses_it_before_prefect_is_imported(tmp_path, server, leader):
    """`lmpipe validate` in a new process: the callback sets the URL and says so; Prefect's settings see it."""
    _record(tmp_path / "services", leader, server)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["LMPIPE_STATE_DIR"] = str(tmp_path)
    code = ("import sys; from flows.cli import app; sys.argv=['lmpipe','validate','data_specs/curate/sample.yaml'];"
            "\ntry: app()\nexcept SystemExit: pass\nimport os, prefect.settings as s;"
            "print('URL', os.environ['PREFECT_API_URL'], s.get_current_settings().api.url)")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    api = f"http://127.0.0.1:{server}/api"
    assert f"URL {api} {api}" in done.stdout
    assert "running `lmpipe services` server" in done.stdout
