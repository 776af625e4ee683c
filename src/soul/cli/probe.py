"""`soul probe`: what Soul sees of each input, checked by the validation generation uses."""

from __future__ import annotations

import json
import math
import sys
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from soul.cli.app import app, state
from soul.errors import InputError


class ProbeKind(str, Enum):
    auto = "auto"
    image = "image"
    audio = "audio"
    video = "video"


def _clean(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@app.command(
    help=(
        "Describe inputs the way generation will read them: images (size after EXIF rotation), audio "
        "(format, channels, rate, duration, loudness) and video (fps, frames, size, audio track). "
        "Exits 2 if any input would be rejected.\n\n"
        "Examples:\n\n  soul probe portrait.jpg speech.wav\n\n  soul probe --as audio interview.mp4 --json"
    )
)
def probe(
    files: list[Path] = typer.Argument(..., help="Images, audio or video files to inspect."),
    as_kind: ProbeKind = typer.Option(ProbeKind.auto, "--as", help="Read every file as this kind (default: by extension)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object: {'inputs': [...], 'errors': [...]}."),
) -> None:
    from soul.media.probe import probe_file

    results: list[dict] = []
    errors: list[dict] = []
    for path in files:
        try:
            info = probe_file(path, None if as_kind is ProbeKind.auto else as_kind.value)
            results.append({k: _clean(v) for k, v in info.items()})
        except InputError as err:
            errors.append({"path": str(path), "error": str(err)})
    if json_out:
        print(json.dumps({"inputs": results, "errors": errors}, indent=2))
    else:
        console = Console()
        for info in results:
            console.print(f"[bold]{info['path']}[/bold] ({info['kind']})", soft_wrap=True)
            table = Table(show_header=False)
            for key, value in info.items():
                if key not in ("path", "kind"):
                    table.add_row(key, str(value))
            console.print(table)
    for err in errors:
        print(f"error: {err['error']}", file=sys.stderr)
    if errors:
        raise typer.Exit(2)
