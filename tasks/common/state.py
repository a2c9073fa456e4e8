"""Where lmpipe keeps its own state: one root for every stage, `$LMPIPE_STATE_DIR` or `<checkout>/.lmpipe`.

    state_root()                      # Path: $LMPIPE_STATE_DIR, else <checkout>/.lmpipe (absolute)
    state_path("mlflow", "mlflow.db") # Path below it (not created)

What lives there (each module names its own sub-folder):

    mlflow/mlflow.db, mlflow/artifacts/   the project-local MLflow store (tasks.registry.tracking)
    glue/runs/                            GLUE jobs, checkpoints and fine-tuned models (tasks.glue.task_run)
    pipeline/<name>-<fingerprint>/        a pipeline run's finished stages (flows.pipeline)
    services/                             pid files, logs and PREFECT_HOME of `lmpipe services` (flows.services)
    models/<run>/final_model/             a pretrained model published for registering when the run's
                                          storage_path is a URL (cluster.train.ray_entry.published_dir);
                                          `lmpipe gc` keeps it like any run folder (registered, newest N)
    fingerprints/                         remembered file hashes, only when $LMPIPE_STATE_DIR is set
                                          (else the user cache, tasks.common.io)

Pretraining checkpoints live beside the token shards (`<data.tokens>/runs`) unless `scaling.storage_path` says
otherwise: they belong to the data they were trained on and sit on the shared mount on a cluster.

Set LMPIPE_STATE_DIR to keep a checkout clean (tests, CI, a nightly job on another disk); a relative value is
taken from the current directory once, here, so every stage sees the same absolute folder.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "LMPIPE_STATE_DIR"


def state_root() -> Path:
    """`$LMPIPE_STATE_DIR` (made absolute), else `<checkout>/.lmpipe`; not created."""
    from tasks.registry.tracking import repo_root

    value = os.environ.get(ENV)
    return Path(value).resolve() if value else repo_root() / ".lmpipe"


def state_path(*parts: str) -> Path:
    """A path below `state_root()` (not created): `state_path("glue", "runs")`."""
    return state_root().joinpath(*parts)
