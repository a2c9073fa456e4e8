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

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from tasks.services.processes import (HOST, Service, _forget, _service_from_info, is_alive, is_healthy,
                                      port_in_use, read_info, start, stop, wait_healthy, write_env_file)
from tasks.services.servers import (WORK_POOL, _repo_root, default_mlflow_dir, default_state_dir, ensure_work_pool,
                                    exports, mlflow_service, pool_env, prefect_service)

SERVICES = ("prefect", "mlflow")

services_app = typer.Typer(add_completion=False, no_args_is_help=True,
                           help="Start, stop and inspect the local Prefect and MLflow servers.")
console = Console()


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
