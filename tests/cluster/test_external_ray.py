"""The Ray Train entry points on a Ray cluster that runs in other processes, joined through RAY_ADDRESS only.

This is the path every cluster deployment takes (`ray job submit`, a RayJob, `RAY_ADDRESS=host:port lmpipe ...`):
a head started by `ray start --head`, and a driver process that is told nothing but the address. A module fixture
starts the head (its own temp dir, ports, process session, a throwaway auth token and a marker resource); each test
runs a driver in a separate Python process (`python -m tests.cluster.test_external_ray <kind> ...`, the
`__main__` block below) with RAY_ADDRESS=127.0.0.1:<port>, which calls `run_pretraining` or `run_finetuning` with
2 workers × 0.5 CPU, then reports what it saw as JSON.

Stopping: `ray stop` would kill every Ray on the machine (this session's `ray_local` fixture, other users'), so the
head is stopped by its own process: SIGTERM to `ray start --block`, which stops the processes it started, then
SIGKILL by pid to whatever is left in its process session.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray]

ROOT = Path(__file__).resolve().parents[2]
RAY_BIN = Path(sys.executable).with_name("ray")
MARKER = "lmpipe_external_head"  # a custom resource only this head advertises: seeing it = joined this head
DRIVER_TIMEOUT_S = 240
N_FINETUNE = 32


@dataclass
class Head:
    """A running `ray start --head --block` process and how to reach it."""

    proc: subprocess.Popen
    address: str  # what the driver is given: 127.0.0.1:<port>
    gcs_address: str  # what the head wrote to <temp_dir>/ray_current_cluster (Ray resolves 127.0.0.1 to the host IP)
    temp_dir: str
    auth_env: dict[str, str]
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clean_env() -> dict[str, str]:
    """This process's environment without anything that would point Ray or MLflow somewhere else."""
    drop = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "MLFLOW_TRACKING_URI")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(RAY_USAGE_STATS_ENABLED="0", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1")
    return env


def _stop_head(head: Head) -> list[int]:
    """Stop this head and only it; returns the pids that had to be SIGKILLed."""
    proc, session = head.proc, head.proc.pid  # start_new_session=True: the head leads its own session
    if proc.poll() is None:
        proc.terminate()  # `ray start --block` stops its GCS, raylet, dashboard, ... on SIGTERM
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    killed = []
    for pid in _session_pids(session):
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except ProcessLookupError:
            pass
    if proc.poll() is None:
        proc.wait(timeout=10)
    return killed


def _session_pids(session: int) -> list[int]:
    """Live (not zombie) processes in process session `session`: the head's, i.e. everything it and its raylet
    started. Linux /proc; os.getsid needs no permission over the process."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) != session:
                continue
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):  # gone meanwhile
            continue
        if state != "Z":
            pids.append(int(entry))
    return pids


@pytest.fixture(scope="module")
def external_head(tmp_path_factory):
    if not RAY_BIN.exists():
        pytest.skip(f"no `ray` command beside {sys.executable}")
    # A short temp dir: Ray puts Unix sockets under it, and socket paths must stay under 108 bytes.
    temp_dir = tempfile.mkdtemp(prefix="lmr-", dir="/tmp")
    log = tmp_path_factory.mktemp("external-ray") / "head.log"
    token = secrets.token_hex(32)  # token auth, as KubeRay's authOptions set it up; never written to ~/.ray
    auth_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    env = {**_clean_env(), **auth_env, "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    port = _free_port()
    cmd = [
        str(RAY_BIN), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
        "--num-cpus", "2", "--resources", json.dumps({MARKER: 1}), "--temp-dir", temp_dir,
        "--include-dashboard", "false", "--disable-usage-stats", "--object-store-memory", str(300 * 1024**2),
        # Fixed defaults (10001, 52365) would collide with another head on this machine.
        "--ray-client-server-port", str(_free_port()), "--dashboard-port", str(_free_port()),
        "--dashboard-agent-listen-port", str(_free_port()),
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=temp_dir)
    head = Head(proc, f"127.0.0.1:{port}", "", temp_dir, auth_env, log)
    try:
        address_file = Path(temp_dir) / "ray_current_cluster"  # written by `ray start` once the head is up
        deadline = time.monotonic() + 90
        while not address_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start --head did not come up (exit {proc.poll()}):\n{log.read_text()[-3000:]}")
            time.sleep(0.25)
        head.gcs_address = address_file.read_text().strip()
        yield head
    finally:
        _stop_head(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _drive(head: Head, kind: str, work: Path) -> dict:
    """Run the driver for `kind` in a separate process joined to `head` by RAY_ADDRESS; its JSON report."""
    report, log = work / f"{kind}.json", work / f"{kind}-driver.log"
    env = {**_clean_env(), **head.auth_env, "RAY_ADDRESS": head.address}
    with open(log, "wb") as out:
        proc = subprocess.run([sys.executable, "-m", "tests.cluster.test_external_ray", kind, str(report), str(work)],
                              cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=DRIVER_TIMEOUT_S)
    assert proc.returncode == 0 and report.exists(), f"driver exited {proc.returncode}:\n{log.read_text()[-4000:]}"
    return json.loads(report.read_text())


def _assert_joined(head: Head, seen: dict) -> None:
    """The driver's Ray was the external head's, not a local Ray it started itself."""
    assert seen["gcs_address"] == head.gcs_address
    assert seen["gcs_address"].rsplit(":", 1)[1] == head.address.rsplit(":", 1)[1]
    assert seen["cluster_resources"].get(MARKER) == 1.0, seen["cluster_resources"]  # the head's marker resource
    assert seen["cluster_resources"]["CPU"] == 2.0 and len(seen["alive_nodes"]) == 1
    assert Path(seen["session_dir"]).is_relative_to(head.temp_dir)  # a local Ray would live under /tmp/ray
    # The head's GCS lists this driver's job, registered by the driver process itself.
    jobs = {j["job_id"]: j for j in seen["jobs"]}
    assert jobs[seen["job_id"]]["driver_pid"] == seen["pid"], jobs


def test_pretraining_joins_the_external_cluster(external_head, tmp_path):
    seen = _drive(external_head, "pretrain", tmp_path)
    _assert_joined(external_head, seen)
    out = seen["outcome"]
    assert out["final_step"] == 6 and out["resumed_from_step"] is None
    assert out["metrics"]["val_loss"] is not None and out["metrics"]["tokens_seen"] == 6 * 8 * 32 * 2  # × 2 workers
    assert (Path(out["model_dir"]) / "config.json").is_file()
    assert out["model_dir"].startswith(str(tmp_path))  # published from the checkpoint on "shared" storage


def test_finetuning_joins_the_external_cluster(external_head, tmp_path):
    seen = _drive(external_head, "finetune", tmp_path)
    _assert_joined(external_head, seen)
    out = seen["outcome"]
    assert out["final_step"] == 8  # 32 rows / batch 8 × 2 epochs
    assert out["examples_seen"] == 2 * N_FINETUNE
    assert len(out["predictions"]) == N_FINETUNE
    assert (Path(out["model_dir"]) / "config.json").is_file()


@pytest.mark.slow
def test_pretrain_flow_on_the_external_cluster_carries_the_workers_env(external_head, tmp_path):
    """Through the flow, as `RAY_ADDRESS=... lmpipe pretrain SPEC` runs: the preflight joins the cluster first,
    and it must join with the workers' settings (it used to connect bare, so MLFLOW_TRACKING_URI,
    TOKENIZERS_PARALLELISM and the logging settings never reached the workers)."""
    seen = _drive(external_head, "pretrain_flow", tmp_path)
    _assert_joined(external_head, seen)
    out = seen["outcome"]
    assert out["final_step"] == 4 and out["model_uri"].endswith("@candidate")
    assert len(out["worker_env"]) == 2, out["worker_env"]  # one record per Train worker
    for env in out["worker_env"]:
        assert env["MLFLOW_TRACKING_URI"] == out["tracking_uri"]
        assert env["TOKENIZERS_PARALLELISM"] == "false"
    job_env = out["job_env_vars"]  # the driver's job itself (the preflight's connection) carries them too
    assert job_env.get("MLFLOW_TRACKING_URI") == out["tracking_uri"], job_env


def test_stopping_the_head_leaves_other_rays_alone(external_head):
    """The scoped stop ends every process of this head, and a Ray this pytest process runs keeps working."""
    session = external_head.proc.pid
    assert _session_pids(session), "the head has no processes left before it was stopped"
    _stop_head(external_head)  # the fixture's teardown repeats it harmlessly
    time.sleep(0.5)
    assert _session_pids(session) == []
    import ray

    if ray.is_initialized():  # e.g. the session's `ray_local` from the other cluster tests
        assert ray.get(ray.put(41)) + 1 == 42


# ---------------------------------------------------------------------------------------------------------------
# The driver: runs in its own process, knows the cluster only through RAY_ADDRESS (and the auth token).


def _cluster_view() -> dict:
    import ray

    ctx = ray.get_runtime_context()
    return {
        "gcs_address": ctx.gcs_address,
        "job_id": ctx.get_job_id(),
        "pid": os.getpid(),
        "session_dir": ray._private.worker._global_node.get_session_dir_path(),
        "cluster_resources": ray.cluster_resources(),
        "alive_nodes": [n["NodeID"] for n in ray.nodes() if n["Alive"]],
        "jobs": [{"job_id": j["JobID"], "driver_pid": j["DriverPid"]} for j in ray._private.state.jobs()],
    }


def _pretrain(work: Path) -> dict:
    from cluster.train.ray_entry import run_pretraining
    from data_specs.pretrain import ModelSpec, ScalingSpec, TrainSpec
    from tests.cluster.helpers import write_token_dir

    tokens = write_token_dir(work / "tokens", "gpt", n_train=256, n_val=32, with_tokenizer=True)
    train = TrainSpec(max_steps=6, micro_batch_size=8, grad_accum=1, lr=5e-3, min_lr=5e-4, warmup_steps=1,
                      eval_every=3, eval_batches=1, checkpoint_every=3)
    out = run_pretraining(tokens_dir=str(tokens), model=ModelSpec(kind="gpt"), train=train,
                          scaling=ScalingSpec(num_workers=2, cpus_per_worker=0.5, max_failures=0),
                          run_name="external-gpt", storage_path=str(work / "runs"))
    return {"final_step": out.final_step, "resumed_from_step": out.resumed_from_step, "metrics": out.metrics,
            "model_dir": out.model_dir}


def _finetune(work: Path) -> dict:
    from transformers import AutoTokenizer

    from cluster.train.finetune import encode
    from cluster.train.ray_entry import run_finetuning
    from data_specs.glue import FinetuneSpec, GlueScalingSpec
    from tests.unit._registry_helpers import tiny_bert

    base = tiny_bert(work / "tiny-bert")
    tok = AutoTokenizer.from_pretrained(base)
    pos, neg = ["good great fine", "great good nice", "nice fine good"], ["bad awful poor", "poor bad sad", "sad bad"]
    texts = [(pos if i % 2 else neg)[i % 3] for i in range(N_FINETUNE)]
    data = encode(tok, (texts,), [i % 2 for i in range(N_FINETUNE)], 16, regression=False)
    out = run_finetuning(model_dir=str(base), tokenizer_dir=str(base), train=data, evals={"validation": data},
                         label_names=["neg", "pos"],
                         spec=FinetuneSpec(lr=3e-3, epochs=2, batch_size=8, checkpoint_every=4, seed=0),
                         scaling=GlueScalingSpec(num_workers=2, cpus_per_worker=0.5, max_failures=0),
                         run_name="external-ft", storage_path=str(work / "runs"))
    return {"final_step": out.final_step, "examples_seen": out.metrics.get("examples_seen"),
            "predictions": out.predictions["validation"], "model_dir": out.model_dir}


ENV_KEYS = ("MLFLOW_TRACKING_URI", "TOKENIZERS_PARALLELISM", "RAY_USAGE_STATS_ENABLED")


def _pretrain_flow(work: Path) -> dict:
    import yaml

    from cluster.train import ray_entry
    from flows.curate import curate
    from flows.pretrain import pretrain
    from tests.flows.helpers import write_spec

    original = ray_entry._train_worker

    def spy(config: dict) -> None:  # defined in __main__: shipped by value, so it runs in the Train workers
        (work / f"worker-env-{os.getpid()}.json").write_text(json.dumps({k: os.environ.get(k) for k in ENV_KEYS}))
        original(config)

    ray_entry._train_worker = spy
    curate(str(write_spec(work / "curate.yaml", work / "curated")))
    uri = f"sqlite:///{work}/mlflow.db"
    spec = {
        "name": "external-flow", "data": {"curated": str(work / "curated"), "tokens": str(work / "tokens")},
        "tokenizer": {"vocab_size": 512}, "packing": {"seq_len": 32, "validation_fraction": 0.1},
        "model": {"kind": "gpt", "preset": "tiny"},
        "train": {"max_steps": 4, "micro_batch_size": 4, "grad_accum": 1, "lr": 0.003, "min_lr": 0.0003,
                  "warmup_steps": 1, "eval_every": 2, "eval_batches": 1, "checkpoint_every": 2},
        "scaling": {"num_workers": 2, "cpus_per_worker": 0.5, "max_failures": 0,
                    "storage_path": str(work / "runs")},
        "mlflow": {"tracking_uri": uri, "experiment": "external", "registered_model": "external-gpt"},
    }
    (work / "pretrain.yaml").write_text(yaml.safe_dump(spec))
    summary = pretrain(str(work / "pretrain.yaml"))
    import ray

    runtime_env = dict(ray.get_runtime_context().runtime_env)  # this driver's job, as ray.init set it up
    return {"final_step": summary["final_step"], "model_uri": summary["model_uri"], "tracking_uri": uri,
            "worker_env": [json.loads(p.read_text()) for p in sorted(work.glob("worker-env-*.json"))],
            "job_env_vars": runtime_env.get("env_vars", {})}


if __name__ == "__main__":
    kind, report, work = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    assert os.environ.get("RAY_ADDRESS"), "the driver must be pointed at the cluster by RAY_ADDRESS"
    outcome = {"pretrain": _pretrain, "finetune": _finetune, "pretrain_flow": _pretrain_flow}[kind](work)
    report.write_text(json.dumps({**_cluster_view(), "outcome": outcome}))
