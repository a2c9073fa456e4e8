"""prefect.yaml / prefect.git.yaml and the flows' limits, without a server: triggers and concurrency limits parse
with the installed Prefect's own models, triggers name deployments that exist, every flow has a timeout, and the
pull step fails with the fix when LMPIPE_HOME is wrong (Prefect's real step runner). Seconds; no network.
The same files against a live server and worker: tests/flows/test_services_deploy.py.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
from importlib import import_module
from pathlib import Path

import pytest
import yaml

from flows.timeouts import DEFAULT_TIMEOUTS_S, flow_timeout, timeout_variable

REPO = Path(__file__).resolve().parents[2]
LOCAL = yaml.safe_load((REPO / "prefect.yaml").read_text())
GIT = yaml.safe_load((REPO / "prefect.git.yaml").read_text())
DEPLOYMENTS = {d["name"]: d for d in LOCAL["deployments"]}
FLOW_MODULES = ("flows.curate", "flows.pretrain", "flows.glue", "flows.pipeline")


def _flow_name(entrypoint: str) -> str:
    path, _, function = entrypoint.partition(":")
    return getattr(import_module(path.removesuffix(".py").replace("/", ".")), function).name


def test_both_files_declare_the_same_deployments():
    assert GIT["deployments"] == LOCAL["deployments"]
    assert GIT["prefect-version"] == LOCAL["prefect-version"]
    steps = [next(iter(s)) for s in GIT["pull"]]
    assert steps == ["prefect.deployments.steps.git_clone", "prefect.deployments.steps.set_working_directory"]
    clone = GIT["pull"][0]["prefect.deployments.steps.git_clone"]
    assert clone["commit_sha"] == "{{ lmpipe-commit.stdout }}"  # the commit deployed from, not a moving branch
    ids = [s["prefect.deployments.steps.run_shell_script"]["id"] for s in GIT["build"]]
    assert ids == ["lmpipe-repo", "lmpipe-commit"]


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_every_deployment_has_a_concurrency_limit_prefect_accepts(name):
    from prefect.client.schemas.objects import ConcurrencyLimitConfig

    limit = DEPLOYMENTS[name]["concurrency_limit"]
    config = ConcurrencyLimitConfig.model_validate(limit)  # what `prefect deploy` turns the mapping into
    assert config.limit == 1 and config.collision_strategy.value == "ENQUEUE"


def _triggered() -> list[tuple[str, dict]]:
    return [(d["name"], t) for d in LOCAL["deployments"] for t in d.get("triggers", [])]


def test_the_stage_deployments_are_chained_by_triggers_and_only_the_pipeline_is_scheduled():
    upstream = {}
    for name, trigger in _triggered():
        related = {r["prefect.resource.role"]: r["prefect.resource.name"] for r in trigger["match_related"]}
        upstream[name] = related["deployment"]
    assert upstream == {"pretrain-sample-bert": "curate-sample", "pretrain-sample-gpt": "curate-sample",
                        "glue-sample-bert": "pretrain-sample-bert"}
    chain = {"curate-sample", *upstream}
    for name in chain:
        assert not DEPLOYMENTS[name].get("schedules"), f"{name}: chained stages run by trigger, not by the clock"
    assert [s["cron"] for s in DEPLOYMENTS["pipeline-sample"]["schedules"]] == ["0 2 * * *"]
    for d in LOCAL["deployments"]:
        assert all(s["active"] is False for s in d.get("schedules", [])), d["name"]


@pytest.mark.parametrize("name,trigger", _triggered(), ids=[n for n, _ in _triggered()])
def test_triggers_parse_with_prefect_and_name_a_real_upstream(name, trigger):
    """Prefect's deployment-trigger models ignore unknown keys (a typo would silently match every event), so
    the keys are checked against the model's fields, then the spec is built the way `prefect deploy` builds it."""
    from uuid import uuid4

    from prefect.cli.deploy._triggers import _initialize_deployment_triggers
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    assert set(trigger) <= set(DeploymentEventTrigger.model_fields), set(trigger) - set(DeploymentEventTrigger.model_fields)
    (parsed,) = _initialize_deployment_triggers(name, [dict(trigger)])
    assert isinstance(parsed, DeploymentEventTrigger)
    assert parsed.expect == {"prefect.flow-run.Completed"} and parsed.posture == "Reactive"
    parsed.set_deployment_id(uuid4())
    automation = parsed.as_automation()
    assert automation.actions[0].type == "run-deployment" and automation.actions[0].parameters is None  # defaults
    related = {r["prefect.resource.role"]: r["prefect.resource.name"] for r in trigger["match_related"]}
    up = DEPLOYMENTS[related["deployment"]]
    assert related["flow"] == _flow_name(up["entrypoint"]), "the trigger's flow is not its upstream deployment's"
    assert related["deployment"] != name


