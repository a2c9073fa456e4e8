"""Local services: a Prefect server and an MLflow tracking server in the background, with their state on disk.

    lmpipe services up [--prefect-port 4200] [--mlflow-port 5000] [--state-dir DIR] [--mlflow-dir DIR]
    lmpipe services status [--state-dir DIR]
    lmpipe services down [--state-dir DIR] [--timeout 20]
    python -m flows.services up ...          # the same commands without the `lmpipe` entry point

`up` starts what is not already running (a second `up` starts nothing), waits until both answer their HTTP
health checks, creates or updates the `lmpipe-cpu` process work pool, and prints the exports a shell needs.
Both servers listen on 127.0.0.1 only.

State (`<state root>/services/`: `$LMPIPE_STATE_DIR/services/`, else `<repo>/.lmpipe/services/`):

    <state>/prefect.pid, mlflow.pid        the pid of each server; it leads its own process group
    <state>/prefect.json, mlflow.json      port, URLs, command, log path, start time (what `status` reads)
    <state>/prefect.log, mlflow.log        server output (appended)
    <state>/prefect/                       PREFECT_HOME of the server: its SQLite database
    <state>/env.sh                         `source` it: PREFECT_API_URL, MLFLOW_TRACKING_URI, LMPIPE_HOME

MLflow keeps the project-local store the CLI already uses without a server (`<state root>/mlflow/mlflow.db`,
see tasks/registry/tracking.py), so runs logged before `up` appear in the UI. The server proxies artifacts
(`--serve-artifacts`, stored under `<state root>/mlflow/artifacts/<experiment id>/`): experiments created
through it get `mlflow-artifacts:/` roots, which any client of the server can upload to and download from.
Two consequences of sharing one store with and without a server:
- experiments created before `up` keep their `file://` roots: their artifacts are read from disk (this machine);
- a process that writes to the SQLite file directly (no MLFLOW_TRACKING_URI) cannot log artifacts into an
  experiment the server created (MLflow: "an mlflow-artifacts URI ... requires an http tracking URI"). Once the
  server is in use, keep it up and export MLFLOW_TRACKING_URI.

The work pool's default `env` job variable holds `LMPIPE_HOME=<repo>`, `MLFLOW_TRACKING_URI` and
`PREFECT_API_URL` of the servers that run, so flow runs of `prefect.yaml`'s deployments start in this checkout
(their pull step is `set_working_directory: {{ $LMPIPE_HOME }}`) and log to the tracking server even from a
worker started without env.sh. The process worker lays the pool's `env` over its own environment, so on this
pool these values win over a worker's. Every `up` writes them again (a pool made by another checkout, or before
the servers moved port, is updated; other `env` keys and job variables someone added are kept), and sets the
pool's concurrency limit (`--pool-concurrency`, default 1: one run at a time on one machine; 0 = no limit).
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
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

HOST = "127.0.0.1"  # both servers are local-only; `--host` is not offered on purpose
WORK_POOL = "lmpipe-cpu"
SERVICES = ("prefect", "mlflow")

services_app = typer.Typer(add_completion=False, no_args_is_help=True,
                           help="Start, stop and inspect the local Prefect and MLflow servers.")
console = Console()


# ----------------------------------------------------------------------------------------------------------------
# Layout and commands (pure: no processes, no network)


def _repo_root() -> Path:
    from tasks.registry.tracking import repo_root

    return repo_root()


def default_state_dir() -> Path:
    """`<state root>/services`: `$LMPIPE_STATE_DIR/services`, else `<repo>/.lmpipe/services` (tasks.common.state)."""
    from tasks.common.state import state_path

    return state_path("services")


def default_mlflow_dir() -> Path:
    """The folder of the project-local tracking store that the CLI uses when no server is running."""
    from tasks.registry.tracking import default_tracking_uri, sqlite_db_path

    db = sqlite_db_path(default_tracking_uri())
    assert db is not None  # default_tracking_uri() is always a sqlite:/// URI
    return db.parent


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


def prefect_service(state_dir: Path, port: int) -> Service:
    """`prefect server start` on HOST:port with PREFECT_HOME in the state folder.

    PREFECT_UI_API_URL is needed on any port but 4200, or the UI calls :4200 (STACK_NOTES, "The UIs").
    """
    api = f"http://{HOST}:{port}/api"
    env = {
        "PREFECT_HOME": str(state_dir / "prefect"),
        "PREFECT_UI_API_URL": api,
        "PREFECT_API_URL": api,  # the server's own services and any client it spawns talk to itself
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # no telemetry calls offline
    }
    argv = [_script("prefect"), "server", "start", "--host", HOST, "--port", str(port)]
    return Service("prefect", port, argv, env, "/api/health", f"http://{HOST}:{port}", api)


def mlflow_service(mlflow_dir: Path, port: int) -> Service:
    """`mlflow server` on HOST:port over `<mlflow_dir>/mlflow.db`, proxying artifacts to `<mlflow_dir>/artifacts`.

    One uvicorn worker and no job runner: this is a single-user server on a small machine (MLflow's defaults are
    4 workers plus 7 huey consumers for its GenAI jobs, which lmpipe does not use).
    """
    argv = [
        _script("mlflow"), "server", "--host", HOST, "--port", str(port),
        "--backend-store-uri", f"sqlite:///{mlflow_dir / 'mlflow.db'}",  # absolute path: four slashes
        "--serve-artifacts", "--artifacts-destination", str(mlflow_dir / "artifacts"),
        "--workers", "1",
    ]
    url = f"http://{HOST}:{port}"
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return Service("mlflow", port, argv, env, "/health", url, url)


def exports(prefect: Service, mlflow: Service, repo: Path) -> dict[str, str]:
    return {"PREFECT_API_URL": prefect.client_url, "MLFLOW_TRACKING_URI": mlflow.client_url,
            "LMPIPE_HOME": str(repo)}


def pool_env(prefect: Service, mlflow: Service, repo: Path) -> dict[str, str]:
    """What every flow run of the pool gets in its environment: the checkout and both servers' URLs."""
    return {"LMPIPE_HOME": str(repo), "PREFECT_API_URL": prefect.client_url, "MLFLOW_TRACKING_URI": mlflow.client_url}


