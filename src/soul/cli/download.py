"""`soul download`: fetch the official weights a preset needs into the Hugging Face cache."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from soul.cli.app import app, state


@app.command(
    help=(
        "Download the official weights a preset needs (Wan2.2-TI2V-5B diffusers backbone, text encoder, "
        "VAE, and the wav2vec2 audio encoder) with huggingface_hub into its cache. Needs network; "
        "fails within seconds without it. Re-running resumes.\n\n"
        "Examples:\n\n  soul download --preset wan22-ti2v-5b\n\n  soul download --component audio_encoder --cache-dir /data/hf"
    )
)
def download(
    preset: str = typer.Option("wan22-ti2v-5b", "--preset", "-p", help="Preset name or YAML path."),
    component: list[str] = typer.Option(None, "--component", "-c", help="Only these components (backbone, audio_encoder)."),
    cache_dir: Path = typer.Option(None, "--cache-dir", help="Hugging Face cache directory (default: HF_HOME's)."),
    endpoint: str = typer.Option(None, "--endpoint", envvar="HF_ENDPOINT", help="Hub endpoint (mirrors)."),
    json_out: bool = typer.Option(False, "--json", help="Print {component: path} as JSON."),
) -> None:
    from soul.config import load_preset
    from soul.models.download import download as fetch
    from soul.models.download import plan_downloads

    config = load_preset(preset)
    plans = plan_downloads(config, component or None)
    if not plans:
        typer.echo(f"preset {config.name} is built from its config with random weights: nothing to download")
        return
    paths: dict[str, str] = {}
    for plan in plans:
        if not state.quiet and not json_out:
            typer.echo(f"fetching {plan.component}: {plan.repo_id}")
        paths[plan.component] = str(fetch(plan, cache_dir=cache_dir, endpoint=endpoint))
    if json_out:
        typer.echo(json.dumps(paths, indent=2))
    else:
        for name, path in paths.items():
            typer.echo(f"{name}: {path}")
        if "backbone" in paths:
            typer.echo(f"generate with: soul generate --preset {config.name} --checkpoint {paths['backbone']} ...")
