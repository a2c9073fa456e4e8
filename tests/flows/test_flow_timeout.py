"""A flow that runs past its limit ends as TimedOut and frees its slot: `LMPIPE_TIMEOUT_GLUE` on a GLUE run whose
Ray Train job would take minutes, in a process of its own (the limit is read when flows are imported), against
this session's Prefect server. The command exits non-zero soon after the limit, the flow run's state in the API
is TimedOut, and no Ray process of that run is left behind."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.settings import PREFECT_API_URL

from tests.flows.test_glue_flow import write_glue_dir
from tests.unit._registry_helpers import tiny_bert

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[2]
LIMIT_S = 25


@pytest.mark.parametrize("tasks", [["rte"], pytest.param(["rte", "stsb"], marks=pytest.mark.slow)],
                         ids=["one-task", "two-tasks-at-once"])
def test_a_glue_run_past_its_limit_times_out_and_frees_its_slot(tmp_path, tasks):
    """One task: the limit lands inside `fit()` (ray_entry._fit keeps it a timeout). Two tasks fine-tuning at
    once in task threads: it lands in the flow's wait, and the jobs in flight are stopped (`stop_ray_jobs`),
    else the task runner would wait for them."""
    spec = yaml.safe_load(open(ROOT / "data_specs/glue/tiny_cpu.yaml"))
    spec["tasks"] = tasks
    spec["defaults"].update(epochs=500, max_length=16)  # minutes of training: only the limit ends it
    spec["scaling"] = {"num_workers": 1, "cpus_per_worker": 1.0, "storage_path": str(tmp_path / "runs")}
    (tmp_path / "glue.yaml").write_text(yaml.safe_dump(spec))
    model, data = tiny_bert(tmp_path / "tiny-bert"), write_glue_dir(tmp_path / "glue")
    tag = f"timeout-test-{os.getpid()}-{time.time_ns()}"
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "LMPIPE_TIMEOUT_GLUE": str(LIMIT_S),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db", "LMPIPE_STATE_DIR": str(tmp_path / "state"),
           "RAY_ADDRESS": ""}
    code = ("import sys; from prefect import tags; from flows.glue import glue\n"
            f"with tags({tag!r}): glue({str(model)!r}, tasks={tasks!r}, spec_path={str(tmp_path / 'glue.yaml')!r}, "
            f"data_dir={str(data)!r})")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    took = time.monotonic() - started
    assert done.returncode != 0, done.stdout[-2000:]
    assert "TimeoutError" in done.stderr or "timed out" in done.stderr.lower(), done.stderr[-3000:]
    assert took < LIMIT_S + 120, f"the command ran {took:.0f} s past a {LIMIT_S} s limit"

    async def states() -> tuple[list[str], dict[str, tuple[str, float]]]:
        async with get_client() as client:
            flow_filter = FlowRunFilter(tags=FlowRunFilterTags(all_=[tag]))
            runs = await client.read_flow_runs(flow_run_filter=flow_filter)
            task_runs = await client.read_task_runs(flow_run_filter=flow_filter)
            return [r.state.name for r in runs], {
                t.name: (t.state.name, (t.start_time - runs[0].start_time).total_seconds() if t.start_time else None)
                for t in task_runs if t.name.startswith("glue-")}

    flow_states, task_states = asyncio.run(states())
    assert flow_states == ["TimedOut"]
    assert set(task_states) == {f"glue-{t}" for t in tasks}
    # none left Running; two tasks started together (at once, not in turn) and were stopped
    assert all(state in ("Failed", "Crashed") for state, _ in task_states.values()), task_states
    if len(tasks) > 1:
        starts = [at for _, at in task_states.values()]
        assert max(starts) - min(starts) < LIMIT_S / 2, task_states
