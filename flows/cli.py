"""The `lmpipe` command line.

    lmpipe curate SPEC [--workers N] [--runner threads|ray]
    lmpipe tokenize SPEC
    lmpipe pretrain SPEC [--new-run]
    lmpipe validate SPEC

Exit codes: 0 success; 1 the run finished but some inputs failed (curate) or the job failed (pretrain);
2 bad spec, or a spec that cannot run (preflight).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

import yaml

from data_specs import SpecError, curate_fingerprint, load_curate_spec, load_pretrain_spec

app = typer.Typer(add_completion=False, no_args_is_help=True, help="lmpipe: raw text to a registered language model.")
console = Console()


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


def _is_pretrain_spec(path: str) -> bool:
    try:
        raw = yaml.safe_load(open(path, encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(raw, dict) and "model" in raw


@app.command()
def validate(spec: Annotated[str, typer.Argument(help="Path to a curate or pretrain spec YAML.")]) -> None:
    """Validate a curate or pretrain spec and print its fingerprint."""
    try:
        if _is_pretrain_spec(spec):
            from flows.pretrain import pretrain_fingerprint

            pre = load_pretrain_spec(spec)
            console.print(f"{spec}: valid pretrain spec; fingerprint {pretrain_fingerprint(pre)}; "
                          f"{pre.model.kind}/{pre.model.preset}, {pre.scaling.num_workers} worker(s)")
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

    try:
        manifest = tokenize_flow(spec)
    except PreflightError as exc:
        console.print(f"[bold red]Cannot run[/]: {exc}")
        raise typer.Exit(2) from exc
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

    try:
        summary = pretrain_flow(spec, new_run=new_run)
    except PreflightError as exc:
        console.print(f"[bold red]Cannot run[/]: {exc}")
        raise typer.Exit(2) from exc
    m = summary["metrics"]
    console.print(f"trained {summary['final_step']} steps"
                  + (f" (resumed from step {summary['resumed_from_step']})" if summary["resumed_from_step"] else "")
                  + "; " + ", ".join(f"{k} {v:.4g}" for k, v in m.items() if isinstance(v, float)))
    console.print(f"MLflow run {summary['run_id']} at {summary['tracking_uri']}")
    console.print(f"registered model: [bold]{summary['model_uri']}[/] (version {summary['version']})")


@app.command()
def curate(
    spec: Annotated[str, typer.Argument(help="Path to a curate spec YAML (see data_specs/curate/).")],
    workers: Annotated[int | None, typer.Option(help="Override run.workers (results do not change).")] = None,
    runner: Annotated[str | None, typer.Option(help="Override run.task_runner: threads or ray.")] = None,
) -> None:
    """Curate a corpus: read, clean, deduplicate and shard the spec's sources."""
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

    manifest = curate_flow(spec)
    _summary(manifest)
    if manifest["failed_inputs"]:
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
