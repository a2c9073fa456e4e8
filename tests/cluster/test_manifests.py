"""The deployment files in cluster/ parse and hang together, without a cluster: KubeRay RayCluster and RayJobs, the
Ray cluster launcher config, the image they run (cluster/Dockerfile), and the lmpipe commands and specs their
entrypoints name. Versions are checked against the Ray and Python installed here, which are the ones pyproject.toml
pins. Milliseconds; no Ray, no network.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
import tomllib
from importlib import import_module, metadata
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
DOCKERFILE = CLUSTER / "Dockerfile"
README = CLUSTER / "README.md"
RAY_VERSION = metadata.version("ray")
RAY_MAJOR_MINOR = ".".join(RAY_VERSION.split(".")[:2])
PY_TAG = f"py{sys.version_info.major}{sys.version_info.minor}"
RAY_KINDS = {"RayCluster", "RayJob"}
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


YAML_FILES = sorted(CLUSTER.glob("*.yaml")) + sorted(CLUSTER.glob("*.yml"))
DOCS = [(p, i, d) for p in YAML_FILES for i, d in enumerate(_load(p))]
K8S = [(p, d) for p, _, d in DOCS if "apiVersion" in d]
LAUNCHER = [(p, d) for p, _, d in DOCS if "cluster_name" in d]
RAY_OBJECTS = [(p, d) for p, d in K8S if d["kind"] in RAY_KINDS]
RAYJOBS = [(p, d) for p, d in K8S if d["kind"] == "RayJob"]


def _ids(items) -> list[str]:
    return [f"{p.name}:{d.get('kind', 'launcher')}/{d.get('metadata', {}).get('name', d.get('cluster_name'))}"
            for p, d in items]


def _cluster_specs() -> list[tuple[str, dict]]:
    """Every RayCluster spec: standalone ones and those RayJobs create."""
    out = []
    for path, doc in RAY_OBJECTS:
        spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"].get("rayClusterSpec")
        if spec is not None:
            out.append((f"{path.name}:{doc['metadata']['name']}", spec))
    return out


CLUSTER_SPECS = _cluster_specs()


def _groups(spec: dict) -> list[tuple[str, dict]]:
    return [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]


def _containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def _images() -> list[tuple[str, str]]:
    """(where, image) for every image a manifest names."""
    out = [(f"{where}/{name}", c["image"]) for where, spec in CLUSTER_SPECS for name, g in _groups(spec)
           for c in _containers(g)]
    for path, doc in LAUNCHER:
        docker = doc.get("docker") or {}
        out += [(f"{path.name}/docker.{k}", docker[k]) for k in ("image", "head_image", "worker_image") if k in docker]
    return out


# -- every file -----------------------------------------------------------------------------------------------


def test_every_yaml_is_a_manifest_we_know():
    assert {p.name for p in YAML_FILES} >= {"ray_cluster.yaml", "kuberay_raycluster.yaml", "kuberay_rayjob.yaml",
                                            "kuberay_rayjob_glue.yaml", "kuberay_shared_pvc.yaml"}
    for path, index, doc in DOCS:
        assert isinstance(doc, dict), f"{path.name} document {index}: not a mapping"
        assert ("apiVersion" in doc) != ("cluster_name" in doc), (
            f"{path.name} document {index}: neither a Kubernetes object nor a cluster launcher config")
    assert len(LAUNCHER) == 1 and RAYJOBS and any(d["kind"] == "RayCluster" for _, d in K8S)


def test_readme_covers_every_file():
    text = README.read_text()
    for path in [*YAML_FILES, DOCKERFILE]:
        assert path.name in text, f"cluster/README.md does not mention {path.name}"
    for word in ("RAY_ADDRESS", "ray job submit", "LMPIPE_TASK_RUNNER=ray", "PREFECT_API_URL", "MLFLOW_TRACKING_URI",
                 "storage_path"):
        assert word in text, f"cluster/README.md does not explain {word}"


@pytest.mark.parametrize("path,doc", K8S, ids=_ids(K8S))
def test_kubernetes_objects_have_the_required_fields(path, doc):
    for key in ("apiVersion", "kind", "metadata", "spec"):
        assert doc.get(key), f"{path.name}: missing {key}"
    assert DNS_1123.match(doc["metadata"]["name"]), doc["metadata"]["name"]
    if doc["kind"] in RAY_KINDS:
        assert doc["apiVersion"] == "ray.io/v1"


# -- RayCluster specs (standalone and inside RayJobs) -----------------------------------------------------------


@pytest.mark.parametrize("where,spec", CLUSTER_SPECS, ids=[w for w, _ in CLUSTER_SPECS])
def test_ray_cluster_specs(where, spec):
    version = str(spec["rayVersion"])
    assert ".".join(version.split(".")[:2]) == RAY_MAJOR_MINOR, (
        f"{where}: rayVersion {version}, installed Ray {RAY_VERSION}")
    assert spec["workerGroupSpecs"], f"{where}: no worker groups"
    assert spec["headGroupSpec"]["template"]["spec"]["containers"][0]["name"] == "ray-head"
    ports = {p["containerPort"] for p in spec["headGroupSpec"]["template"]["spec"]["containers"][0].get("ports", [])}
    assert {6379, 8265} <= ports, f"{where}: the head must expose the GCS (6379) and the dashboard/job API (8265)"
    names = [g["groupName"] for g in spec["workerGroupSpecs"]]
    assert len(names) == len(set(names)) and all(DNS_1123.match(n) for n in names), names
    for name, group in _groups(spec):
        assert isinstance(group.get("rayStartParams", {}), dict)
        pod = group["template"]["spec"]
        assert pod["containers"], f"{where}/{name}: no containers"
        for c in pod["containers"]:
            assert c.get("name") and c.get("image"), f"{where}/{name}: a container without name or image"
            limits, requests = c["resources"]["limits"], c["resources"].get("requests", {})
            assert "cpu" in limits and "memory" in limits, f"{where}/{name}: set CPU and memory limits"
            assert not requests or requests == limits, f"{where}/{name}: requests != limits"
            volumes = {v["name"] for v in pod.get("volumes", [])}
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{where}/{name}: mounts undefined volume {mount['name']}"
            assert {"/shared", "/dev/shm"} <= {m["mountPath"] for m in c.get("volumeMounts", [])}, (
                f"{where}/{name}: every pod needs the shared volume and a /dev/shm for the object store")
            env = {e["name"] for e in c.get("env", [])}
            assert {"MLFLOW_TRACKING_URI", "PREFECT_API_URL"} <= env, f"{where}/{name}: {env}"
        if name != "head":
            assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], f"{where}/{name}"


def test_volume_claims_are_defined_here():
    claims = {d["metadata"]["name"] for _, d in K8S if d["kind"] == "PersistentVolumeClaim"}
    for where, spec in CLUSTER_SPECS:
        for name, group in _groups(spec):
            for volume in group["template"]["spec"].get("volumes", []):
                if "persistentVolumeClaim" in volume:
                    claim = volume["persistentVolumeClaim"]["claimName"]
                    assert claim in claims, f"{where}/{name}: PVC {claim} is not in cluster/*.yaml"
    for _, doc in K8S:
        if doc["kind"] == "PersistentVolumeClaim":
            assert "ReadWriteMany" in doc["spec"]["accessModes"]  # workers write checkpoints the head reads


# -- the image ----------------------------------------------------------------------------------------------------


def _dockerfile() -> tuple[str, dict[str, list[str]]]:
    text = DOCKERFILE.read_text()
    instructions: dict[str, list[str]] = {}
    for line in re.sub(r"\\\n", " ", text).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            instructions.setdefault(word.upper(), []).append(rest.strip())
    return text, instructions


def test_dockerfile_builds_the_lmpipe_image_on_the_installed_ray_and_python():
    text, ins = _dockerfile()
    (base,) = ins["FROM"]
    m = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-(py\d+)(-gpu|-cu\d+)?", base)
    assert m, f"cluster/Dockerfile: base {base!r} is not a pinned rayproject/ray image"
    assert m.group(1).startswith(RAY_MAJOR_MINOR + "."), f"base Ray {m.group(1)}, installed {RAY_VERSION}"
    assert m.group(2) == PY_TAG, f"base Python {m.group(2)}, this Python {PY_TAG}"
    for where, spec in CLUSTER_SPECS:
        assert str(spec["rayVersion"]) == m.group(1), f"{where}: rayVersion differs from the image's Ray {m.group(1)}"
    assert any("pip install" in r and "-e ." in r for r in ins["RUN"])
    # Everything `pip install -e .` needs is copied in: pyproject, its readme and every package it installs.
    copied = {Path(src).name for line in ins["COPY"] for src in shlex.split(line)[:-1] if not src.startswith("--")}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert {"pyproject.toml", pyproject["project"]["readme"], *packages} <= copied, copied
    for name in copied:
        assert (ROOT / name).exists(), f"cluster/Dockerfile copies {name}, which is not in the repository"


def test_every_image_is_the_one_the_dockerfile_builds():
    text, _ = _dockerfile()
    images = _images()
    assert images and len({image for _, image in images}) == 1, f"one image for every node: {images}"
    image = images[0][1]
    assert re.search(rf"docker build -f cluster/Dockerfile -t {re.escape(image)} \.", text), (
        f"cluster/Dockerfile does not document building {image}")


# -- entrypoints: real commands, real specs ----------------------------------------------------------------------


def _image_workdir() -> str:
    (workdir,) = _dockerfile()[1]["WORKDIR"]
    return workdir


def _commands(entrypoint: str) -> list[list[str]]:
    """The simple commands of a shell entrypoint, each without leading VAR=value assignments."""
    out = []
    for part in re.split(r"&&|\|\||;", entrypoint):
        argv = shlex.split(part)
        while argv and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", argv[0]):
            argv = argv[1:]
        if argv:
            out.append(argv)
    return out


def _repo_path(path: str) -> Path | None:
    """The repository file an in-image path refers to (the image holds the repository at its WORKDIR)."""
    workdir = _image_workdir().rstrip("/") + "/"
    return ROOT / path[len(workdir):] if path.startswith(workdir) else None


def _lmpipe_commands() -> list[tuple[str, str, dict[str, Any]]]:
    """(rayjob name, subcommand, parsed parameters) of every lmpipe call in a RayJob entrypoint, parsed by the
    real command line (flows/cli.py's Typer app): an unknown command or option fails here as it would in the pod."""
    import typer.main

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, attr = scripts["lmpipe"].partition(":")
    cli = typer.main.get_command(getattr(import_module(module), attr))
    out = []
    for _, doc in RAYJOBS:
        for argv in _commands(doc["spec"]["entrypoint"]):
            if argv[0] != "lmpipe":
                continue
            assert argv[1] in cli.commands, f"{doc['metadata']['name']}: `lmpipe {argv[1]}` does not exist"
            try:
                ctx = cli.commands[argv[1]].make_context(argv[1], argv[2:])
            except Exception as exc:  # click's UsageError family (typer vendors click)
                message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
                pytest.fail(f"{doc['metadata']['name']}: `{shlex.join(argv)}`: {message}")
            out.append((doc["metadata"]["name"], argv[1], ctx.params))
    return out


@pytest.mark.parametrize("path,doc", RAYJOBS, ids=_ids(RAYJOBS))
def test_rayjobs(path, doc):
    spec = doc["spec"]
    assert spec["entrypoint"].strip()
    assert "rayClusterSpec" in spec or "clusterSelector" in spec
    assert spec.get("shutdownAfterJobFinishes") is True and spec.get("ttlSecondsAfterFinished", 0) > 0
    assert spec.get("submissionMode", "K8sJobMode") in {"K8sJobMode", "HTTPMode", "SidecarMode", "InteractiveMode"}
    assert any(argv[0] == "lmpipe" for argv in _commands(spec["entrypoint"])), "the entrypoint runs no lmpipe command"


def test_the_rayjobs_run_pretrain_and_glue_with_specs_that_exist_and_validate():
    from data_specs import load_pretrain_spec, load_spec
    from data_specs.glue import GlueSpec

    calls = _lmpipe_commands()
    assert {cmd for _, cmd, _ in calls} >= {"pretrain", "glue"}, calls
    registered = {}
    for job, cmd, params in calls:
        spec_path = params.get("spec")
        assert spec_path, f"{job}: lmpipe {cmd} names no spec (the default spec would run the CPU recipe)"
        local = _repo_path(spec_path)
        if local is None:  # a user-provided spec must live on the shared volume, where the README says to put it
            assert spec_path.startswith("/shared/specs/") and "/shared/specs/" in README.read_text(), spec_path
            continue
        assert local.is_file(), f"{job}: {spec_path} is {local.relative_to(ROOT)} in the image, which does not exist"
        if cmd == "pretrain":
            spec = load_pretrain_spec(local)
            registered[job] = spec.mlflow.registered_model
        elif cmd == "glue":
            spec = load_spec(local, GlueSpec)
            m = re.fullmatch(r"models:/([^@/]+)@([a-z0-9_-]+)", params["model"])
            assert m, f"{job}: model {params['model']} is not models:/<name>@<alias>"
            assert m.group(2) == "candidate"
    glue_models = [p["model"] for _, c, p in calls if c == "glue"]
    for name in registered.values():  # GLUE scores what pretraining registered
        assert f"models:/{name}@candidate" in glue_models, (registered, glue_models)


def test_cluster_specs_keep_their_data_on_the_shared_volume():
    from data_specs import load_curate_spec, load_pretrain_spec, load_spec
    from data_specs.glue import GlueSpec

    specs = sorted((CLUSTER / "specs").glob("*.yaml"))
    assert specs
    for path in specs:
        raw = yaml.safe_load(path.read_text())
        if "model" in raw:
            s = load_pretrain_spec(path)
            paths = [s.data.curated, s.data.tokens, s.scaling.storage_path]
        elif "sources" in raw:
            s = load_curate_spec(path)
            paths = [s.output]
            assert s.run.task_runner == "ray"
        else:
            s = load_spec(path, GlueSpec)
            paths = [s.data.dir, s.scaling.storage_path]
        for p in paths:
            assert p and p.startswith("/shared/"), f"{path.name}: {p!r} is not on the shared volume"


def _scalings() -> dict[str, list[Any]]:
    """Cluster spec -> the `scaling` sections of the lmpipe specs that will run on it: a RayJob's own spec, and every
    cluster spec for the long-lived RayCluster and the launcher cluster."""
    from data_specs import load_pretrain_spec, load_spec
    from data_specs.glue import GlueSpec

    by_job = {}
    for job, cmd, params in _lmpipe_commands():
        local = _repo_path(params["spec"])
        if local is not None:
            by_job[job] = (load_pretrain_spec(local) if cmd == "pretrain" else load_spec(local, GlueSpec)).scaling
    every = list(by_job.values())
    out = {where: [by_job[where.split(":")[1]]] if where.split(":")[1] in by_job else every
           for where, _ in CLUSTER_SPECS}
    out.update({path.name: every for path, _ in LAUNCHER})
    return out


def test_gpu_groups_scale_from_zero_to_what_the_specs_ask():
    """GPU groups start at zero and the autoscaler adds nodes on demand; their maximum holds scaling.num_workers
    GPUs (Ray Train V2 refuses a request beyond the cluster's maximum), each with its cpus_per_worker."""
    scalings = _scalings()
    for where, spec in CLUSTER_SPECS:
        groups = [g for _, g in _groups(spec)[1:]]
        pods = [(int(_containers(g)[0]["resources"]["limits"].get("nvidia.com/gpu", 0)),
                 float(_containers(g)[0]["resources"]["limits"]["cpu"]), g) for g in groups]
        assert any(gpus for gpus, _, _ in pods), f"{where}: no GPU group"
        for gpus, _, g in pods:
            if gpus:
                assert g["minReplicas"] == 0 and g["replicas"] == 0, f"{where}/{g['groupName']}: pinned GPU pods"
        assert spec.get("enableInTreeAutoscaling") is True, f"{where}: a group from zero needs the autoscaler"
        for scaling in scalings[where]:
            assert sum(gpus * g["maxReplicas"] for gpus, _, g in pods) >= scaling.num_workers, f"{where}: too few GPUs"
            assert all(cpus >= gpus * scaling.cpus_per_worker for gpus, cpus, _ in pods if gpus), where
    for path, launcher in LAUNCHER:
        types = launcher["available_node_types"]
        gpu_types = [t for name, t in types.items() if t["resources"].get("GPU") and name != launcher["head_node_type"]]
        assert gpu_types and all(t.get("min_workers", 0) == 0 for t in gpu_types), f"{path.name}: pinned GPU nodes"
        for scaling in scalings[path.name]:
            assert sum(t["resources"]["GPU"] * t["max_workers"] for t in gpu_types) >= scaling.num_workers
            assert all(t["resources"].get("CPU", 0) >= t["resources"]["GPU"] * scaling.cpus_per_worker
                       for t in gpu_types), path.name


@pytest.mark.parametrize("path,doc", RAYJOBS, ids=_ids(RAYJOBS))
def test_rayjobs_end_after_their_flows_limit(path, doc):
    """A hung driver cannot hold the job's GPUs for ever; the flow's own timeout fires first and is recorded."""
    from flows.timeouts import DEFAULT_TIMEOUTS_S

    deadline = doc["spec"].get("activeDeadlineSeconds")
    assert isinstance(deadline, int) and deadline > 0, f"{path.name}: no activeDeadlineSeconds"
    for argv in _commands(doc["spec"]["entrypoint"]):
        if argv[0] == "lmpipe":
            assert deadline > DEFAULT_TIMEOUTS_S[argv[1]], f"{path.name}: the deadline cuts {argv[1]}'s own limit"


@pytest.mark.parametrize("path,doc", LAUNCHER, ids=_ids(LAUNCHER))
def test_the_launcher_dashboard_listens_on_loopback_only(path, doc):
    """The dashboard is the job API: reaching it is running code. `ray dashboard`'s tunnel needs only loopback."""
    (start,) = [c for c in doc["head_start_ray_commands"] if "ray start --head" in c]
    hosts = re.findall(r"--dashboard-host[= ](\S+)", start)
    assert hosts == ["127.0.0.1"], f"{path.name}: dashboard host {hosts or 'default'}"


# -- the cluster launcher config ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path,doc", LAUNCHER, ids=_ids(LAUNCHER))
def test_launcher_config(path, doc):
    assert doc["cluster_name"] and doc["provider"]["type"]
    types = doc["available_node_types"]
    assert doc["head_node_type"] in types
    for name, t in types.items():
        assert isinstance(t["resources"], dict) and t["node_config"], f"{path.name}: node type {name}"
        if name != doc["head_node_type"]:
            assert t.get("min_workers", 0) <= t.get("max_workers", doc["max_workers"]) <= doc["max_workers"]
    assert any(t["resources"].get("GPU", 0) > 0 for t in types.values()), "no GPU node type"
    assert any("ray start --head" in c for c in doc["head_start_ray_commands"])
    assert any("ray start --address=$RAY_HEAD_IP:6379" in c for c in doc["worker_start_ray_commands"])
    # lmpipe reaches the nodes through the image (docker.image) or through setup commands that install it
    assert (doc.get("docker") or {}).get("image") or any("pip install" in c for c in doc.get("setup_commands", []))
    for key in ("setup_commands", "head_start_ray_commands", "worker_start_ray_commands"):
        assert isinstance(doc.get(key), list), f"{path.name}: {key} must be a list"
    if (doc.get("docker") or {}).get("image"):
        options = " ".join(doc["docker"].get("run_options", []))
        assert ":/shared" in options, "the containers must mount the shared storage at /shared"


@pytest.mark.parametrize("path,doc", LAUNCHER, ids=_ids(LAUNCHER))
def test_launcher_config_matches_rays_schema(path, doc):
    """The schema `ray up` validates against, shipped in the installed Ray."""
    jsonschema = pytest.importorskip("jsonschema")
    ray_dir = Path(find_spec("ray").origin).parent  # not imported: the schema file is enough
    schema = json.loads((ray_dir / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(doc, schema)
