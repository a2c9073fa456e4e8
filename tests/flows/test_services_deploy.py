"""`lmpipe services` and `prefect.yaml`, end to end: real Prefect and MLflow servers, a real deploy, a real worker.

Each test starts its own servers on free ports with state in a temp folder (`--state-dir`, `--mlflow-dir`) and
stops them in a finalizer, whatever happens. `up`/`down` run as `python -m flows.services` subprocesses, as a
user's shell would; `status` also runs in-process through a test-local app wired like flows/cli.py
(`app.add_typer(services_app, name="services")`).

About a minute on 2 cores: two server start-ups (15-30 s each), one `prefect deploy --all`, two worker runs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import typer
import yaml
from typer.testing import CliRunner

from flows.services import services_app
from tasks.services.processes import _live_members, port_in_use, read_info
from tasks.services.servers import prefect_service
from tests.flows.helpers import free_port, services_cmd

REPO = Path(__file__).resolve().parents[2]
BOOKS = REPO / "tests" / "fixtures" / "sample_corpus" / "books"

pytestmark = pytest.mark.timeout(600)




@dataclass
class Services:
    state: Path
    mlflow_dir: Path
    prefect_port: int
    mlflow_port: int
    up_output: str

    @property
    def state_args(self) -> list[str]:
        return ["--state-dir", str(self.state)]

    @property
    def up_args(self) -> list[str]:
        return ["up", *self.state_args, "--mlflow-dir", str(self.mlflow_dir),
                "--prefect-port", str(self.prefect_port), "--mlflow-port", str(self.mlflow_port), "--timeout", "180"]

    @property
    def prefect_api(self) -> str:
        return f"http://127.0.0.1:{self.prefect_port}/api"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"


@pytest.fixture
def services(tmp_path: Path):
    """`services up` on free ports in tmp_path; `down` afterwards, then SIGKILL to any group that survived."""
    svc = Services(tmp_path / "state", tmp_path / "mlflow", free_port(), free_port(), "")
    pgids: list[int] = []
    try:
        out = services_cmd(*svc.up_args)
        pgids = [info["pid"] for name in ("prefect", "mlflow") if (info := read_info(svc.state, name))]
        assert out.returncode == 0, f"up failed:\n{out.stdout}\n{out.stderr}\n{_logs(svc.state)}"
        svc.up_output = out.stdout
        yield svc
    finally:
        services_cmd("down", *svc.state_args, "--timeout", "15", timeout=120)
        for pgid in pgids:  # backstop: nothing we started may outlive the test
            if _live_members(pgid):
                os.killpg(pgid, signal.SIGKILL)


def _logs(state: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(state.glob("*.log")))


# ---- up / status / down ------------------------------------------------------------------------------------------


def test_prefect_on_another_port_points_its_ui_at_that_port(tmp_path: Path):
    """STACK_NOTES: without PREFECT_UI_API_URL the UI of a server on another port calls :4200."""
    env = prefect_service(tmp_path, 4311).env
    assert env["PREFECT_UI_API_URL"] == "http://127.0.0.1:4311/api"
    assert env["PREFECT_HOME"] == str(tmp_path / "prefect")


def test_up_refuses_a_busy_port_before_starting_anything(tmp_path: Path):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        out = services_cmd("up", "--state-dir", str(tmp_path / "state"), "--mlflow-dir", str(tmp_path / "mlflow"),
                        "--prefect-port", str(free_port()), "--mlflow-port", str(busy.getsockname()[1]))
    assert out.returncode == 1
    assert "in use" in out.stdout
    assert read_info(tmp_path / "state", "prefect") is None  # the free one was not started either


def test_up_status_down(services: Services):
    svc = services
    pids = {name: read_info(svc.state, name)["pid"] for name in ("prefect", "mlflow")}
    assert f"export PREFECT_API_URL={svc.prefect_api}" in svc.up_output
    assert f"export MLFLOW_TRACKING_URI={svc.mlflow_url}" in svc.up_output
    assert f"export LMPIPE_HOME={REPO}" in svc.up_output
    assert (svc.state / "env.sh").read_text().count("export ") == 3
    assert (svc.state / "prefect").is_dir()  # PREFECT_HOME of the server

    # status, through an app wired the way flows/cli.py wires it
    app = typer.Typer()
    app.add_typer(services_app, name="services")
    result = CliRunner().invoke(app, ["services", "status", *svc.state_args])
    assert result.exit_code == 0, result.output
    assert result.output.count("healthy") == 2

    # both answer over HTTP; MLflow writes to the store in --mlflow-dir
    assert httpx.get(f"{svc.prefect_api}/health", timeout=10).json() is True
    ui = httpx.get(f"http://127.0.0.1:{svc.prefect_port}/ui-settings", timeout=10).json()
    assert ui["api_url"] == svc.prefect_api  # the UI calls this server, not :4200
    pool = httpx.get(f"{svc.prefect_api}/work_pools/lmpipe-cpu", timeout=10).json()
    assert pool["type"] == "process"
    wanted_env = {"LMPIPE_HOME": str(REPO), "PREFECT_API_URL": svc.prefect_api, "MLFLOW_TRACKING_URI": svc.mlflow_url}
    assert pool["base_job_template"]["variables"]["properties"]["env"]["default"] == wanted_env
    assert pool["concurrency_limit"] == 1
    created = httpx.post(f"{svc.mlflow_url}/api/2.0/mlflow/experiments/create", json={"name": "services-probe"},
                         timeout=30)
    assert created.status_code == 200, created.text
    found = httpx.post(f"{svc.mlflow_url}/api/2.0/mlflow/experiments/search", json={"max_results": 10},
                       timeout=30).json()
    experiment = next(e for e in found["experiments"] if e["name"] == "services-probe")
    assert experiment["artifact_location"].startswith("mlflow-artifacts:")  # proxied: remote clients can download
    assert (svc.mlflow_dir / "mlflow.db").is_file()

    # a pool left by another checkout (stale LMPIPE_HOME and URLs, no limit) plus a variable a user added
    stale = pool["base_job_template"]
    stale["variables"]["properties"]["env"]["default"] = {"LMPIPE_HOME": "/old/checkout", "PREFECT_API_URL":
                                                          "http://127.0.0.1:1/api", "USER_ADDED": "kept"}
    patched = httpx.patch(f"{svc.prefect_api}/work_pools/lmpipe-cpu", json={"base_job_template": stale,
                                                                           "concurrency_limit": None}, timeout=10)
    assert patched.status_code == 204, patched.text

    # a second `up` starts nothing, and brings the pool up to date
    again = services_cmd(*svc.up_args, "--pool-concurrency", "2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("already running") == 2
    assert {name: read_info(svc.state, name)["pid"] for name in ("prefect", "mlflow")} == pids
    assert "updated" in again.stdout
    pool = httpx.get(f"{svc.prefect_api}/work_pools/lmpipe-cpu", timeout=10).json()
    assert pool["base_job_template"]["variables"]["properties"]["env"]["default"] == {**wanted_env,
                                                                                      "USER_ADDED": "kept"}
    assert pool["concurrency_limit"] == 2

    down = services_cmd("down", *svc.state_args)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not port_in_use(svc.prefect_port) and not port_in_use(svc.mlflow_port)
    assert all(not _live_members(pid) for pid in pids.values()), "a server process outlived `down`"
    assert not list(svc.state.glob("*.pid"))
    assert services_cmd("status", *svc.state_args).returncode == 1


# ---- prefect.yaml: deploy, run through a worker ---------------------------------------------------------------


def _deployments(api: str) -> dict[str, dict]:
    response = httpx.post(f"{api}/deployments/filter", json={}, timeout=30)
    response.raise_for_status()
    return {d["name"]: d for d in response.json()}


def _run_deployment(api: str, deployment: dict, parameters: dict, env: dict[str, str], cwd: Path,
                    job_variables: dict | None = None) -> dict:
    """Create a flow run of `deployment`, let one `prefect worker start --run-once` take it; return the run."""
    created = httpx.post(f"{api}/deployments/{deployment['id']}/create_flow_run",
                         json={"parameters": parameters, "job_variables": job_variables or {}}, timeout=30)
    created.raise_for_status()
    run_id = created.json()["id"]
    worker = subprocess.run([str(Path(sys.executable).parent / "prefect"), "worker", "start", "--pool", "lmpipe-cpu",
                             "--run-once"], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    deadline = time.monotonic() + 60  # the final state is normally set before the worker exits
    while True:
        run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=30).json()
        if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert run["state_type"] == "COMPLETED", f"{run['state_type']}\n{worker.stdout[-4000:]}\n{worker.stderr[-4000:]}"
    return run


def _automations(api: str) -> dict[str, dict]:
    response = httpx.post(f"{api}/automations/filter", json={}, timeout=30)
    response.raise_for_status()
    return {a["name"]: a for a in response.json()}


def _wait_for_runs(api: str, deployment_ids: set[str], count: int, timeout: float = 90) -> list[dict]:
    """Flow runs of these deployments once there are `count` of them (what the triggers created), or those
    found when `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        runs = httpx.post(f"{api}/flow_runs/filter", json={"flow_runs": {"deployment_id": {"any_": sorted(
            deployment_ids)}}}, timeout=30).json()
        if len(runs) >= count or time.monotonic() > deadline:
            return runs
        time.sleep(1)


def _books_spec(path: Path, output: Path) -> str:
    path.write_text(yaml.safe_dump({"name": f"svc-{output.name}", "output": str(output), "run": {"workers": 1},
                                    "sources": [{"kind": "books", "paths": [str(BOOKS / "*.txt")]}]}))
    return str(path)


def test_deploy_all_and_run_through_a_worker(services: Services, tmp_path: Path):
    svc = services
    env = {**os.environ, "PREFECT_API_URL": svc.prefect_api, "MLFLOW_TRACKING_URI": svc.mlflow_url}
    deploy = subprocess.run([str(Path(sys.executable).parent / "prefect"), "--no-prompt", "deploy", "--all"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert deploy.returncode == 0, deploy.stdout[-4000:] + deploy.stderr[-4000:]

    local = yaml.safe_load((REPO / "prefect.yaml").read_text())
    declared = local["deployments"]
    registered = _deployments(svc.prefect_api)
    assert set(registered) == {d["name"] for d in declared}
    for d in declared:
        got = registered[d["name"]]
        assert got["work_pool_name"] == "lmpipe-cpu"
        assert "spec_path" in got["parameters"], d["name"]
        assert all(not s["active"] for s in got["schedules"]), f"{d['name']}: schedule not paused"
        assert [s["schedule"]["cron"] for s in got["schedules"]] == [s["cron"] for s in d.get("schedules", [])]
        assert got["pull_steps"] == local["pull"]  # `{{ $LMPIPE_HOME }}` resolved by each run, not at deploy
        assert got["global_concurrency_limit"]["limit"] == 1  # one run at a time; over the limit it waits:
        assert got["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    assert "model" in registered["glue-sample-bert"]["parameters"]
    assert any(s["schedule"]["cron"] == "0 2 * * *" for s in registered["pipeline-sample"]["schedules"])  # nightly
    assert registered["pipeline-sample"]["job_variables"]["env"]["LMPIPE_TIMEOUT_PIPELINE"] == "21600"
    automations = _automations(svc.prefect_api)
    assert set(automations) == {f"{n}__automation_1" for n in ("pretrain-sample-bert", "pretrain-sample-gpt",
                                                                "glue-sample-bert")}
    for name, automation in automations.items():
        (action,) = automation["actions"]
        assert action["type"] == "run-deployment"
        assert action["deployment_id"] == registered[name.removesuffix("__automation_1")]["id"]

    # curate-sample with a tiny spec, through a worker started as the README says (LMPIPE_HOME exported),
    # from a folder that is not the repository: the pull step must move the run there
    elsewhere = tmp_path / "worker-cwd"
    elsewhere.mkdir()
    worker_env = {**env, "LMPIPE_HOME": str(REPO), "LMPIPE_STATE_DIR": str(tmp_path / "lmpipe-state")}
    spec = _books_spec(tmp_path / "curate.yaml", tmp_path / "curated")
    curated = _run_deployment(svc.prefect_api, registered["curate-sample"], {"spec_path": spec}, worker_env,
                              elsewhere)
    assert (tmp_path / "curated" / "manifest.json").is_file()

    # its completion triggers both pretrain deployments (and nothing else); they are removed before they run
    chained = _wait_for_runs(svc.prefect_api, {registered[n]["id"] for n in ("pretrain-sample-bert",
                                                                             "pretrain-sample-gpt")}, count=2)
    assert all(r["state_type"] == "SCHEDULED" and r["parameters"]["spec_path"].startswith("data_specs/pretrain/")
               for r in chained)
    for r in chained:
        httpx.delete(f"{svc.prefect_api}/flow_runs/{r['id']}", timeout=30).raise_for_status()
    assert curated["state_type"] == "COMPLETED"

    # the pipeline deployment, curate stage only; this worker has no LMPIPE_HOME and no MLFLOW_TRACKING_URI (no
    # env.sh): the pool's default env supplies both
    worker_env.pop("LMPIPE_HOME")
    worker_env.pop("MLFLOW_TRACKING_URI")
    pipeline_spec = tmp_path / "pipeline.yaml"
    pipeline_spec.write_text(yaml.safe_dump({
        "name": "svc-pipeline",
        "curate": _books_spec(tmp_path / "curate2.yaml", tmp_path / "curated2"),
        "pretrain": str(REPO / "data_specs" / "pretrain" / "sample_bert.yaml"),
        "glue": str(REPO / "data_specs" / "glue" / "sample.yaml"),
        "stages": ["curate"],
    }))
    run = _run_deployment(svc.prefect_api, registered["pipeline-sample"], {"spec_path": str(pipeline_spec)},
                          worker_env, elsewhere)
    assert (tmp_path / "curated2" / "manifest.json").is_file()
    assert "pipeline:svc-pipeline" in run["tags"]
    summary = httpx.post(f"{svc.prefect_api}/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [
        run["id"]]}, "key": {"any_": ["pipeline-summary"]}}}, timeout=30).json()
    assert f"in `{svc.mlflow_url}`" in summary[0]["data"]  # the tracking server, not a SQLite file
    # a pipeline's own curate subflow is no curate-sample run: it triggers nothing
    assert not _wait_for_runs(svc.prefect_api, {registered["pretrain-sample-bert"]["id"]}, count=1, timeout=15)

    # prefect.git.yaml: the same deployments, the code cloned from a git remote at the commit deployed from. The
    # worker runs in another folder with another environment: no LMPIPE_HOME, no PYTHONPATH, no checkout on its path
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    subprocess.run(["git", "push", "-q", str(remote), "HEAD:refs/heads/main"], cwd=REPO, check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, check=True, capture_output=True,
                            text=True).stdout.strip()
    deploy = subprocess.run([str(Path(sys.executable).parent / "prefect"), "--no-prompt", "deploy", "--all",
                             "--prefect-file", "prefect.git.yaml"], cwd=REPO, env={**env, "LMPIPE_GIT_URL": f"file://{remote}"},
                            capture_output=True, text=True, timeout=300)
    assert deploy.returncode == 0, deploy.stdout[-4000:] + deploy.stderr[-4000:]
    registered = _deployments(svc.prefect_api)
    assert set(registered) == {d["name"] for d in declared}  # the same deployments, redeployed
    assert registered["curate-sample"]["pull_steps"][0] == {"prefect.deployments.steps.git_clone": {
        "id": "clone", "repository": f"file://{remote}", "commit_sha": commit}}
    other_env = {k: v for k, v in worker_env.items() if k not in ("PYTHONPATH", "LMPIPE_HOME")}
    other_cwd = tmp_path / "other-worker"
    other_cwd.mkdir()
    runs_dir = tmp_path / "git-runs"  # the flow run's working folder: the clone stays there to be looked at
    runs_dir.mkdir()
    spec = _books_spec(tmp_path / "curate3.yaml", tmp_path / "curated3")
    _run_deployment(svc.prefect_api, registered["curate-sample"], {"spec_path": spec}, other_env, other_cwd,
                    job_variables={"working_dir": str(runs_dir)})
    assert (tmp_path / "curated3" / "manifest.json").is_file()
    (clone,) = [p.parent for p in runs_dir.glob("*/.git")]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, check=True, capture_output=True, text=True)
    assert head.stdout.strip() == commit
