"""The `lmpipe` command line.

    lmpipe curate SPEC [--workers N] [--runner threads|ray]
    lmpipe validate SPEC

Exit codes: 0 all inputs read; 1 the run finished but some inputs failed (listed); 2 bad spec.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from data_specs import SpecError, curate_fingerprint, load_curate_spec

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


@app.command()
def validate(spec: Annotated[str, typer.Argument(help="Path to a curate spec YAML.")]) -> None:
    """Validate a curate spec and print its fingerprint."""
    try:
        parsed = load_curate_spec(spec)
    except SpecError as exc:
        console.print(f"[bold red]Invalid spec[/]\n{exc}")
        raise typer.Exit(2) from exc
    console.print(f"{spec}: valid; fingerprint {curate_fingerprint(parsed)}; {len(parsed.sources)} source(s)")


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
