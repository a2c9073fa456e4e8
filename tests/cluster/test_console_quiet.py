"""The console of a real pretraining run, as `make demo` shows it: each progress line once, no Ray noise.

Runs `run_pretraining` in a fresh Python process, so that `_ensure_ray` starts Ray itself with lmpipe's logging
set-up (`cluster.ray_logging`) and Ray forwards worker output to the driver the way the CLI sees it. The session's
`ray_local` fixture is not used: it starts Ray with `log_to_driver=False`, which would hide exactly what is tested.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from tests.cluster.helpers import write_token_dir

pytestmark = [pytest.mark.ray]

REPO = Path(__file__).resolve().parents[2]
STEPS = 10

SCRIPT = textwrap.dedent(f"""
    import sys
    from cluster.train.ray_entry import run_pretraining
    from data_specs.pretrain import ModelSpec, ScalingSpec, TrainSpec

    tokens, runs = sys.argv[1], sys.argv[2]
    out = run_pretraining(
        tokens_dir=tokens, model=ModelSpec(kind="gpt"),
        train=TrainSpec(max_steps={STEPS}, micro_batch_size=8, grad_accum=1, lr=5e-3, min_lr=5e-4, warmup_steps=2,
                        eval_every=5, eval_batches=2, checkpoint_every={STEPS}),
        scaling=ScalingSpec(num_workers=2, cpus_per_worker=0.5, max_failures=0),
        run_name="quiet", storage_path=runs)
    print("final_step", out.final_step)
""")

# A forwarded worker line: optional colour codes, "(RayTrainWorker pid=123) ", then the message.
_PREFIX = re.compile(r"^(?:\x1b\[[0-9;]*m)*\([^)]*\)(?:\x1b\[[0-9;]*m)*\s*")


def _messages(output: str) -> list[str]:
    return [_PREFIX.sub("", line).rstrip() for line in output.splitlines()]


def test_progress_lines_once_and_no_ray_noise(tmp_path):
    tokens = write_token_dir(tmp_path / "tokens", "gpt")
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # no RAY_ADDRESS: a fresh local Ray
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0",
               PYTHONPATH=str(REPO), TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, str(script), str(tokens), str(tmp_path / "runs")], cwd=tmp_path, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=240)
    output = proc.stdout
    assert proc.returncode == 0, output[-4000:]
    assert f"final_step {STEPS}" in output

    # Noise that used to flood the console (Ray 2.60 without the dashboard) or that only restates lmpipe's choices.
    assert "PlacementGroupCleaner" not in output, output[-4000:]
    assert "Failed to query Ray Train Controller actor state" not in output
    assert "Starting execution of Dataset" not in output

    # Every progress line exactly once (it used to come through both the worker's stdout and its stderr).
    progress = Counter(m for m in _messages(output) if m.startswith("[lmpipe] step "))
    assert progress, output[-4000:]
    assert {m: n for m, n in progress.items() if n != 1} == {}, output[-4000:]
    train_steps = sorted(int(re.match(r"\[lmpipe\] step (\d+)/", m).group(1)) for m in progress if " loss " in m)
    assert train_steps == list(range(1, STEPS + 1))  # max_steps < 20: a line for every step, the last included
    assert any(m.startswith(f"[lmpipe] step {STEPS}/{STEPS} val_loss ") for m in progress)

    # The full logs stay in Ray's session folder, whose path the driver prints once.
    where = re.search(r"\[lmpipe\] Ray started locally \(\d+ CPUs\); full logs in (\S+)", output)
    assert where, output[-4000:]
    logs = Path(where.group(1))
    worker_out = "".join(p.read_text(errors="replace") for p in logs.glob("worker-*.out"))
    assert f"[lmpipe] step {STEPS}/{STEPS} loss " in worker_out
