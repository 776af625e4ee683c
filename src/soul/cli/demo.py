"""`soul demo`: a complete generation on inputs Soul makes itself, so it runs anywhere, offline."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from soul.cli.app import app, state

RANDOM_WEIGHTS_NOTE = (
    "note: the tiny preset has RANDOM weights, so the video shows noise-like motion, not a talking face; "
    "it proves the whole path (face, speech, audio encoder, diffusion transformer, VAE, MP4) runs end to end."
)


@app.command(
    help=(
        "Draw a new face, synthesise speech (or take --audio), and animate it with the tiny preset, "
        "writing portrait.png, speech.wav, demo.mp4 and summary.json to --out. Needs no downloads.\n\n"
        "Examples:\n\n  soul demo\n\n  soul demo --audio speech.wav --seed 7 --out /tmp/demo --json"
    )
)
def demo(
    audio: Path = typer.Option(None, "--audio", "-a", help="Speech to use instead of synthesised babble."),
    seconds: float = typer.Option(None, "--seconds", help="Length of synthesised speech (default: one chunk of the preset)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the face, the speech and the sampling."),
    out: Path = typer.Option(Path("outputs/demo"), "--out", help="Output directory."),
    preset: str = typer.Option("tiny", "--preset", help="Preset to render with."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    import soundfile as sf

    from soul.cli.progress import step_progress
    from soul.config import load_preset
    from soul.errors import InputError
    from soul.generate import build_request, run_generate
    from soul.miniature.portrait import draw_face, random_face
    from soul.miniature.speech import synthesize_babble

    config = load_preset(preset)
    chunk_seconds = (config.sampling.chunk_frames - 1) / config.sampling.fps
    if seconds is not None and not 0 < seconds <= chunk_seconds:
        raise InputError(f"--seconds {seconds}", f"must be in (0, {chunk_seconds:.2f}] for one chunk of preset {preset}", f"use --seconds {chunk_seconds:.0f}")
    out.mkdir(parents=True, exist_ok=True)
    face = random_face(seed)
    portrait = out / "portrait.png"
    draw_face(face, size=512).save(portrait)
    if audio is None:
        speech = out / "speech.wav"
        sf.write(speech, synthesize_babble(seconds or chunk_seconds, 16_000, seed=seed), 16_000)
    else:
        speech = audio
    request = build_request(
        image=portrait, audio=[speech], output=out / "demo.mp4", preset=preset, seed=seed,
        prompt="a person talking to the camera, head and shoulders, plain background",
    )
    with step_progress("sampling", enabled=not (state.quiet or json_out)) as progress:
        result = run_generate(request, progress=progress)
    summary = {
        **result.as_dict(),
        "portrait": str(portrait),
        "audio": str(speech),
        "face": face.as_dict(),
        "weights": "random" if preset == "tiny" else preset,
        "note": RANDOM_WEIGHTS_NOTE if preset == "tiny" else "",
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    if json_out:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    typer.echo(f"portrait: {portrait}\naudio:    {speech}\nvideo:    {result.output} ({result.num_frames} frames, {result.duration:.2f} s, {result.seconds:.1f} s to make)")
    if preset == "tiny":
        typer.echo(RANDOM_WEIGHTS_NOTE)