# ---- flow timeouts -----------------------------------------------------------------------------------------------


def test_every_flow_has_a_timeout():
    from prefect import Flow

    flows = {obj.name: obj for module in FLOW_MODULES for _, obj in inspect.getmembers(import_module(module))
             if isinstance(obj, Flow)}
    assert set(flows) == set(DEFAULT_TIMEOUTS_S), "a flow without a default in flows/timeouts.py"
    for name, f in flows.items():
        assert f.timeout_seconds == DEFAULT_TIMEOUTS_S[name] and f.timeout_seconds > 0, name
    stages = ("curate", "pretrain", "glue", "promote")
    assert DEFAULT_TIMEOUTS_S["pipeline"] >= sum(DEFAULT_TIMEOUTS_S[s] for s in stages)


def test_a_timeout_is_overridden_by_its_variable_when_the_flow_is_imported():
    env = {**os.environ, "PYTHONPATH": str(REPO), timeout_variable("pretrain"): "90", "LMPIPE_TIMEOUT_PIPELINE": "0"}
    out = subprocess.run([sys.executable, "-c", "from flows.pretrain import pretrain; from flows.pipeline import "
                          "pipeline; print(pretrain.timeout_seconds, pipeline.timeout_seconds)"],
                         env=env, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ["90.0", "None"]


def test_a_bad_timeout_names_its_variable(monkeypatch):
    assert timeout_variable("curate-units") == "LMPIPE_TIMEOUT_CURATE_UNITS"
    monkeypatch.setenv("LMPIPE_TIMEOUT_GLUE", "2h")
    with pytest.raises(ValueError, match="LMPIPE_TIMEOUT_GLUE='2h' is not a number of seconds"):
        flow_timeout("glue")
    monkeypatch.setenv("LMPIPE_TIMEOUT_GLUE", "-1")
    with pytest.raises(ValueError, match="negative"):
        flow_timeout("glue")


def test_the_sample_pipeline_deployment_has_a_nightly_limit():
    env = DEPLOYMENTS["pipeline-sample"]["work_pool"]["job_variables"]["env"]
    assert 0 < float(env["LMPIPE_TIMEOUT_PIPELINE"]) < 24 * 3600  # fails before the next night's run is due


# ---- the pull step -----------------------------------------------------------------------------------------------


def _pull(monkeypatch, tmp_path: Path, home: str | None) -> dict:
    from prefect.deployments.steps.core import run_steps

    if home is None:
        monkeypatch.delenv("LMPIPE_HOME", raising=False)
    else:
        monkeypatch.setenv("LMPIPE_HOME", home)
    monkeypatch.chdir(tmp_path)  # run_steps changes the working directory; monkeypatch restores it
    return asyncio.run(run_steps(LOCAL["pull"], print_function=lambda *a, **k: None))


@pytest.mark.parametrize("home", [None, "", "/nonexistent/lmpipe"])
def test_the_pull_step_without_a_checkout_fails_with_the_fix(monkeypatch, tmp_path, home):
    with pytest.raises(Exception) as caught:
        _pull(monkeypatch, tmp_path, home)
    message = str(caught.value.__cause__)  # Prefect's StepExecutionError wraps the step's error (the log shows both)
    assert "is not an lmpipe checkout" in message and "lmpipe services up" in message, message
    assert "export LMPIPE_HOME=" in message and "prefect.git.yaml" in message
    assert not isinstance(caught.value.__cause__, FileNotFoundError)


def test_the_pull_step_enters_the_checkout(monkeypatch, tmp_path):
    out = _pull(monkeypatch, tmp_path, str(REPO))
    assert Path(os.getcwd()).resolve() == REPO.resolve()
    assert Path(out["directory"]).resolve() == REPO.resolve()
