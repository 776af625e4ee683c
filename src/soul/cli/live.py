"""`soul live`: a portrait animated by audio as it arrives, written as a live stream (fragmented MP4)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from soul.cli.app import app, state


@app.command(
    help=(
        "Animate a portrait live: audio is read at real-time pace, as a microphone would deliver it, "
        "and the video is made in short chunks as soon as their audio (plus --audio-lookahead) is in, "
        "then written as a fragmented MP4 that plays while it grows (the stream a browser gets from "
        "`soul serve`'s live page). One line per chunk gives its latency: from the arrival of the last "
        "audio it waited for to its frames leaving the encoder.\n\n"
        "--json prints first_frame_latency_s (the first audio sample spoken -> the first frames out), realtime_factor "
        "(seconds of video made per second spent making them: at least 1 keeps up with speech) and "
        "the latency distribution.\n\n"
        "The same frames come from `soul generate` with the session's layout: --chunk-frames, "
        "--first-chunk-frames, --audio-lookahead and --audio-norm causal (docs/live.md).\n\n"
        "Example:\n\n"
        "  soul live --image face.png --audio speech.wav --realtime -o live.mp4"
    )
)
def live(
    image: Path = typer.Option(..., "--image", "-i", help="Portrait image."),
    audio: Path = typer.Option(..., "--audio", "-a", help="Speech to stream (any audio file, or a video's sound)."),
    output: Path = typer.Option(None, "--output", "-o", help="The live stream: a fragmented .mp4, written as it is made."),
    prompt: str = typer.Option("", "--prompt", "-p", help="What the video shows."),
    preset: str = typer.Option("mini-fast", "--preset", help="Model preset (default mini-fast: the distilled miniature model; drawn faces only)."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Checkpoint directory for presets without shipped weights."),
    realtime: bool = typer.Option(True, "--realtime/--as-fast-as-possible", help="Deliver the audio at real-time pace (default), or as fast as the session takes it."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    chunk_frames: int = typer.Option(None, "--chunk-frames", help="Frames the model makes at once, 4k+1 (default 13: 4 new frames after 2 motion latents)."),
    first_chunk_frames: int = typer.Option(None, "--first-chunk-frames", help="Frames of the first chunk, 4k+1 (default 5: the first frames need the least audio)."),
    audio_lookahead: float = typer.Option(None, "--audio-lookahead", help="Seconds of audio past a chunk its features may see (default 0.25); each is a second of latency."),
    motion_latents: int = typer.Option(None, "--motion-latents", help="Latent frames of the previous chunk that start the next (default 2)."),
    codebook: str = typer.Option(None, "--codebook", help="on|off: drift control of the motion frames (default on)."),
    piece_ms: float = typer.Option(20.0, "--piece-ms", help="Milliseconds of audio per delivered piece."),
    max_seconds: float = typer.Option(None, "--max-seconds", help="Stream only the first N seconds of the audio."),
    device: str = typer.Option("cpu", "--device", help="torch device."),
    json_out: bool = typer.Option(False, "--json", help="Print the session's summary as JSON (no per-chunk lines)."),
) -> None:
    from soul.errors import InputError
    from soul.jobs.live import build_live_request, run_live_file

    if codebook not in (None, "on", "off"):
        raise InputError("--codebook", f"{codebook!r}", "use --codebook on or --codebook off")
    if not audio.exists():
        raise InputError(audio, "audio file not found", "check the path")
    request = build_live_request(
        image=image, prompt=prompt, preset=preset, checkpoint=checkpoint, seed=seed, chunk_frames=chunk_frames,
        first_chunk_frames=first_chunk_frames, audio_lookahead=audio_lookahead, motion_latents=motion_latents,
        codebook=None if codebook is None else codebook == "on", device=device,
    )
    talk = not (state.quiet or json_out)

    def line(record: dict[str, Any]) -> None:
        if talk:
            typer.echo(
                f"chunk {record['index']:4d}: frames {record['first_frame']}-{record['first_frame'] + record['frames'] - 1} "
                f"latency {record['latency_s'] * 1000:6.0f} ms (compute {record['compute_s'] * 1000:5.0f} ms)"
            )

    summary = run_live_file(request, audio, output, realtime=realtime, piece_seconds=piece_ms / 1000.0, on_chunk=line, max_seconds=max_seconds)
    summary["output"] = None if output is None else str(output)
    if json_out:
        typer.echo(json.dumps(summary, indent=2, default=str))
    elif not state.quiet:
        lat = summary["chunk_latency_s"]
        typer.echo(
            f"{summary['video_seconds']:.2f} s of video in {summary['chunks']} chunks; first frame after "
            f"{summary['first_frame_latency_s']} s; realtime factor {summary['realtime_factor']}; chunk latency "
            f"p50 {lat['p50']} s, p99 {lat['p99']} s" + (f"; wrote {output}" if output else "")
        )
