"""`soul generate`: portrait + speech (+ prompt) to an MP4 that carries the speech."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from soul.cli.app import app, state
from soul.config import DEFAULT_PRESET


@app.command(
    help=(
        "Animate a portrait with speech. The output MP4 (H.264 + AAC) carries the input audio and "
        "lasts exactly as long, to the frame. Several --audio files drive several people (left to "
        "right as found on the portrait, or bound to --mask images).\n\n"
        "Long audio (up to --max-duration, 30 min by default) is made in chunks: every chunk sees the "
        "portrait again plus the last --motion-latents latent frames of the previous one, and frames "
        "are written as chunks finish. Finished chunks are saved in OUT.mp4.soul-partial/: if the "
        "job dies, run the same command again and it continues where it stopped (--no-resume starts "
        "over). The output file only appears when the video is complete.\n\n"
        "Sampling options left out (--steps, --sigmas, --sampler, --guidance, --vae, scales) take the "
        "preset's values, so `--preset mini-fast` is the whole fast path in one flag.\n\n"
        "Examples:\n\n"
        "  soul generate --image me.jpg --audio hello.wav --prompt 'a woman talking' -o out.mp4\n\n"
        "  soul generate --preset wan22-ti2v-5b --checkpoint ~/weights/soul --image host.png "
        "--audio a.wav --audio b.wav -o duo.mp4\n\n"
        "  soul generate --preset wan22-ti2v-5b-fast --checkpoint ~/weights/soul-distilled --image me.jpg "
        "--audio hello.wav -o fast.mp4\n\n"
        "Several processes (GPUs) share one video with --parallel, launched by torchrun:\n\n"
        "  torchrun --nproc_per_node 4 -m soul generate --device cuda --parallel ulysses=2,cfg=2 ..."
    )
)
def generate(
    image: Path = typer.Option(..., "--image", "-i", help="Portrait image (any Pillow format)."),
    audio: list[Path] = typer.Option(..., "--audio", "-a", help="Speech or singing (WAV/FLAC/MP3/OGG/M4A or a video); repeat for several people."),
    output: Path = typer.Option(..., "--output", "-o", help="Output .mp4 path."),
    prompt: str = typer.Option("", "--prompt", "-p", help="What the video shows (scene, framing, emotion)."),
    negative_prompt: str = typer.Option("", "--negative-prompt", help="What to steer away from."),
    preset: str = typer.Option(DEFAULT_PRESET, "--preset", help="Model preset: wan22-ti2v-5b (the default) / wan22-ti2v-5b-fast (need --checkpoint), mini / mini-fast (shipped miniature weights, drawn faces only), tiny (random weights: noise, for tests), or a YAML file."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Directory in the Wan2.2-TI2V-5B-Diffusers layout, plus Soul's layers."),
    height: int = typer.Option(None, "--height", help="Output height in px (multiple of 32 for the 5B model)."),
    width: int = typer.Option(None, "--width", help="Output width in px."),
    fps: int = typer.Option(None, "--fps", help="Frames per second (preset default)."),
    steps: int = typer.Option(None, "--steps", help="Sampling steps (preset default)."),
    sigmas: str = typer.Option(None, "--sigmas", help="Explicit noise levels, high to low, comma-separated (e.g. 1,0.75,0.5,0.25 for a 4-step distilled student); overrides --steps (preset default)."),
    sampler: str | None = typer.Option(None, "--sampler", help="euler, unipc (official Wan2.2) or x0 (x0-predict + re-noise, for step-distilled students) (preset default)."),
    guidance_mode: str | None = typer.Option(None, "--guidance", help="on: three-pass text/audio guidance; off: one conditional pass per step (CFG-distilled students) (preset default)."),
    text_scale: float = typer.Option(None, "--text-scale", help="Text guidance scale (1 = off)."),
    audio_scale: float = typer.Option(None, "--audio-scale", help="Audio guidance scale (1 = off)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same video."),
    mask: list[Path] = typer.Option(None, "--mask", help="One mask image per --audio (white = that person)."),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cuda or cuda:1."),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16."),
    cpu_offload: bool = typer.Option(False, "--cpu-offload", help="Keep idle models on the CPU (small GPUs)."),
    chunk_frames: int = typer.Option(None, "--chunk-frames", help="Frames the model makes at once, 4k+1 (preset default)."),
    motion_latents: int = typer.Option(None, "--motion-latents", help="Latent frames (4 video frames each) of the previous chunk that start the next one (default 2)."),
    codebook: str = typer.Option(None, "--codebook", help="on|off: pull drifted motion frames back toward the first chunk's look before reuse (default on)."),
    codebook_threshold: float = typer.Option(None, "--codebook-threshold", help="Cosine similarity below which a latent patch counts as drifted (default: from the first chunk)."),
    vae: str | None = typer.Option(None, "--vae", help="full: the Wan2.2 decoder; light: the distilled causal decoder (many times faster) (preset default)."),
    codebook_blend: float = typer.Option(None, "--codebook-blend", help="How far a drifted patch moves toward its codebook entry: 1 replaces (default), 0 leaves it."),
    max_duration: float = typer.Option(None, "--max-duration", help="Longest audio accepted, in seconds (default 1800)."),
    first_chunk_frames: int = typer.Option(None, "--first-chunk-frames", help="A shorter first chunk, 4k+1 frames (default: --chunk-frames). With --audio-lookahead and --audio-norm causal it reproduces a `soul live` session frame for frame."),
    audio_lookahead: float = typer.Option(None, "--audio-lookahead", help="Seconds of audio past a chunk that its features may see (default: the encoder's whole context, 2 s)."),
    audio_norm: str = typer.Option(None, "--audio-norm", help="track: normalise the audio encoder's input by the whole track (default); causal: by the audio up to each chunk, as `soul live` must."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue an interrupted run of the same command from its last finished chunk."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary (with one record per chunk)."),
    parallel: str = typer.Option(None, "--parallel", help="ulysses=U,cfg=C: share the video among the U*C processes torchrun launched (U split each step's tokens, C its guidance passes); the frames are those of one process, rank 0 writes them. CUDA ranks use NCCL (--device cuda), CPU ranks gloo."),
) -> None:
    import os
    import warnings

    from soul.cli.progress import step_progress
    from soul.errors import InputError, SoulWarning
    from soul.jobs.generate import build_request, run_generate
    from soul.parallel.spec import ParallelSpec

    spec = None if parallel is None else ParallelSpec.parse(parallel)
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if spec is None and launched > 1:  # N copies of one job would all write the same file
        raise InputError("--parallel", f"torchrun launched {launched} processes but --parallel is not given", f"add --parallel ulysses={launched} (or cfg=..., ulysses x cfg = {launched})")
    if spec is not None and int(os.environ.get("RANK", "0")) != 0:
        # Every rank runs the same job; rank 0 alone speaks (progress, warnings, the summary).
        state.quiet = True
        json_out = False
        warnings.simplefilter("ignore", SoulWarning)

    if codebook not in (None, "on", "off"):
        raise InputError("--codebook", f"{codebook!r}", "use --codebook on or --codebook off")
    if guidance_mode not in (None, "on", "off"):
        raise InputError("--guidance", f"{guidance_mode!r}", "use --guidance on or --guidance off")
    sigma_list = None
    if sigmas is not None:
        try:
            sigma_list = [float(v) for v in sigmas.split(",") if v.strip()]
        except ValueError:
            raise InputError("--sigmas", f"{sigmas!r}", "give comma-separated numbers, e.g. 1,0.75,0.5,0.25") from None

    request = build_request(
        image=image, audio=audio, output=output, prompt=prompt, negative_prompt=negative_prompt, preset=preset,
        checkpoint=checkpoint, height=height, width=width, fps=fps, steps=steps, text_scale=text_scale,
        audio_scale=audio_scale, sigmas=sigma_list, sampler=sampler,
        guidance=None if guidance_mode is None else guidance_mode == "on", seed=seed, masks=mask or [], device=device, dtype=dtype, cpu_offload=cpu_offload,
        chunk_frames=chunk_frames, motion_latents=motion_latents, codebook=None if codebook is None else codebook == "on",
        codebook_threshold=codebook_threshold, codebook_blend=codebook_blend, max_duration=max_duration, resume=resume, vae=vae,
        first_chunk_frames=first_chunk_frames, audio_lookahead=audio_lookahead, audio_norm=audio_norm,
    )
    with step_progress("sampling", enabled=not (state.quiet or json_out)) as progress:
        result = run_generate(request, progress=progress, parallel=spec)
    if json_out:
        typer.echo(json.dumps(result.as_dict(), indent=2, default=str))
    elif not state.quiet:
        typer.echo(f"wrote {result.output}: {result.num_frames} frames at {result.fps} fps ({result.duration:.2f} s, audio {result.audio_duration:.2f} s) in {result.seconds:.1f} s")
