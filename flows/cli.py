"""The `lmpipe` command line.

    lmpipe curate SPEC [--workers N] [--runner threads|ray]
    lmpipe tokenize SPEC
    lmpipe pretrain SPEC [--new-run]
    lmpipe glue MODEL [--tasks sst2,rte] [--data-dir DIR] [--spec SPEC] [--name BASE] [--epochs N] [--lr X]
                      [--batch-size N] [--max-length N] [--seed N] [--max-train-examples N] [--metrics-json PATH]
    lmpipe promote NAME [--version V] [--margin X] [--tasks ...] [--spec SPEC]
    lmpipe pipeline SPEC [--stages curate,pretrain,glue,promote] [--fresh]
    lmpipe services up|down|status
    lmpipe validate SPEC [--kind curate|pretrain|glue|pipeline]
    lmpipe serve MODEL_URI [--port 5001] [--host 127.0.0.1]
    lmpipe gc [--keep 3] [--dry-run] [--root DIR]

Exit codes: 0 success; 1 the run finished but some inputs failed (curate) or the job failed (pretrain);
2 bad spec, bad input, or a spec that cannot run (preflight). `promote` exits 0 whether it promotes or refuses.
"""

from __future__ import annotations

import os
import sys
from functools import partial
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

import yaml

from data_specs import SpecError, curate_fingerprint, load_curate_spec, load_pretrain_spec

app = typer.Typer(add_completion=False, no_args_is_help=True, help="lmpipe: raw text to a registered language model.")
console = Console()


def _add_services() -> None:
    from flows.services import services_app

    app.add_typer(services_app, name="services", help="Start, stop or check the local Prefect and MLflow servers.")


_add_services()


@app.callback()
def _use_services() -> None:
    """Runs before every command: point the run at the `lmpipe services` Prefect server when one runs and the
    shell has no PREFECT_API_URL (LMPIPE_USE_SERVICES=0 keeps a temporary server)."""
    from tasks.services.servers import use_running_prefect

    api = use_running_prefect()
    if api:
        console.print(f"Prefect: the run's history goes to the running `lmpipe services` server ({api}); "
                      "LMPIPE_USE_SERVICES=0 for a temporary one", soft_wrap=True)


def _summary(manifest: dict[str, Any]) -> None:
    c = manifest["counts"]
    table = Table(title=f"{manifest['name']} ({manifest['fingerprint']})", show_header=True)
    table.add_column("what")
    table.add_column("documents", justify="right")
    for key in ("documents_in", "kept", "dropped", "duplicates_removed"):
        table.add_row(key.replace("_", " "), f"{c[key]:,}")
    for reason, n in sorted(manifest["drop_reasons"].items(), key=lambda kv: -kv[1]):
        table.add_row(f"  dropped: {reason}", f"{n:,}")
    for reason in ("dedup/exact", "dedup/near"):
        if manifest["duplicates"].get(reason):
            table.add_row(f"  removed: {reason}", f"{manifest['duplicates'][reason]:,}")
    console.print(table)
    console.print(f"{len(manifest['shards'])} shard(s) in {manifest['output']}/data; manifest: "
                  f"{manifest['output']}/manifest.json; data card: {manifest['output']}/DATA_CARD.md")
    if manifest["failed_inputs"]:
        console.print(f"[bold red]{len(manifest['failed_inputs'])} input(s) failed[/] (complete records before the "
                      "error were kept):")
        for f in manifest["failed_inputs"]:
            console.print(f"  [red]✗[/] {f['input']}: {f['error']} ({f['documents_read']} records read)")


SPEC_KINDS = ("curate", "pretrain", "glue", "pipeline")