def process_pool_template(env: dict[str, str], current: dict[str, Any] | None = None) -> dict[str, Any]:
    """A process-worker job template whose default `env` holds `env`.

    `current` (the pool's template today) is kept apart from those keys: other `env` entries and job variables a
    user added survive an update. Without it, Prefect's default process template is the base.
    """
    from prefect.workers.process import ProcessWorker

    template = json.loads(json.dumps(current)) if current else ProcessWorker.get_default_base_job_template()
    env_var = template["variables"]["properties"].setdefault("env", {"type": "object", "title": "Environment "
                                                                     "Variables", "additionalProperties":
                                                                     {"type": "string"}})
    env_var["default"] = {**(env_var.get("default") or {}), **env}
    return template


# ----------------------------------------------------------------------------------------------------------------
# Processes and probes


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


def running_prefect_api(state_dir: Path | None = None) -> str | None:
    """`PREFECT_API_URL` of the Prefect server `lmpipe services up` runs now (alive and answering its health URL),
    or None.

    The CLI points a run at it when the shell has no `PREFECT_API_URL` (`use_running_prefect`): the run's history
    lands in the server the UI shows, and the run skips Prefect's temporary server, about 10 s of every run's
    start-up here.
    """
    info = read_info(state_dir or default_state_dir(), "prefect")
    if info is None or not info.get("client_url") or not is_alive(info["pid"]):
        return None
    return info["client_url"] if is_healthy(info.get("health_url") or f"{info['client_url']}/health") else None


