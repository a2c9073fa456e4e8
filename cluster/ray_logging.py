"""What lmpipe's Ray jobs print: each progress line once, and Ray's warnings only when something is wrong.

`cluster.train.ray_entry._ensure_ray` applies this when it starts or joins Ray. What Ray 2.60 (Train V2) printed
on `make demo` before, why, and what changes:

- Every `print` in a Ray Train worker reached the console twice. Train V2 patches `print` in its workers to log
  through the root logger (a console handler on stderr, plus `logs/train/ray-train-app-worker-*.log`), and since
  ray-project/ray#61075 it also calls the real `print` whenever `sys.stdout is not sys.__stdout__`, to respect
  `contextlib.redirect_stdout`. In a Ray worker that is always true (`ray/_private/workers/default_worker.py`
  rebinds `sys.stdout` to an unbuffered file on the same descriptor), so each line went to the worker's stdout
  *and* its stderr, and the driver shows both streams. `WORKER_ENV_VARS` turns the patch off: `print` is plain
  `print` again, one copy in the worker's `.out` file, shown once. (Any cluster: set for joined ones too.)
- `PlacementGroupCleaner`, a detached helper Train V2 starts per run, asks the State API every second whether the
  controller is alive. Without the dashboard there is no State API, and each poll logged a warning (46–65 lines
  per run). A Ray that lmpipe starts itself is torn down with the driver, so nothing is left for the cleaner to
  clean: on that cluster its logger is set to ERROR (`quiet_local_workers`, a `worker_process_setup_hook`).
  With a second Ray running on the machine (another job, a test session), the cleaner's address lookup found
  both and its thread died with a traceback instead; the hook points `RAY_ADDRESS` at the worker's own cluster.
- Ray Data logged three INFO lines per pass over the training shard ("Starting execution…", "Execution plan…",
  "…execution finished"), that is every epoch, plus a warning that progress bars are off (lmpipe turns them off).
  On a Ray that lmpipe starts, those records carry Ray Data's own `hide` attribute: its console handler drops
  them, its file handler still writes them to `logs/ray-data/ray-data.log`.

Where the full logs are: the Ray session folder on the head node (`/tmp/ray/session_latest/logs/`, printed once
when lmpipe starts Ray): `worker-*.out` / `worker-*.err` per worker process (the `[lmpipe] step` lines are in the
rank-0 worker's `.out`), `train/ray-train-{app,sys}-{controller,worker}-*.log` (Ray Train, JSON lines; the
`sys` files keep every level), `ray-data/ray-data.log` (Ray Data, every level).
"""

from __future__ import annotations

import logging
import os

# Job-wide env for the Ray workers (runtime_env["env_vars"]): `print` in a Train worker writes one copy.
WORKER_ENV_VARS = {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}

_PG_CLEANER_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"

# Ray Data loggers whose records below the given level go to ray-data.log only, not to the console.
_RAY_DATA_FILE_ONLY = {
    "ray.data._internal.execution.streaming_executor": logging.WARNING,  # per-epoch start / plan / finished
    "ray.data._internal.progress": logging.ERROR,  # "Progress bars disabled": lmpipe's own choice
}


class _HideFromConsoleBelow(logging.Filter):
    """Marks records below `level` with Ray Data's `hide` attribute (ray.data._internal.logging.HiddenRecordFilter
    drops them from the console handler; the file handler has no such filter and keeps them). Never drops."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level:
            record.hide = True
        return True


def quiet_local_workers() -> None:
    """`worker_process_setup_hook` for a Ray that lmpipe starts: runs once in every worker process at start-up.

    Only loggers are touched, before Ray Train / Ray Data configure their handlers (they keep logger filters and
    this logger's level): the warnings that matter, Train's failure and restart messages included, still show.
    Never raises: a failing hook would stop the worker process.
    """
    try:
        import ray

        # The worker is connected when the hook runs. Ray's own address look-ups (the State API client the
        # cleaner uses) then resolve to this cluster, not "Found multiple active Ray instances".
        os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    except Exception:  # noqa: BLE001 - logging set-up must not cost the worker
        pass
    logging.getLogger(_PG_CLEANER_LOGGER).setLevel(logging.ERROR)
    for name, level in _RAY_DATA_FILE_ONLY.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _HideFromConsoleBelow) for f in logger.filters):
            logger.addFilter(_HideFromConsoleBelow(level))
