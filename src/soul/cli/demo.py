"""`soul demo`: a complete, scored generation on inputs Soul makes itself, so it runs anywhere, offline."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from soul.cli.app import app, state

MINI_MISSING_NOTE = "the trained miniature weights are not installed (docs/miniature.md), so the demo uses the tiny preset"
DEFAULT_SECONDS = 20.0
PROMPT = "a drawn person talking to the camera, head and shoulders"


def default_preset() -> tuple[str, str]:
    """The trained miniature model when its weights ship with the package, else the random tiny one."""
    from soul.models.shipped import has_shipped_weights

    return ("mini", "") if has_shipped_weights("mini") else ("tiny", MINI_MISSING_NOTE)


@app.command(
    help=(
        "Draw a new face, synthesise speech (or take --audio), animate it with the trained miniature "
        "model (20 s by default), and score the video: lip sync against this audio (lipsync_r) and "
        "against another clip's audio (lipsync_r_mismatched, ~0 when the mouth really follows the sound), "
        "identity and colour drift, flicker. Writes portrait.png, speech.wav, demo.mp4 and summary.json "
        "to --out. Needs no downloads.\n\n"
        "Examples:\n\n  soul demo\n\n  soul demo --audio speech.wav --seed 7 --out /tmp/demo --json\n\n"
        "  soul demo --preset mini-fast --seconds 60"
    )
)
def demo(
    audio: Path = typer.Option(None, "--audio", "-a", help="Speech to use instead of synthesised babble (cut to --seconds when given)."),
    seconds: float = typer.Option(None, "--seconds", help=f"Length in seconds (default {DEFAULT_SECONDS:.0f}, or the whole --audio)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the face, the speech and the sampling; faces and speech come from the held-out range (face_seed = 1,000,000 + seed), never from training."),
    out: Path = typer.Option(Path("outputs/demo"), "--out", help="Output directory."),
    preset: str = typer.Option(None, "--preset", help="mini (trained, the default when installed), mini-fast (distilled), or tiny (random weights)."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    import soundfile as sf

    from soul.cli.progress import step_progress
    from soul.errors import InputError
    from soul.jobs.generate import build_request, run_generate
    from soul.media.audio import MODEL_SAMPLE_RATE, load_audio
    from soul.miniature.portrait import HELD_OUT_SEED, draw_face, random_face
    from soul.miniature.speech import synthesize_babble

    note = ""
    if preset is None:
        preset, note = default_preset()
    if seconds is not None and not seconds > 0:
        raise InputError(f"--seconds {seconds}", "must be positive", f"e.g. --seconds {DEFAULT_SECONDS:.0f}")
    out.mkdir(parents=True, exist_ok=True)
    face_seed = HELD_OUT_SEED + seed  # a person (and babble) no training clip was drawn from
    face = random_face(face_seed)
    portrait = out / "portrait.png"
    draw_face(face, size=512).save(portrait)
    speech = out / "speech.wav"
    if audio is None:
        sf.write(speech, synthesize_babble(seconds or DEFAULT_SECONDS, MODEL_SAMPLE_RATE, seed=face_seed), MODEL_SAMPLE_RATE)
    elif seconds is not None:
        samples = load_audio(audio, MODEL_SAMPLE_RATE, normalize=False).samples
        sf.write(speech, samples[: int(round(seconds * MODEL_SAMPLE_RATE))], MODEL_SAMPLE_RATE)
    else:
        speech = audio
    request = build_request(image=portrait, audio=[speech], output=out / "demo.mp4", preset=preset, seed=seed, prompt=PROMPT)
    with step_progress("sampling", enabled=not (state.quiet or json_out)) as progress:
        result = run_generate(request, progress=progress)
    scores = score_demo(result.output, face, speech, seed)
    weights = result.info.get("weights", preset)
    summary = {
        **result.as_dict(),
        **scores,
        "portrait": str(portrait),
        "audio": str(speech),
        "face_seed": face_seed,
        "face": face.as_dict(),
        "weights": weights,
        "note": "; ".join(n for n in (note, *result.info["warnings"]) if n),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=_jsonable))
    if json_out:
        typer.echo(json.dumps(summary, indent=2, default=_jsonable))
        return
    typer.echo(f"portrait: {portrait}\naudio:    {speech}\nvideo:    {result.output} ({result.num_frames} frames, {result.duration:.2f} s, {result.seconds:.1f} s to make)")
    typer.echo(
        f"lip sync: r = {scores['lipsync_r']:.2f} with this audio (lag {scores['lipsync_lag']} frames), "
        f"r = {scores['lipsync_r_mismatched']:.2f} with other clips' audio (mean of 4)"
    )
    drift = scores["drift"]
    if len(drift["start_seconds"]) > 1:
        typer.echo(f"drift vs the first {drift['window_seconds']:.0f} s: identity {drift['identity_end']:.4f}, colour {drift['colour_end']:.2f} dE (last window)")
    typer.echo(f"flicker: {scores['flicker']:.3f}")
    if note:
        typer.echo(note)


def score_demo(video_path: Path, face: object, speech: Path, seed: int) -> dict:
    """The demo's scores, read back from the written MP4 as a user (or the benchmark) would see it."""
    from soul.bench.metrics import clip_from_frames, flicker
    from soul.media.audio import MODEL_SAMPLE_RATE, load_audio
    from soul.media.video import read_video
    from soul.miniature.drift import drift_curves
    from soul.miniature.lipsync import score_lipsync, score_mismatched

    reader = read_video(video_path)
    frames = reader.read_all()
    fps = float(reader.fps)
    samples = load_audio(speech, MODEL_SAMPLE_RATE).samples
    seconds = frames.shape[0] / fps
    own = score_lipsync(frames, face, samples, fps, skip_frames=1)  # frame 0 is the portrait itself
    mismatched = score_mismatched(frames, face, fps, seed=seed, skip_frames=1)  # other clips' audio
    window = 10.0 if seconds >= 20.0 else max(1.0, seconds / 2)
    return {
        "lipsync_r": round(own.r, 4),
        "lipsync_lag": own.lag,
        "lipsync_r_mismatched": round(mismatched, 4),
        "drift": drift_curves(frames, face, fps, window_seconds=window),
        "flicker": round(flicker(clip_from_frames(list(frames), fps))["flicker"], 4),
    }


def _jsonable(value: object) -> object:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
