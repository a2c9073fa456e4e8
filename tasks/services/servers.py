"""The two local servers of `lmpipe services` (a Prefect server and an MLflow tracking server), where their
state lives, what clients export, the process work pool their flow runs use, and finding a running Prefect
server for a plain command. Pure layout and HTTP calls; the processes themselves: `tasks.services.processes`."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tasks.services.processes import HOST, Service, _script, is_alive, is_healthy, read_info

WORK_POOL = "lmpipe-cpu"


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