def use_running_prefect(environ: dict[str, str] | os._Environ = os.environ,
                        state_dir: Path | None = None) -> str | None:
    """Set `PREFECT_API_URL` in `environ` to the running `lmpipe services` server when it is unset; return the URL
    set, or None (already set, `LMPIPE_USE_SERVICES=0`, or no server runs: the run starts a temporary one).

    Call it before Prefect is imported: Prefect reads its settings then.
    """
    if environ.get("PREFECT_API_URL") or environ.get("LMPIPE_USE_SERVICES", "1") == "0":
        return None
    api = running_prefect_api(state_dir)
    if api:
        environ["PREFECT_API_URL"] = api
    return api


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


def ensure_work_pool(api_url: str, env: dict[str, str], concurrency: int | None = 1,
                     name: str = WORK_POOL) -> str:
    """Create process work pool `name`, or update it: its default `env` gets `env`, its concurrency limit
    `concurrency` (None = no limit). Returns "created", "updated" or "unchanged". Uses the REST API directly."""
    def call(method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{api_url}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, None

    status, pool = call("GET", f"/work_pools/{name}")
    if status == 200:
        if pool["type"] != "process":
            raise RuntimeError(f"work pool {name!r} exists with type {pool['type']!r}; prefect.yaml's deployments "
                               f"need a process pool: `prefect work-pool delete {name}`, then `lmpipe services up`")
        template = process_pool_template(env, pool["base_job_template"])
        if template == pool["base_job_template"] and pool.get("concurrency_limit") == concurrency:
            return "unchanged"
        status, _ = call("PATCH", f"/work_pools/{name}", {"base_job_template": template,
                                                          "concurrency_limit": concurrency})
        if status not in (200, 204):
            raise RuntimeError(f"updating work pool {name!r} failed: HTTP {status}")
        return "updated"
    status, _ = call("POST", "/work_pools/", {"name": name, "type": "process",
                                              "base_job_template": process_pool_template(env),
                                              "concurrency_limit": concurrency,
                                              "description": "lmpipe flows as local processes (prefect.yaml)"})
    if status == 409:  # created meanwhile by someone else: update it on the next `up`
        return "unchanged"
    if status not in (200, 201):
        raise RuntimeError(f"creating work pool {name!r} failed: HTTP {status}")
    return "created"


def write_env_file(state_dir: Path, values: dict[str, str]) -> Path:
    path = state_dir / "env.sh"
    path.write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in values.items()))
    return path


# ----------------------------------------------------------------------------------------------------------------
# Commands

StateDir = Annotated[Path | None,
                     typer.Option(help="Pid files, logs and PREFECT_HOME (default: <state root>/services: $LMPIPE_STATE_DIR or <repo>/.lmpipe).")]


