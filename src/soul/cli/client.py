"""`soul submit`, `soul jobs`, `soul fetch`: the command line of a `soul serve` server (soul.client)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from soul.cli.app import app, state

DEFAULT_SERVER = "http://127.0.0.1:8000"  # = soul.client.DEFAULT_SERVER (httpx is imported only when a command runs)
SERVER_HELP = "Base URL of the `soul serve` server."
TOKEN_HELP = "Bearer token of the server (its --token)."


@app.command(
    help=(
        "Send a job to a `soul serve` server: the portrait and one audio file per person are uploaded, "
        "the server checks them as `soul generate` would (a bad input is refused at once) and queues "
        "the job. Prints its id; with --wait, follows it to the end (progress on stderr) and with "
        "--output also downloads the MP4.\n\n"
        "Options the server takes that have no flag here go through --set NAME=VALUE "
        "(steps, sigmas, sampler, guidance, text_scale, audio_scale, vae, height, width, fps, "
        "chunk_frames, motion_latents, codebook, codebook_threshold, codebook_blend, negative_prompt).\n\n"
        "Examples:\n\n"
        "  soul submit me.png hello.wav --prompt 'a woman talking' --wait -o out.mp4\n\n"
        "  soul submit duo.png a.wav b.wav --preset mini-fast --set height=64 --set width=64 --server http://127.0.0.1:8000"
    )
)
def submit(
    image: Path = typer.Argument(..., help="Portrait image."),
    audio: list[Path] = typer.Argument(..., help="Speech or singing: one file per person."),
    prompt: str = typer.Option("", "--prompt", "-p", help="What the video shows."),
    preset: str | None = typer.Option(None, "--preset", help="Model preset (default: the server's)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (default 0)."),
    fields: list[str] = typer.Option(None, "--set", help="Another field of POST /v1/jobs, NAME=VALUE; repeatable."),
    server: str = typer.Option(DEFAULT_SERVER, "--server", help=SERVER_HELP),
    token: str | None = typer.Option(None, "--token", envvar="SOUL_TOKEN", help=TOKEN_HELP, show_envvar=True),
    wait: bool = typer.Option(False, "--wait", help="Follow the job until it ends; exit 1 if it failed or was cancelled."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Download the finished MP4 here (implies --wait)."),
    timeout: float | None = typer.Option(None, "--timeout", help="With --wait: give up waiting after this many seconds (the job goes on)."),
    json_out: bool = typer.Option(False, "--json", help="Print the job as JSON (the final state with --wait)."),
) -> None:
    from soul.client import SoulClient, job_summary

    options = _parse_fields(fields or [])
    if output is not None and output.suffix.lower() != ".mp4":
        from soul.errors import InputError

        raise InputError(output, "output must be an .mp4 file", "name the output like result.mp4")
    with SoulClient(server, token) as client:
        job = client.submit(image, audio, prompt, preset=preset, seed=seed, **options)
        if not (wait or output is not None):
            if json_out:
                typer.echo(json.dumps(job, indent=2))
            elif not state.quiet:
                typer.echo(f"submitted job {job['id']} ({job.get('status', 'queued')}) to {server}")
            else:
                typer.echo(job["id"])
            return
        job = _follow(client, job, timeout, show=not (state.quiet or json_out))
        if job["status"] == "succeeded" and output is not None:
            client.fetch_video(job["id"], output)
            job = {**job, "output": str(output)}
        if json_out:
            typer.echo(json.dumps(job, indent=2))
        elif not state.quiet or job["status"] != "succeeded":
            typer.echo(job_summary(job) + (f"; wrote {output}" if "output" in job else ""))
        _exit_for(job)


@app.command(help="List the jobs of a `soul serve` server, newest first.\n\nExample: soul jobs --limit 5")
def jobs(
    server: str = typer.Option(DEFAULT_SERVER, "--server", help=SERVER_HELP),
    token: str | None = typer.Option(None, "--token", envvar="SOUL_TOKEN", help=TOKEN_HELP, show_envvar=True),
    limit: int = typer.Option(20, "--limit", min=1, help="How many jobs to show."),
    offset: int = typer.Option(0, "--offset", min=0, help="Skip this many of the newest jobs."),
    json_out: bool = typer.Option(False, "--json", help='Print the answer as JSON: {"jobs": [...], "total": n}.'),
) -> None:
    from soul.client import SoulClient

    with SoulClient(server, token) as client:
        page = client.jobs(limit=limit, offset=offset)
    if json_out:
        typer.echo(json.dumps(page, indent=2))
        return
    rows = page.get("jobs", [])
    if not rows:
        typer.echo(f"no jobs (total {page.get('total', 0)})")
        return
    typer.echo(_table(rows))
    if page.get("total", len(rows)) > offset + len(rows):
        typer.echo(f"({len(rows)} of {page['total']}; --offset {offset + len(rows)} for more)")


@app.command(help="Download the MP4 of a finished job of a `soul serve` server.\n\nExample: soul fetch 3f2a... out.mp4")
def fetch(
    job_id: str = typer.Argument(..., metavar="ID", help="The job's id (soul jobs lists them)."),
    output: Path = typer.Argument(..., metavar="OUT.mp4", help="Where to write the MP4 (written atomically)."),
    server: str = typer.Option(DEFAULT_SERVER, "--server", help=SERVER_HELP),
    token: str | None = typer.Option(None, "--token", envvar="SOUL_TOKEN", help=TOKEN_HELP, show_envvar=True),
) -> None:
    from soul.client import SoulClient

    with SoulClient(server, token) as client:
        path = client.fetch_video(job_id, output)
    if not state.quiet:
        typer.echo(f"wrote {path} ({path.stat().st_size} bytes)")


def _parse_fields(items: list[str]) -> dict[str, str]:
    from soul.errors import InputError

    options: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise InputError("--set", f"{item!r}", "write NAME=VALUE, e.g. --set steps=4")
        if name in ("image", "audio", "prompt", "preset", "seed"):
            raise InputError("--set", f"{name} has its own argument", f"use the {name} argument or option instead")
        options[name] = value
    return options


def _follow(client: Any, job: dict[str, Any], timeout: float | None, show: bool) -> dict[str, Any]:
    """Wait for the job, a progress bar on stderr (chunks) while it runs."""
    if not show:
        return client.wait(job["id"], timeout=timeout)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"{job['id']} {job.get('status', 'queued')}", total=None)

        def update(current: dict[str, Any]) -> None:
            progress = current.get("progress") or {}
            bar.update(task, description=f"{current['id']} {current.get('status')}", completed=progress.get("chunks_done", 0), total=progress.get("chunks_total"))

        return client.wait(job["id"], timeout=timeout, on_progress=update)


def _exit_for(job: dict[str, Any]) -> None:
    from soul.errors import RuntimeFailure

    if job["status"] == "failed":
        raise RuntimeFailure(f"job {job['id']} failed: {job.get('error') or 'no reason given'}")
    if job["status"] == "cancelled":
        raise RuntimeFailure(f"job {job['id']} was cancelled")


def _table(rows: list[dict[str, Any]]) -> str:
    import time

    def line(job: dict[str, Any]) -> list[str]:
        progress = job.get("progress") or {}
        done, total = progress.get("chunks_done", 0), progress.get("chunks_total")
        created = job.get("created")
        prompt = (job.get("prompt") or "").replace("\n", " ")
        return [
            str(job.get("id", "")), str(job.get("status", "")), str(job.get("preset", "")),
            f"{done}/{total}" if total else "-",
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created)) if isinstance(created, (int, float)) else "-",
            prompt if len(prompt) <= 40 else prompt[:39] + "…",
        ]

    table = [["ID", "STATUS", "PRESET", "CHUNKS", "CREATED", "PROMPT"], *(line(j) for j in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in table)