def spec_kind(path: str) -> str:
    """Which spec a YAML file is, by its top-level keys: `sources` curate, `model` pretrain, a stage key
    (curate/pretrain/glue) pipeline, a GLUE spec's keys GLUE; anything else is read as curate (whose error then
    says what is missing)."""
    from data_specs.glue import GlueSpec

    try:
        raw = yaml.safe_load(open(path, encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return "curate"  # load_curate_spec reports the missing file or the YAML error
    if not isinstance(raw, dict):
        return "curate"
    if "sources" in raw:
        return "curate"
    if "model" in raw:
        return "pretrain"
    if {"curate", "pretrain", "glue"} & raw.keys():
        return "pipeline"
    if (set(GlueSpec.model_fields) - {"name", "version"}) & raw.keys():
        return "glue"
    return "curate"


def _validate_pipeline(spec: str) -> str:
    """Validate a pipeline spec and every stage spec it names or embeds; a one-line summary."""
    import tempfile
    from pathlib import Path

    from data_specs import load_spec
    from data_specs.glue import GlueSpec
    from flows.pipeline import load_pipeline_spec, pipeline_fingerprint, stage_spec_path

    parsed = load_pipeline_spec(spec)
    loaders = {"curate": load_curate_spec, "pretrain": load_pretrain_spec, "glue": lambda p: load_spec(p, GlueSpec)}
    with tempfile.TemporaryDirectory(prefix="lmpipe-validate-") as embedded:  # embedded stages, as the flow writes
        try:
            paths = {s: stage_spec_path(getattr(parsed, s), s, spec, Path(embedded)) for s in loaders}
        except FileNotFoundError as exc:
            raise SpecError(str(exc)) from exc
        stages = {s: loaders[s](p) for s, p in paths.items()}
        fp = pipeline_fingerprint(parsed, paths)
    curated = Path(stages["pretrain"].data.curated)
    output = Path(stages["curate"].output)
    note = ""
    if "curate" in parsed.stages and "pretrain" in parsed.stages and curated.resolve() != output.resolve():
        note = f"; note: pretrain's data.curated {curated} is not the curate stage's output {output}"
    return (f"{spec}: valid pipeline spec; fingerprint {fp}; stages {', '.join(parsed.stages)}; curate, pretrain "
            f"and GLUE specs valid ({', '.join(str(p) for p in paths.values())}){note}")


@app.command()
def validate(
    spec: Annotated[str, typer.Argument(help="Path to a curate, pretrain, GLUE or pipeline spec YAML.")],
    kind: Annotated[str | None, typer.Option(help="The spec's kind (default: told by its keys): "
                                             + ", ".join(SPEC_KINDS) + ".")] = None,
) -> None:
    """Validate a curate, pretrain, GLUE or pipeline spec (a pipeline's stage specs too); print what it is."""
    if kind is not None and kind not in SPEC_KINDS:
        console.print(f"[bold red]Invalid input[/]: --kind {kind!r}; expected one of {', '.join(SPEC_KINDS)}")
        raise typer.Exit(2)
    kind = kind or spec_kind(spec)
    try:
        if kind == "pretrain":
            from flows.pretrain import pretrain_fingerprint

            pre = load_pretrain_spec(spec)
            console.print(f"{spec}: valid pretrain spec; fingerprint {pretrain_fingerprint(pre)}; "
                          f"{pre.model.kind}/{pre.model.init_from or pre.model.preset}, {pre.scaling.num_workers} worker(s)")
            return
        if kind == "glue":
            from data_specs import load_spec
            from data_specs.glue import GlueSpec

            g = load_spec(spec, GlueSpec)
            console.print(f"{spec}: valid GLUE spec; tasks {', '.join(g.tasks)}; {len(g.seeds or [None])} seed(s); "
                          f"{g.scaling.num_workers} worker(s){'; search' if g.search else ''}", soft_wrap=True)
            return
        if kind == "pipeline":
            console.print(_validate_pipeline(spec), soft_wrap=True, highlight=False)
            return
        parsed = load_curate_spec(spec)
    except SpecError as exc:
        console.print(f"[bold red]Invalid spec[/]\n{exc}")
        raise typer.Exit(2) from exc
    console.print(f"{spec}: valid; fingerprint {curate_fingerprint(parsed)}; {len(parsed.sources)} source(s)")


def _load_pretrain_or_exit(spec: str) -> None:
    try:
        load_pretrain_spec(spec)
    except SpecError as exc:
        console.print(f"[bold red]Invalid spec[/]\n{exc}")
        raise typer.Exit(2) from exc


@app.command()
def tokenize(spec: Annotated[str, typer.Argument(help="Path to a pretrain spec YAML (data_specs/pretrain/).")]) -> None:
    """Train the tokenizer and write packed token shards for a pretrain spec."""
    _load_pretrain_or_exit(spec)
    from flows.pretrain import tokenize as tokenize_flow
    from tasks.pretrain.core import PreflightError

    from tasks.common.lock import OutputLocked

    try:
        manifest = tokenize_flow(spec)
    except (PreflightError, OutputLocked) as exc:
        _refuse(exc)
    for split, m in manifest["splits"].items():
        console.print(f"{split}: {m['sequences']:,} sequences of {manifest['seq_len']} tokens "
                      f"({m['tokens']:,} tokens: {m['tokens_by_source']})")
    console.print(f"tokenizer: {manifest['tokenizer']['path']} ({manifest['tokenizer']['hash']})")


@app.command()
def pretrain(
    spec: Annotated[str, typer.Argument(help="Path to a pretrain spec YAML (data_specs/pretrain/).")],
    new_run: Annotated[bool, typer.Option("--new-run", help="Start a new job even if the last one did not finish.")] = False,
) -> None:
    """Tokenize, pretrain on Ray Train, and register the model in MLflow (alias 'candidate')."""
    _load_pretrain_or_exit(spec)
    from flows.pretrain import pretrain as pretrain_flow
    from tasks.pretrain.core import PreflightError

    from tasks.common.lock import OutputLocked

    try:
        summary = pretrain_flow(spec, new_run=new_run)
    except (PreflightError, OutputLocked) as exc:
        _refuse(exc)
    m = summary["metrics"]
    console.print(f"trained {summary['final_step']} steps"
                  + (f" continuing {summary['init_from']}" if summary.get("init_from") else "")
                  + (f" (resumed from step {summary['resumed_from_step']})" if summary["resumed_from_step"] else "")
                  + "; " + ", ".join(f"{k} {v:.4g}" for k, v in m.items() if isinstance(v, float)))
    if summary.get("submission"):
        console.print(f"leaderboard submission (gluebenchmark.com): {summary['submission']}")
    console.print(f"MLflow run {summary['run_id']} at {summary['tracking_uri']}")
    console.print(f"registered model: [bold]{summary['model_uri']}[/] (version {summary['version']})")


@app.command()
def curate(
    spec: Annotated[str, typer.Argument(help="Path to a curate spec YAML (see data_specs/curate/).")],
    workers: Annotated[int | None, typer.Option(help="Override run.workers (results do not change).")] = None,
    runner: Annotated[str | None, typer.Option(help="Override run.task_runner: threads or ray.")] = None,
) -> None:
    """Curate a corpus: read, clean, deduplicate and shard the spec's sources.

    Exits 1 when some inputs failed, 2 on a bad spec, when another run holds the output's lock, or when the
    output folder holds files lmpipe did not write.
    """
    try:
        load_curate_spec(spec)
    except SpecError as exc:
        console.print(f"[bold red]Invalid spec[/]\n{exc}")
        raise typer.Exit(2) from exc
    if workers is not None:
        os.environ["LMPIPE_WORKERS"] = str(workers)
    if runner is not None:
        os.environ["LMPIPE_TASK_RUNNER"] = runner
    from flows.curate import curate as curate_flow  # imported late: prefect start-up is slow
    from rich.markup import escape

    from tasks.common.lock import OutputLocked
    from tasks.corpus.output import ForeignOutput

    try:
        manifest = curate_flow(spec)
    except (OutputLocked, ForeignOutput) as exc:
        heading = "Output locked" if isinstance(exc, OutputLocked) else "Output refused"
        console.print(f"[bold red]{heading}[/]: {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from exc
    _summary(manifest)
    if manifest["failed_inputs"]:
        raise typer.Exit(1)


@app.command()
def glue(
    model: Annotated[str, typer.Argument(help="models:/<name>@<alias>, models:/<name>/<version> or a HF folder.")],
    tasks: Annotated[str | None, typer.Option(help="Comma-separated HF task names (default: the spec's).")] = None,
    data_dir: Annotated[str | None, typer.Option(help="Local GLUE folder <TASK>/{train,dev}.tsv (default: hub).")] = None,
    spec: Annotated[str | None, typer.Option(help="GLUE spec YAML (default: data_specs/glue/default.yaml).")] = None,
    name: Annotated[str | None, typer.Option(help="Base name for a local folder (default: its folder name).")] = None,
    epochs: Annotated[float | None, typer.Option(help="Override epochs for every task.")] = None,
    lr: Annotated[float | None, typer.Option(help="Override the learning rate for every task.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Override the batch size for every task.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Override the max input length for every task.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the seed for every task.")] = None,
    max_train_examples: Annotated[int | None, typer.Option(help="Train on the first N rows of each task.")] = None,
    metrics_json: Annotated[str | None, typer.Option(help="Also write the results as JSON here.")] = None,
    predict: Annotated[bool, typer.Option("--predict", help="Also predict each task's test.tsv and write the "
                                          "gluebenchmark.com submission zip (needs --data-dir).")] = False,
    cpu: Annotated[bool, typer.Option("--cpu", help="Train on CPUs even if the spec says scaling.use_gpu: true "
                                      "(the default spec does).")] = False,
) -> None:
    """Fine-tune and score MODEL on GLUE tasks (Ray Train); register <base>-glue-<task> models in MLflow.

    Exits 2 on bad input or when the spec's workers can never be placed (no GPU: use --cpu)."""
    from data_specs.glue import GlueSpec
    from tasks.glue.tasks import parse_task_list

    try:
        from data_specs import load_spec
        from flows.glue import DEFAULT_SPEC

        load_spec(spec or DEFAULT_SPEC, GlueSpec)
        task_list = parse_task_list(tasks) if tasks else None
    except (SpecError, ValueError) as exc:
        console.print(f"[bold red]Invalid input[/]: {exc}")
        raise typer.Exit(2) from exc
    from flows.glue import glue as glue_flow
    from tasks.common.lock import OutputLocked
    from tasks.glue.data import GlueDataError

    overrides = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "max_length": max_length, "seed": seed,
                 "max_train_examples": max_train_examples}
    try:
        summary = glue_flow(model, tasks=task_list, spec_path=spec, data_dir=data_dir, name=name,
                            overrides={k: v for k, v in overrides.items() if v is not None}, metrics_json=metrics_json,
                            predict=predict, cpu=cpu)
    except (GlueDataError, ValueError, OutputLocked) as exc:  # PreflightError (Ray resources) is a ValueError
        _refuse(exc)
    _glue_table(summary)


def _glue_table(summary: dict[str, Any]) -> None:
    table = Table(title=f"GLUE: {summary['model']}", show_header=True)
    for col in ("task", "metrics", "n_train", "n_eval"):
        table.add_column(col, justify="left" if col in ("task", "metrics") else "right")
    spread = summary.get("spread") or {}
    for key, r in summary["tasks"].items():
        metrics = ", ".join(f"{m} {v * 100:.2f}" + (f" ± {spread[key][m] * 100:.2f}" if spread.get(key, {}).get(m) else "")
                            for m, v in r.items() if m not in ("n_train", "n_eval"))
        table.add_row(key, metrics, f"{r['n_train']:,}", f"{r['n_eval']:,}")
    table.add_row("[bold]GLUE score[/]", f"[bold]{summary['glue_score'] * 100:.2f}[/]", "", "")
    console.print(table)
    for task_name, uri in summary["registered"].items():
        console.print(f"registered {task_name}: {uri}")
    contamination = summary.get("contamination") or {}
    for key, r in contamination.items():
        console.print(f"contamination {key}: {r['n_contaminated']}/{r['n_examples']} ({r['rate']:.1%}) dev examples "
                      "share an n-gram with the pretraining corpus")
    if summary.get("startup_s_to_first_step") is not None:
        console.print(f"first training step {summary['startup_s_to_first_step']:.1f} s after the flow started "
                      f"(model resolved in {summary['model_resolve_s']:.1f} s)")
    console.print(f"MLflow run {summary['run_id']} at {summary['tracking_uri']}")


@app.command()
def promote(
    name: Annotated[str, typer.Argument(help="Registered base model name (its candidate is compared to its champion).")],
    margin: Annotated[float | None, typer.Option(help="Required GLUE-score gain (fraction); default: the spec's.")] = None,
    tasks: Annotated[str | None, typer.Option(help="Compare on these tasks (default: the champion's whole set).")] = None,
    spec: Annotated[str | None, typer.Option(help="GLUE spec YAML with the gate settings.")] = None,
    version: Annotated[str | None, typer.Option(help="The version to judge (default: NAME@candidate).")] = None,
) -> None:
    """Move the 'champion' alias to NAME@candidate (or --version) only if the gate passes: evaluated like the
    champion on its whole task set, above every trivial baseline, and better by the margin."""
    from flows.glue import promote as promote_flow
    from tasks.glue.tasks import parse_task_list

    try:
        task_list = parse_task_list(tasks) if tasks else None
    except ValueError as exc:
        console.print(f"[bold red]Invalid input[/]: {exc}")
        raise typer.Exit(2) from exc
    out = promote_flow(name, margin=margin, tasks=task_list, spec_path=spec, version=version)
    style = "bold green" if out["promoted"] else "bold yellow"
    console.print(f"[{style}]{'promoted' if out['promoted'] else 'refused'}[/]: {out['reason']}")
    for moved in out["moved"]:
        console.print(f"  champion -> {moved}")


@app.command()
def pipeline(
    spec: Annotated[str, typer.Argument(help="Pipeline spec YAML (data_specs/pipeline/).")],
    stages: Annotated[str | None, typer.Option(help="Run only these stages, e.g. glue,promote.")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Start a new run even if the last one did not finish.")] = False,
) -> None:
    """Curate → tokenize + pretrain → GLUE → promote, as one resumable Prefect flow."""
    from data_specs.pipeline import STAGES

    try:
        from flows.pipeline import load_pipeline_spec

        load_pipeline_spec(spec)
        chosen = [s.strip() for s in stages.split(",") if s.strip()] if stages else None
        bad = sorted(set(chosen or []) - set(STAGES))
        if bad:
            raise ValueError(f"unknown stage(s) {bad}; expected some of {', '.join(STAGES)}")
    except (SpecError, ValueError) as exc:
        console.print(f"[bold red]Invalid input[/]: {exc}")
        raise typer.Exit(2) from exc
    from flows.pipeline import pipeline as pipeline_flow
    from tasks.pretrain.core import PreflightError

    from tasks.common.lock import OutputLocked

    try:
        summary = pipeline_flow(spec, stages=chosen, fresh=fresh)
    except (PreflightError, FileNotFoundError, OutputLocked) as exc:
        _refuse(exc)
    _where_to_look(summary)  # a partial run says so itself (the flow prints what is left)


def _refuse(exc: BaseException) -> None:
    """Print why the run cannot start (another run holds its folder, or the input cannot work) and exit 2."""
    from rich.markup import escape

    from tasks.common.lock import OutputLocked

    heading = "Output locked" if isinstance(exc, OutputLocked) else "Cannot run"
    console.print(f"[bold red]{heading}[/]: {escape(str(exc))}", soft_wrap=True)
    raise typer.Exit(2) from exc


def _running_services() -> dict[str, tuple[str, str]]:
    """Service name -> (URL, env.sh path) of the `lmpipe services` servers that run now, on the ports they use."""
    from tasks.services.processes import is_alive, read_info
    from tasks.services.servers import default_state_dir

    state = default_state_dir()
    out = {}
    for name in ("prefect", "mlflow"):
        info = read_info(state, name)
        if info is not None and info.get("ui_url") and is_alive(info["pid"]):
            out[name] = (info["ui_url"], str(state / "env.sh"))
    return out


def _where_to_look(summary: dict[str, Any]) -> None:
    """Per-stage times, then where to look: the two UIs and the champion with a snippet that loads it."""
    table = Table(title=f"pipeline {summary['name']} ({summary['fingerprint']})")
    for col in ("stage", "seconds", "result"):
        table.add_column(col, justify="right" if col == "seconds" else "left")
    for stage, out in summary["stages"].items():
        result = {"curate": lambda o: f"{o['kept']:,} documents → {o['output']}",
                  "pretrain": lambda o: f"{o['model_uri']} (version {o['version']}), {o['final_step']} steps "
                  + (f"continuing {o['init_from']}" if o.get("init_from") else "from random weights")
                  + (f", resumed from step {o['resumed_from_step']}" if o.get("resumed_from_step") else ""),
                  "glue": lambda o: f"GLUE score {o['glue_score'] * 100:.2f}",
                  "promote": lambda o: ("promoted: " if o["promoted"] else "refused: ") + o["reason"]}[stage](out)
        table.add_row(stage, f"{out.get('seconds', 0):.1f}" if stage in summary["timings"] else "skipped", result)
    console.print(table)
    say = partial(console.print, soft_wrap=True)  # commands and URIs stay on one line, copy-pastable
    prefect_api = os.environ.get("PREFECT_API_URL")
    say("[bold]Where to look[/]")
    running = _running_services()
    if prefect_api:
        say(f"  Prefect UI:  {prefect_api.rsplit('/api', 1)[0]}  (flow run tagged pipeline:{summary['name']})")
    elif "prefect" in running:
        say(f"  Prefect UI:  this run used a temporary server; `lmpipe services` runs one at {running['prefect'][0]}: "
            f"`source {running['prefect'][1]}` (PREFECT_API_URL={running['prefect'][0]}/api) to keep history there")
    else:
        say("  Prefect UI:  this run used a temporary server; keep history with `.venv/bin/lmpipe services up` "
            "(or `.venv/bin/prefect server start`) and export the PREFECT_API_URL it prints")
    uri = summary["tracking_uri"]
    if uri.startswith("http"):
        ui = uri
    elif "mlflow" in running:
        ui = (f"{running['mlflow'][0]} (`lmpipe services`; this run wrote {uri} directly: "
              f"`source {running['mlflow'][1]}` to log through the server)")
    else:
        ui = f".venv/bin/mlflow ui --backend-store-uri {uri} --port 5000"
    say(f"  MLflow UI:   {ui}")
    say(f"  Champion:    [bold]{summary['champion_uri']}[/]")
    first = next(iter((summary["stages"].get("glue") or {}).get("registered", {}).values()), None)
    prompt = "The river [MASK] flows." if summary["model_kind"] == "bert" else "The river"
    say("  Load it:\n"
        f"    import mlflow, pandas as pd\n"
        f"    mlflow.set_tracking_uri({uri!r})\n"
        f"    mlflow.pyfunc.load_model({summary['champion_uri']!r}).predict(pd.DataFrame({{'text': [{prompt!r}]}}))")
    if first:
        say(f"  Its GLUE models: {first.rsplit('-glue-', 1)[0]}-glue-<task>@champion, e.g. "
            f"{first.replace('@candidate', '@champion')}")


@app.command()
def serve(
    model_uri: Annotated[str, typer.Argument(help="models:/<name>@<alias>, models:/<name>/<version>, runs:/... "
                                                  "or a local MLflow model folder.")],
    port: Annotated[int, typer.Option(help="Port to listen on (0: a free one).")] = 5001,
    host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
) -> None:
    """Serve a registered model over REST (MLflow's scoring server: POST /invocations, GET /ping) until Ctrl-C."""
    from tasks.registry.serving import serve as serve_model
    from tasks.registry.tracking import default_tracking_uri

    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()

    def ready(url: str) -> None:
        console.print(f"Serving {model_uri} on {url} (POST {url}/invocations; Ctrl-C stops and removes the "
                      "downloaded copy)", soft_wrap=True)

    try:
        serve_model(model_uri, tracking_uri, host=host, port=port, on_ready=ready)
    except OSError as exc:  # port taken, address not on this machine
        console.print(f"[red]cannot listen on {host}:{port}:[/] {exc}")
        raise typer.Exit(2) from exc
    except Exception as exc:  # noqa: BLE001 - no such model/alias, not an MLflow model
        from mlflow.exceptions import MlflowException

        if isinstance(exc, (MlflowException, FileNotFoundError, ValueError)):
            console.print(f"[red]cannot serve {model_uri}:[/] {exc}", soft_wrap=True)
            raise typer.Exit(2) from exc
        raise


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


@app.command()
def gc(
    keep: Annotated[int, typer.Option(help="Finished runs kept per kind (spec name; GLUE task and seed).")] = 3,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan, delete nothing.")] = False,
    root: Annotated[list[str] | None, typer.Option(help="Another storage root to clean (e.g. a pretrain "
                                                        "scaling.storage_path); repeatable.")] = None,
) -> None:
    """Delete old finished runs' checkpoints and models: keep the KEEP newest finished runs of each kind, every
    run a registered version came from, and anything running or locked (tasks/common/retention.py)."""
    from tasks.common.retention import apply_plan, plan_gc
    from tasks.registry.tracking import default_tracking_uri

    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()
    try:
        roots, plan = plan_gc(keep, tracking_uri, root or [])
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from exc
    table = Table(title=f"lmpipe gc --keep {keep}" + (" (dry run)" if dry_run else ""), show_header=True)
    for col in ("action", "size", "folder", "why"):
        table.add_column(col, overflow="fold")
    for d in plan:
        table.add_row("[red]delete[/]" if d.action == "delete" else "keep", _size(d.size_bytes), d.path, d.reason)
    console.print(f"Storage roots: {', '.join(roots) or 'none found'} (registry: {tracking_uri})", soft_wrap=True)
    console.print(table)
    doomed = [d for d in plan if d.action == "delete"]
    total = sum(d.size_bytes for d in doomed)
    if dry_run:
        console.print(f"Would delete {len(doomed)} folder(s), {_size(total)}.")
        return
    report = apply_plan(plan)
    console.print(f"Deleted {len(report.deleted)} folder(s), {_size(report.freed_bytes)} freed"
                  + (f"; skipped {len(report.skipped)} that changed since planning" if report.skipped else "") + ".")


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