@services_app.command()
def up(
    prefect_port: Annotated[int, typer.Option(help="Prefect server port.")] = 4200,
    mlflow_port: Annotated[int, typer.Option(help="MLflow server port.")] = 5000,
    state_dir: StateDir = None,
    mlflow_dir: Annotated[Path | None, typer.Option(help="Folder of mlflow.db and artifacts/ "
                                                         "(default: <state root>/mlflow).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for both servers to answer.")] = 120.0,
    pool_concurrency: Annotated[int, typer.Option(help=f"Flow runs of the {WORK_POOL} pool at once (0: no limit).",
                                                  min=0)] = 1,
) -> None:
    """Start the Prefect and MLflow servers (only those not running), wait until healthy, create or update the
    work pool."""
    state = (state_dir or default_state_dir()).resolve()
    mlflow_home = (mlflow_dir or default_mlflow_dir()).resolve()
    (mlflow_home / "artifacts").mkdir(parents=True, exist_ok=True)
    (state / "prefect").mkdir(parents=True, exist_ok=True)
    repo = _repo_root()
    wanted = {"prefect": prefect_service(state, prefect_port), "mlflow": mlflow_service(mlflow_home, mlflow_port)}

    running: dict[str, Service] = {}  # name -> the server that runs (or will), as recorded
    to_start: list[Service] = []
    for name, service in wanted.items():
        info = read_info(state, name)
        if info is not None and is_alive(info["pid"]):
            if info.get("port") != service.port:
                console.print(f"[yellow]{name} is already running on port {info.get('port')} (pid {info['pid']}); "
                              f"`down` first to move it to {service.port}[/]")
            running[name] = _service_from_info(service, info)  # describe the server that runs, not the one asked
            console.print(f"{name}: already running (pid {info['pid']}, port {info.get('port')})")
            continue
        if info is not None:
            _forget(state, name)  # stale: the process is gone
        if port_in_use(service.port):  # checked for both before starting either
            console.print(f"[bold red]{name}: port {service.port} on {HOST} is in use by another process[/]; "
                          f"choose another with --{name}-port")
            raise typer.Exit(1)
        to_start.append(service)
    for service in to_start:
        pid = start(service, state)
        console.print(f"{service.name}: started (pid {pid}, port {service.port}; "
                      f"log {state / (service.name + '.log')})", highlight=False, soft_wrap=True)
        running[service.name] = service

    try:
        wait_healthy(list(running.values()), state, timeout)
    except RuntimeError as exc:
        console.print(f"[bold red]{exc}[/]\n`down` stops what did start.")
        raise typer.Exit(1) from exc
    env = pool_env(running["prefect"], running["mlflow"], repo)
    try:
        outcome = ensure_work_pool(running["prefect"].client_url, env, pool_concurrency or None)
    except RuntimeError as exc:
        console.print(f"[bold red]{exc}[/]")
        raise typer.Exit(1) from exc
    limit = pool_concurrency or "no limit"
    console.print(f"work pool {WORK_POOL!r} (process, concurrency {limit}) {outcome}; its runs get "
                  + ", ".join(f"{k}={v}" for k, v in env.items()), highlight=False, soft_wrap=True)
    values = exports(running["prefect"], running["mlflow"], repo)
    env_file = write_env_file(state, values)
    console.print(f"\n[bold green]Both servers are up.[/]\n"
                  f"  Prefect UI: {running['prefect'].ui_url}\n  MLflow UI:  {running['mlflow'].ui_url}\n")
    console.print(f"In your shell (or `source {env_file}`):", highlight=False)
    for key, value in values.items():
        console.print(f"  export {key}={shlex.quote(value)}", highlight=False, soft_wrap=True)
    console.print(f"\nThen: prefect deploy --all && prefect worker start --pool {WORK_POOL}", highlight=False)


def _service_from_info(requested: Service, info: dict[str, Any]) -> Service:
    port = int(info.get("port", requested.port))
    return Service(requested.name, port, info.get("argv", requested.argv), info.get("env", requested.env),
                   requested.health_path, info.get("ui_url", requested.ui_url),
                   info.get("client_url", requested.client_url))


@services_app.command()
def down(
    state_dir: StateDir = None,
    timeout: Annotated[float, typer.Option(help="Seconds between SIGTERM and SIGKILL.")] = 20.0,
) -> None:
    """Stop both servers: SIGTERM to each process group, SIGKILL after the timeout; remove the pid files."""
    state = (state_dir or default_state_dir()).resolve()
    for name in SERVICES:
        console.print(f"{name}: {stop(state, name, timeout)}")
    (state / "env.sh").unlink(missing_ok=True)


@services_app.command()
def status(state_dir: StateDir = None) -> None:
    """Each server's pid, port and health. Exit code 0 only if both run and answer."""
    state = (state_dir or default_state_dir()).resolve()
    table = Table(title=f"lmpipe services ({state})")
    for col in ("service", "pid", "port", "state", "url"):
        table.add_column(col)
    all_ok = True
    for name in SERVICES:
        info = read_info(state, name)
        if info is None:
            table.add_row(name, "-", "-", "not running", "")
            all_ok = False
            continue
        alive = is_alive(info["pid"])
        healthy = alive and is_healthy(info.get("health_url", ""))
        word = "healthy" if healthy else ("running, not answering" if alive else "dead (stale pid file)")
        all_ok = all_ok and healthy
        table.add_row(name, str(info["pid"]), str(info.get("port", "?")), word, info.get("ui_url", ""))
    console.print(table)
    if not all_ok:
        raise typer.Exit(1)


if __name__ == "__main__":  # pragma: no cover - `python -m flows.services up`
    services_app()
