"""Serve a registered model over REST: MLflow's own scoring server app, run in this process with uvicorn.

    lmpipe serve models:/sample-minilm-glue-sst2@champion            # http://127.0.0.1:5001/invocations
    lmpipe serve models:/sample-minilm@champion --port 5002 --host 127.0.0.1

    curl -s http://127.0.0.1:5001/invocations -H 'Content-Type: application/json' \
         -d '{"dataframe_split": {"columns": ["sentence"], "data": [["a fine film"], ["dull"]]}}'
    -> {"predictions": [{"label": "positive", "score": 0.93, "negative": 0.07, "positive": 0.93}, ...]}

Why not `mlflow models serve`: it starts `uvicorn` as a command found on PATH, so `.venv/bin/mlflow models
serve` fails with exit 127 unless the virtual environment is activated, and `--env-manager` other than local
builds a new environment (network). Here the app (`mlflow.pyfunc.scoring_server.init`: /invocations, /ping,
/health, /version, MLflow's JSON and CSV input formats, its 4xx answers to bad input) is the same; only the
process is ours.

The model is downloaded once into a temporary folder (`lmpipe-serve-*` under $TMPDIR) that is removed when
the server stops (Ctrl-C or SIGTERM: uvicorn shuts down and the folder goes with it). Inference runs with
this project's installed packages (the `--env-manager local` of MLflow), the pyfuncs declare their pinned
requirements for anyone who wants a separate environment.
"""

from __future__ import annotations

import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DEFAULT_HOST = "127.0.0.1"  # loopback: a model server is not exposed to the network unless asked
DEFAULT_PORT = 5001  # MLflow's tracking server (`lmpipe services`) takes 5000


def download_model(model_uri: str, dst: str, tracking_uri: str) -> Path:
    """Download the MLflow model at `model_uri` (models:/<name>@<alias>, models:/<name>/<version>, runs:/...,
    or a local folder) into `dst`; returns the folder holding its MLmodel file."""
    import mlflow

    from tasks.registry.core import _tracking

    if Path(model_uri).is_dir():
        return Path(model_uri).resolve()
    with _tracking(tracking_uri):  # models:/ URIs resolve against the registry URI
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=dst, tracking_uri=tracking_uri)
    path = Path(local)
    if not (path / "MLmodel").is_file():
        raise FileNotFoundError(f"{model_uri} is not an MLflow model (no MLmodel file in what was downloaded)")
    return path


def scoring_app(model_dir: str | Path) -> Any:
    """MLflow's FastAPI scoring app (`mlflow.pyfunc.scoring_server.init`) for the pyfunc model in `model_dir`."""
    from mlflow.pyfunc import scoring_server

    return scoring_server.init(scoring_server.load_model_with_mlflow_config(str(model_dir)))


@contextmanager
def model_app(model_uri: str, tracking_uri: str) -> Iterator[Any]:
    """The scoring app of `model_uri`, its download in a temporary folder that is removed on leaving."""
    with tempfile.TemporaryDirectory(prefix="lmpipe-serve-") as tmp:
        yield scoring_app(download_model(model_uri, tmp, tracking_uri))


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free one (read it from `getsockname()`)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def _server(app: Any, sock: socket.socket) -> Any:
    import uvicorn

    host, port = sock.getsockname()[:2]
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info", lifespan="off"))


def serve(model_uri: str, tracking_uri: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          on_ready: Any = None) -> None:
    """Serve `model_uri` until SIGINT or SIGTERM, then return normally; the downloaded copy is removed.

    `on_ready(url)` is called once the socket listens (the CLI prints the URL and an example request)."""
    with model_app(model_uri, tracking_uri) as app:
        sock = bind(host, port)
        bound_host, bound_port = sock.getsockname()[:2]
        if on_ready is not None:
            on_ready(f"http://{bound_host}:{bound_port}")
        # uvicorn shuts down on SIGINT/SIGTERM and then raises the signal again with the previous handler in
        # place: SIGINT becomes KeyboardInterrupt, but SIGTERM's default handler would end the process before
        # the temporary folder is removed. Both become `_Stop`, a normal return once uvicorn has shut down.
        previous = signal.signal(signal.SIGTERM, _raise_stop) if _main_thread() else None
        try:
            _server(app, sock).run(sockets=[sock])
        except (KeyboardInterrupt, _Stop):
            pass
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            sock.close()


class _Stop(Exception):
    """SIGTERM after uvicorn's shutdown: leave `serve` through its `finally` and `with` blocks."""


def _raise_stop(signum: int, frame: Any) -> None:
    raise _Stop


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def serving_in_thread(app: Any, host: str = DEFAULT_HOST) -> Iterator[str]:
    """Run `app` on a free port of `host` in a background thread; yields the base URL, stops on leaving.

    For tests and notebooks: the same uvicorn server as `serve` (off the main thread uvicorn installs no signal
    handlers)."""
    sock = bind(host, 0)
    server = _server(app, sock)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the scoring server stopped before it started")
            threading.Event().wait(0.05)
        bound_host, bound_port = sock.getsockname()[:2]
        yield f"http://{bound_host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
