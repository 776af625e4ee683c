"""`soul data`: build a training set from raw talking-human videos (the Soul-1M pipeline)."""

from __future__ import annotations

from pathlib import Path

import typer

from soul.cli.app import app, state

data_app = typer.Typer(
    name="data",
    help="Curate raw videos into an annotated, training-ready dataset (manifest.parquet + WebDataset shards).",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")


@data_app.command("annotate")
def annotate_cmd(
    inputs: list[Path] = typer.Argument(..., help="Video files or folders of videos."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (created; re-runs resume in it)."),
    engine: str = typer.Option("local", "--engine", help="local (process pool) or ray (Ray Data)."),
    workers: int = typer.Option(1, "--workers", "-w", help="Parallel workers (processes, or Ray CPUs)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML thresholds (see configs/data/default.yaml)."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="Join this Ray cluster instead of starting one."),
) -> None:
    """Probe, split into shots, filter and annotate every clip; write manifest.parquet and shards.

    Example: soul data annotate raw/ --out data/soul1m --workers 2
    Finished clips are skipped on a re-run, so an interrupted run just continues.
    """
    from rich.console import Console

    from soul.curation.config import load_config
    from soul.curation.runner import annotate

    cfg = load_config(config)
    console = Console(stderr=True, quiet=state.quiet)
    summary = annotate(inputs, out, cfg=cfg, engine=engine, workers=workers, ray_address=ray_address, progress=lambda p: console.print(f"done {p}"))
    typer.echo(
        f"{summary['clips']} clips ({summary['kept']} kept, {summary['dropped']} dropped) from {summary['sources']} sources "
        f"({summary['skipped_sources']} already done) in {summary['seconds']} s -> {summary['manifest']}"
    )


@data_app.command("inspect")
def inspect_cmd(
    out: Path = typer.Argument(..., help="A folder written by `soul data annotate` (or its manifest.parquet)."),
) -> None:
    """Counts per category and drop reason, and the spread of the main annotations."""
    from rich.console import Console
    from rich.table import Table

    from soul.curation.inspect import load_manifest, summarize

    s = summarize(load_manifest(out))
    console = Console()
    console.print(f"[bold]{s['clips']}[/] clips: {s['kept']} kept ({s['kept_hours'] * 60:.1f} min), {s['dropped']} dropped")
    t = Table(title="kept clips per category")
    t.add_column("category")
    t.add_column("clips", justify="right")
    for k, v in sorted(s["categories"].items()):
        t.add_row(k, str(v))
    console.print(t)
    if s["drop_reasons"]:
        t = Table(title="dropped clips per reason")
        t.add_column("stage: reason")
        t.add_column("clips", justify="right")
        for k, v in sorted(s["drop_reasons"].items(), key=lambda kv: -kv[1]):
            t.add_row(k, str(v))
        console.print(t)
    t = Table(title="distributions over kept clips")
    for col in ("annotation", "n", "min", "p25", "median", "p75", "max"):
        t.add_column(col, justify="right" if col != "annotation" else "left")
    for name, d in s["distributions"].items():
        t.add_row(name, str(d["n"]), *(f"{d[k]:.3g}" for k in ("min", "p25", "median", "p75", "max")))
    console.print(t)
