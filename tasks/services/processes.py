"""Background servers as processes: start one in its own session with its pid, facts and log on disk, wait
until it answers its health URL, tell whether it still runs, stop its whole process group.

Generic: `tasks.services.servers` says which servers (Prefect, MLflow) and `flows.services` wires the commands.
Prefect's own `prefect server start --background` covers only Prefect; MLflow needs all of this anyway, so both
servers share it.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"  # both servers are local-only; `--host` is not offered on purpose


@dataclass(frozen=True)
class Service:
    """One server: how to start it, where its state lives, how to tell that it is healthy."""

    name: str
    port: int
    argv: list[str]
    env: dict[str, str]  # added to (or overriding) the caller's environment
    health_path: str  # GET answers 200 when the server is ready
    ui_url: str
    client_url: str  # what clients export: PREFECT_API_URL or MLFLOW_TRACKING_URI

    @property
    def health_url(self) -> str:
        return f"http://{HOST}:{self.port}{self.health_path}"


def _script(name: str) -> str:
    """The console script installed next to this interpreter (the venv's), else the one on PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else name


def _pid_file(state_dir: Path, name: str) -> Path:
    return state_dir / f"{name}.pid"


def _info_file(state_dir: Path, name: str) -> Path:
    return state_dir / f"{name}.json"


def read_info(state_dir: Path, name: str) -> dict[str, Any] | None:
    """What `up` recorded about a service (pid, port, URLs), or None if it has no pid file."""
    pid_file = _pid_file(state_dir, name)
    if not pid_file.is_file():
        return None
    try:
        pid = int(pid_file.read_text().strip())
    except ValueError:
        return None
    info: dict[str, Any] = {}
    if _info_file(state_dir, name).is_file():
        info = json.loads(_info_file(state_dir, name).read_text())
    return {**info, "pid": pid}


def _forget(state_dir: Path, name: str) -> None:
    for path in (_pid_file(state_dir, name), _info_file(state_dir, name)):
        path.unlink(missing_ok=True)


def _reap(pid: int) -> None:
    """Collect the exit status if `pid` is our own child (`up` called from Python), so it leaves no zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _live_members(pgid: int) -> list[int]:
    """Processes of group `pgid` that are not zombies (Linux /proc); elsewhere, [pgid] if the group exists."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
            return [pgid]
        except (ProcessLookupError, PermissionError):
            return []
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces or parentheses, so split after the last ")"
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def is_alive(pid: int) -> bool:
    """The server we started is still there: its process group has live members.

    `up` starts each server as the leader of a new session, so its pgid is its pid; a reused pid belongs to some
    other group and does not count.
    """
    _reap(pid)
    return bool(_live_members(pid))


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


def is_healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _log_tail(path: Path, lines: int = 30) -> str:
    if not path.is_file():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def start(service: Service, state_dir: Path) -> int:
    """Start `service` in its own session (so `down` can signal the whole group); record pid and info."""
    state_dir.mkdir(parents=True, exist_ok=True)
    log = state_dir / f"{service.name}.log"
    env = {**os.environ, **service.env}
    with open(log, "ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(service.argv)}\n".encode())
        out.flush()
        process = subprocess.Popen(service.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, cwd=state_dir, start_new_session=True)
    _pid_file(state_dir, service.name).write_text(f"{process.pid}\n")
    info = {"name": service.name, "port": service.port, "ui_url": service.ui_url, "client_url": service.client_url,
            "health_url": service.health_url, "log": str(log), "argv": service.argv, "env": service.env,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    _info_file(state_dir, service.name).write_text(json.dumps(info, indent=2) + "\n")
    return process.pid


def wait_healthy(services: list[Service], state_dir: Path, timeout: float) -> None:
    """Block until every service answers its health URL; raise RuntimeError (with the log's tail) if one dies
    or the timeout passes."""
    pending = list(services)
    deadline = time.monotonic() + timeout
    while pending:
        for service in list(pending):
            info = read_info(state_dir, service.name)
            if info is None or not is_alive(info["pid"]):
                raise RuntimeError(f"{service.name} server exited during start-up; "
                                   f"last lines of {state_dir / (service.name + '.log')}:\n"
                                   f"{_log_tail(state_dir / (service.name + '.log'))}")
            if is_healthy(service.health_url):
                pending.remove(service)
        if pending and time.monotonic() > deadline:
            names = ", ".join(s.name for s in pending)
            raise RuntimeError(f"{names} did not answer within {timeout:.0f} s; see the logs in {state_dir}")
        if pending:
            time.sleep(0.5)


def stop(state_dir: Path, name: str, timeout: float) -> str:
    """SIGTERM the service's process group, wait up to `timeout` s, then SIGKILL; remove its pid files."""
    info = read_info(state_dir, name)
    if info is None:
        return "not running"
    pid = info["pid"]
    if not is_alive(pid):
        _forget(state_dir, name)
        return "was not running (stale pid file removed)"

    def signal_group(sig: int) -> None:
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    signal_group(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while is_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    outcome = "stopped"
    if is_alive(pid):
        signal_group(signal.SIGKILL)
        outcome = f"killed (did not stop within {timeout:.0f} s of SIGTERM)"
        deadline = time.monotonic() + 10
        while is_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    _forget(state_dir, name)
    return outcome


def write_env_file(state_dir: Path, values: dict[str, str]) -> Path:
    path = state_dir / "env.sh"
    path.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items()))
    return path


def _service_from_info(requested: Service, info: dict[str, Any]) -> Service:
    port = int(info.get("port", requested.port))
    return Service(requested.name, port, info.get("argv", requested.argv), info.get("env", requested.env),
                   requested.health_path, info.get("ui_url", requested.ui_url),
                   info.get("client_url", requested.client_url))

