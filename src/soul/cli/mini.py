"""`soul mini`: the miniature world's tools (docs/miniature.md): drawn data, the mini VAE, shipping.

The steps that make the shipped `mini` weights, in order: `clips` (drawn talking clips as shards),
`train-vae` (the small Wan2.2-layout VAE), `assemble` (pipeline directory = preset + trained VAE;
`soul train` starts from it), `export` (a training run -> pipeline directory) and `pack` (-> the
float16 files in soul/models/weights/).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from soul.cli.app import app, state

if TYPE_CHECKING:  # imported where used: `soul mini --help` stays free of numpy and audio I/O
    from soul.miniature.speech_pool import SpeechPool

mini_app = typer.Typer(
    name="mini",
    help=(
        "The miniature world (docs/miniature.md): drawn talking clips with a known lip-sync truth, "
        "the small VAE, and the steps that turn a training run into shipped weights.\n\n"
        "The whole recipe, in order:\n\n"
        "  soul mini clips runs/mini-data --clips 512 --seconds 3\n\n"
        "  soul mini train-vae runs/mini-vae --minutes 25\n\n"
        "  soul mini assemble runs/mini-vae/vae runs/mini-init\n\n"
        "  soul train configs/train/mini.yaml\n\n"
        "  soul mini export runs/mini-init runs/train-mini runs/mini-export\n\n"
        "  soul mini pack runs/mini-export --info runs/mini-info.json"
    ),
    no_args_is_help=True,
)
app.add_typer(mini_app, name="mini")

# `train-vae` defaults: VAETrainConfig's (soul.miniature.vae_trainer), written out so --help shows
# them without importing torch; tests/test_cli_mini.py checks they still agree.
VAE_STEPS = 4000
VAE_POOL_CLIPS = 256
VAE_BATCH_SIZE = 4
VAE_LR = 3e-4
VAE_EVAL_EVERY = 250
VAE_WINDOW = 5
VAE_EVAL_FRAMES = 17
VAE_DECODE_FROM = "mean"
VAE_MOUTH_WEIGHT = 4.0
VAE_TEMPORAL_WEIGHT = 0.0
VAE_FRAMINGS = ("close-up", "mixed", "both")
VAE_TRAINABLE = ("all", "decoder")
NO_LIMIT_MINUTES = 1e9
DEFAULT_WEIGHTS_NAME = "mini"  # soul.pipelines.shipped.DEFAULT_NAME


def _at_least(flag: str, value: float, low: float, example: str) -> None:
    from soul.errors import InputError

    if not value >= low:
        raise InputError(f"{flag} {value:g}", f"must be at least {low:g}", f"e.g. {flag} {example}")


def _positive(flag: str, value: float, example: str) -> None:
    from soul.errors import InputError

    if not value > 0:
        raise InputError(f"{flag} {value:g}", "must be positive", f"e.g. {flag} {example}")


def _directory(path: Path, what: str, fix: str, needs: str | None = None) -> None:
    from soul.errors import InputError

    if not path.is_dir():
        raise InputError(path, f"{what} not found" if not path.exists() else f"is not a directory ({what})", fix)
    if needs is not None and not (path / needs).is_file():
        raise InputError(path, f"has no {needs}, so it is not {what}", fix)


def _frames_4k1(flag: str, value: int, example: str) -> None:
    from soul.errors import InputError

    if value < 1 or (value - 1) % 4:
        raise InputError(f"{flag} {value}", "must be 4k+1 frames (1, 5, 9, 13, 17, ...): the VAE packs 4 frames per latent after the first", f"e.g. {flag} {example}")


@mini_app.command("clips")
def clips_cmd(
    out: Path = typer.Argument(..., help="Output directory: the shards go to OUT/shards/soul-NNNNNN.tar (a data.path for soul train)."),
    clips: int = typer.Option(16, "--clips", help="Number of clips."),
    seconds: float = typer.Option(3.0, "--seconds", help="Length of each clip in seconds."),
    fps: float = typer.Option(16.0, "--fps", help="Frames per second."),
    size: int = typer.Option(64, "--size", help="Frame width and height in px."),
    seed: int = typer.Option(0, "--seed", help="Data seed: the same seed draws the same people and audio (clip i uses seed*100003 + i)."),
    media: Path = typer.Option(None, "--media", help="A media folder laid out like ../shared/media: --speech-fraction of the clips speak its training recordings instead of babble."),
    speech_fraction: float = typer.Option(0.5, "--speech-fraction", help="Share of the clips (chosen by seed) that speak real speech when --media is given, 0..1."),
    people: str = typer.Option("1", "--people", help="People per clip, e.g. 1 or 1,2,3,4 (each clip draws one of the numbers by seed); several stand side by side in a frame --size high and N x --size wide, each speaking in their own turns."),
    voices: int = typer.Option(0, "--voices", help="With --media: also synthesise this many espeak-ng voices (random languages, variants, rates, pitches; Debian's espeak-ng package) for half of the speech, with wider loudness, and on half of the clips a transmission channel and background noise in the soundtrack (the drawn mouth follows the clean speech)."),
    low_band: float = typer.Option(0.0, "--low-band", help="With --media: share of the speech (0..1) given energy under 100-280 Hz that rises and falls on its own (a second voice's fundamental, rumble), so the model learns that the mouth follows the 300-3400 Hz band only."),
    colour: float = typer.Option(0.0, "--colour", help="With --media: share of the speech (0..1) whose five frequency bands each drift by up to +-18 dB over time, so the model learns how the drawing counts each band."),
) -> None:
    """Draw talking clips whose mouths follow their audio and write them as `soul data`-style shards.

    Example: soul mini clips runs/drawn-data --clips 16
    Each clip is mp4 + 16 kHz wav + json (with the mouth box); synthesised babble unless --media.
    A clip of several people also holds each voice (KEY.0.wav, KEY.1.wav, ...) and each person's
    slot and mouth box (json `speakers`). Prints the path of every shard written.
    """
    from soul.errors import InputError

    _at_least("--clips", clips, 1, "16")
    _positive("--seconds", seconds, "3")
    _positive("--fps", fps, "16")
    _at_least("--size", size, 1, "64")
    if round(seconds * fps) < 1:
        raise InputError(f"--seconds {seconds:g} at --fps {fps:g}", "gives no frame", "e.g. --seconds 3 --fps 16")
    if not 0.0 <= speech_fraction <= 1.0:
        raise InputError(f"--speech-fraction {speech_fraction:g}", "must be between 0 and 1", "e.g. --speech-fraction 0.5")
    if media is not None:
        _directory(media, "media folder", "give a folder laid out like ../shared/media (audio/, clips/)")
    _at_least("--voices", voices, 0, "200")
    if voices and media is None:
        raise InputError(f"--voices {voices}", "mixes synthesised voices into the real recordings of --media", "give --media ../shared/media too")
    for flag, share in (("--low-band", low_band), ("--colour", colour)):
        if not 0.0 <= share <= 1.0:
            raise InputError(f"{flag} {share:g}", "must be between 0 and 1", f"e.g. {flag} 0.75")
        if share and media is None:
            raise InputError(f"{flag} {share:g}", "changes the real speech of --media", "give --media ../shared/media too")
    counts = _people_counts(people)

    from soul.miniature.clips import write_clip_shards

    pool = _speech_pool(media, voices, seed) if media is not None else None
    if pool is not None and (low_band or colour):
        pool = pool.with_low_band(low_band).with_colour(colour)
    for path in write_clip_shards(out, clips, seconds, fps, size, seed, speech=pool, speech_fraction=speech_fraction, people=counts):
        typer.echo(str(path))


@mini_app.command("train-vae")
def train_vae_cmd(
    out: Path = typer.Argument(..., help="Run directory: the best VAE (held-out PSNR) goes to OUT/vae/, the evaluations to OUT/metrics.jsonl."),
    steps: int = typer.Option(VAE_STEPS, "--steps", help="Optimiser steps (the cosine learning-rate schedule spans them)."),
    minutes: float = typer.Option(NO_LIMIT_MINUTES, "--minutes", help="Stop after this many minutes (the schedule then spans the time); default: no limit."),
    pool_clips: int = typer.Option(VAE_POOL_CLIPS, "--pool-clips", help="Drawn clips in the training pool (windows are cut from them at random)."),
    batch_size: int = typer.Option(VAE_BATCH_SIZE, "--batch-size", help="Windows per step."),
    lr: float = typer.Option(VAE_LR, "--lr", help="Peak learning rate (at 1e-3 the encoder stopped depending on its input)."),
    eval_every: int = typer.Option(VAE_EVAL_EVERY, "--eval-every", help="Evaluate on held-out faces (and keep the best VAE) every this many steps."),
    window: int = typer.Option(VAE_WINDOW, "--window", help="Frames per training window, 4k+1 (1 = images: the image path only)."),
    eval_frames: int = typer.Option(VAE_EVAL_FRAMES, "--eval-frames", help="Frames per held-out window, 4k+1 up to 17 (1 measures the image path only)."),
    decode_from: str = typer.Option(VAE_DECODE_FROM, "--decode-from", help="mean: decode the posterior mean, as generation does; sample: a classic VAE."),
    init: Path = typer.Option(None, "--init", help="Continue from this trained VAE directory (e.g. the image-trained one, runs/mini-vae-img/vae)."),
    mouth_weight: float = typer.Option(VAE_MOUTH_WEIGHT, "--mouth-weight", help="Loss weight inside the mouth box (lip sync lives there)."),
    temporal_weight: float = typer.Option(VAE_TEMPORAL_WEIGHT, "--temporal-weight", help="Weight of the frame-difference loss (video windows)."),
    inflate: bool = typer.Option(False, "--inflate", help="--init is image-trained (--window 1): inflate it for video first."),
    framing: str = typer.Option("close-up", "--framing", help="close-up: faces fill the frame; mixed: faces at the group world's sizes in their slot (people further back); both: half and half."),
    trainable: str = typer.Option("all", "--trainable", help="all, or decoder: keep the encoder and its latent space (a trained transformer stays valid)."),
    threads: int = typer.Option(1, "--threads", help="CPU threads for torch (small models on CPU: 1 is often fastest)."),
    spatial_factor: int = typer.Option(8, "--spatial-factor", help="8 (the mini preset's: 8x8 latents for 64x64 frames, keeps eyes and fast mouths), 4 (16x16 latents, no patchify) or 16 (Wan2.2's and mini16's: 4x4 latents); docs/miniature.md. --init must have the same."),
    media: Path = typer.Option(None, "--media", help="A media folder laid out like ../shared/media: --speech-fraction of the pool's clips speak its training recordings (faster mouths than babble)."),
    voices: int = typer.Option(0, "--voices", help="With --media: also this many espeak-ng voices in the pool's speech."),
    speech_fraction: float = typer.Option(0.5, "--speech-fraction", help="With --media: share of the pool's clips (chosen by seed) that speak, 0..1."),
    deepen: int = typer.Option(0, "--deepen", help="With --init: add this many residual blocks to every stage first (they start as the identity: the VAE draws what --init drew); with --trainable decoder, more decoder capacity in the same latent space."),
) -> None:
    """Train the miniature VAE (the Wan2.2 layout at a small width) on drawn talking clips.

    Example: soul mini train-vae runs/mini-vae --minutes 25
    docs/miniature.md trains the image path first (--window 1 --eval-frames 1), then video from it
    (--init IMG_RUN/vae --inflate --window 9). Prints the VAE directory at the end.
    """
    from soul.errors import InputError

    _at_least("--steps", steps, 1, "4000")
    _positive("--minutes", minutes, "25")
    _at_least("--pool-clips", pool_clips, 1, "256")
    _at_least("--batch-size", batch_size, 1, "4")
    _positive("--lr", lr, "3e-4")
    _at_least("--eval-every", eval_every, 1, "250")
    _at_least("--threads", threads, 1, "1")
    _frames_4k1("--window", window, "5")
    _frames_4k1("--eval-frames", eval_frames, "17")
    if eval_frames > VAE_EVAL_FRAMES:
        raise InputError(f"--eval-frames {eval_frames}", f"held-out clips have {VAE_EVAL_FRAMES} frames", f"e.g. --eval-frames {VAE_EVAL_FRAMES}")
    if decode_from not in ("mean", "sample"):
        raise InputError(f"--decode-from {decode_from}", "is not mean or sample", "e.g. --decode-from mean")
    if framing not in VAE_FRAMINGS:
        raise InputError(f"--framing {framing}", f"is not one of {', '.join(VAE_FRAMINGS)}", "e.g. --framing mixed")
    if trainable not in VAE_TRAINABLE:
        raise InputError(f"--trainable {trainable}", f"is not one of {', '.join(VAE_TRAINABLE)}", "e.g. --trainable decoder")
    if trainable == "decoder" and init is None:
        raise InputError("--trainable decoder", "needs a trained encoder to keep", "give --init VAE_DIR")
    if init is not None:
        _directory(init, "a trained VAE directory", "give the vae/ directory of an earlier run, e.g. --init runs/mini-vae-img/vae", needs="config.json")
    _at_least("--deepen", deepen, 0, "1")
    if deepen and init is None:
        raise InputError(f"--deepen {deepen}", "adds blocks to a trained VAE", "give --init VAE_DIR")

    if spatial_factor not in (4, 8, 16):
        raise InputError(f"--spatial-factor {spatial_factor}", "must be 16, 8 or 4", "e.g. --spatial-factor 8")
    if media is not None:
        _directory(media, "media folder", "give a folder laid out like ../shared/media (audio/, clips/)")
        _training_recordings(media)  # they are there; the trainer decodes them into its own pool, with the voices
    _at_least("--voices", voices, 0, "100")
    if voices and media is None:
        raise InputError(f"--voices {voices}", "mixes synthesised voices into the real recordings of --media", "give --media ../shared/media too")
    if not 0.0 <= speech_fraction <= 1.0:
        raise InputError(f"--speech-fraction {speech_fraction:g}", "must be between 0 and 1", "e.g. --speech-fraction 0.5")

    import torch

    from soul.miniature.vae_trainer import MINI_DIM_MULT, VAETrainConfig, train_vae

    cfg = VAETrainConfig(
        spatial_factor=spatial_factor, dim_mult=list(MINI_DIM_MULT[spatial_factor]),
        max_steps=steps, max_minutes=minutes, pool_clips=pool_clips, batch_size=batch_size, lr=lr, eval_every=eval_every,
        decode_from=decode_from, window=window, eval_frames=eval_frames, init=str(init) if init is not None else None,
        mouth_weight=mouth_weight, temporal_weight=temporal_weight, inflate=inflate, framing=framing, trainable=trainable,
        speech_media=str(media) if media is not None else None, speech_voices=voices, speech_fraction=speech_fraction,
        deepen=deepen,
    )
    clip_frames = int(round(cfg.clip_seconds * cfg.fps))
    if window > clip_frames:
        raise InputError(f"--window {window}", f"is longer than the drawn clips ({clip_frames} frames)", "e.g. --window 9")
    torch.set_num_threads(threads)
    train_vae(cfg, out, log=not state.quiet)
    typer.echo(str(out / "vae"))


@mini_app.command("train-audio")
def train_audio_cmd(
    out: Path = typer.Argument(..., help="Output directory: the encoder goes to OUT/audio_encoder (for soul mini assemble --audio-encoder), the run's summary to OUT/summary.json."),
    media: Path = typer.Option(..., "--media", help="A media folder laid out like ../shared/media: its training recordings (never the held-out ones)."),
    voices: int = typer.Option(100, "--voices", help="espeak-ng voices beside the recordings (Debian's espeak-ng package)."),
    steps: int = typer.Option(600, "--steps", help="Optimiser steps (batches of 4 clips of 3 s)."),
    lr: float = typer.Option(3e-4, "--lr", help="Learning rate."),
    preset: str = typer.Option("mini", "--preset", help="Preset (name or YAML path) whose audio encoder is built and trained."),
    seed: int = typer.Option(0, "--seed", help="Seed of the encoder's initial weights, the voices and the clips."),
) -> None:
    """Pretrain the miniature audio encoder: from noisy, channel-coloured speech predict the clean speech's log-mel spectrogram.

    The 5B model's wav2vec2 is pretrained on speech; the miniature one was random and frozen, and
    could not read voices unlike its six recordings (docs/miniature.md, "Voices it never heard").
    Example: soul mini train-audio runs/mini-audio --media ../shared/media
    Then: soul mini assemble runs/mini-vae/vae runs/mini-init --audio-encoder runs/mini-audio/audio_encoder
    Prints OUT/audio_encoder.
    """
    _directory(media, "media folder", "give a folder laid out like ../shared/media (audio/, clips/)")
    _at_least("--voices", voices, 0, "100")
    _at_least("--steps", steps, 1, "600")
    _positive("--lr", lr, "3e-4")

    import torch

    from soul.config import load_preset
    from soul.miniature.audio_pretrain import AudioPretrainConfig, pretrain_audio_encoder
    from soul.models.audio_encoder import SoulAudioEncoder

    torch.set_num_threads(1)
    pool = _speech_pool(media, voices, seed)
    config = load_preset(preset)
    encoder = SoulAudioEncoder.build(config, seed=seed)
    summary = pretrain_audio_encoder(encoder, pool, AudioPretrainConfig(steps=steps, lr=lr, seed=seed), log=lambda row: typer.echo(json.dumps(row), err=True))
    target = out / "audio_encoder"
    tmp = out / ".audio_encoder.tmp"
    encoder.save_pretrained(tmp)
    if target.exists():
        import shutil

        shutil.rmtree(target)
    tmp.replace(target)
    (out / "summary.json").write_text(json.dumps({**summary, "preset": preset, "voices": voices, "media": str(media)}, indent=2))
    typer.echo(str(target))


@mini_app.command("assemble")
def assemble_cmd(
    vae_dir: Path = typer.Argument(..., help="A trained VAE directory (soul mini train-vae writes RUN/vae)."),
    out: Path = typer.Argument(..., help="Pipeline directory to write (the `init_checkpoint` of configs/train/mini.yaml)."),
    audio_encoder: Path = typer.Option(None, "--audio-encoder", help="A pretrained audio encoder (soul mini train-audio writes RUN/audio_encoder) instead of the preset's random one."),
    preset: str = typer.Option("mini", "--preset", help="Preset (name or YAML path) of the transformer and encoders."),
) -> None:
    """A pipeline directory for training: the preset's random transformer and encoders + the trained VAE.

    Example: soul mini assemble runs/mini-vae/vae runs/mini-init
    Then: soul train configs/train/mini.yaml (it starts from runs/mini-init). Prints OUT.
    """
    _directory(vae_dir, "a trained VAE directory", "train one with soul mini train-vae RUN; its VAE is RUN/vae", needs="config.json")
    if audio_encoder is not None:
        _directory(audio_encoder, "a pretrained audio encoder directory", "train one with soul mini train-audio RUN; it is RUN/audio_encoder", needs="config.json")

    import torch

    from soul.miniature.model import assemble

    torch.set_num_threads(1)
    typer.echo(str(assemble(vae_dir, out, preset=preset, audio_encoder=audio_encoder)))


@mini_app.command("export")
def export_cmd(
    init_checkpoint: Path = typer.Argument(..., help="The pipeline directory the run started from (soul mini assemble's OUT)."),
    run_dir: Path = typer.Argument(..., help="The training run directory (holds checkpoints/step-*/)."),
    out: Path = typer.Argument(..., help="Generation-ready pipeline directory to write."),
    step: int = typer.Option(None, "--step", help="Export this checkpoint step instead of the newest."),
) -> None:
    """A generation-ready pipeline directory from a training run's checkpoint (the newest unless --step).

    Example: soul mini export runs/mini-init runs/train-mini runs/mini-export
    For runs stopped before max_steps: their transformer weights are loaded over INIT_CHECKPOINT. Prints OUT.
    """
    _directory(init_checkpoint, "pipeline directory", "give the directory soul mini assemble wrote, e.g. runs/mini-init")
    _directory(run_dir, "training run directory", "give the `output` directory of soul train, e.g. runs/train-mini")
    if step is not None:
        _at_least("--step", step, 0, "1200")

    import torch

    from soul.miniature.model import export_run

    torch.set_num_threads(1)
    typer.echo(str(export_run(init_checkpoint, run_dir, out, step)))


@mini_app.command("pack")
def pack_cmd(
    checkpoint: Path = typer.Argument(..., help="A generation-ready pipeline directory (soul mini export's OUT, or a distiller's export/)."),
    out: Path = typer.Option(None, "--out", help="Weights directory (default: the package's soul/models/weights/, where presets' `weights:` are found)."),
    info: Path = typer.Option(None, "--info", help="JSON describing how the weights were made and measured (kept in NAME.json)."),
    name: str = typer.Option(DEFAULT_WEIGHTS_NAME, "--name", help="Weights name: writes NAME.safetensors + NAME.json (a preset's `weights:`)."),
    base: str = typer.Option(None, "--base", help="Shipped weights in --out this one extends: only tensors that differ are written (e.g. --name mini-fast --base mini)."),
) -> None:
    """Write a pipeline directory as shipped weights: one flat float16 safetensors file + its JSON.

    Example: soul mini pack runs/mini-export --info runs/mini-info.json
    A light decoder in CHECKPOINT/soul/light_vae/ is packed too. Prints the weights file.
    """
    from soul.errors import InputError

    _directory(checkpoint, "pipeline directory", "give the directory soul mini export wrote, e.g. runs/mini-export")
    record = None
    if info is not None:
        if not info.is_file():
            raise InputError(info, "not found", "give a JSON file, e.g. --info runs/mini-info.json")
        try:
            record = json.loads(info.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(info, f"is not valid JSON ({err})", 'write a JSON object, e.g. {"made_by": "..."}') from None
        if not isinstance(record, dict):
            raise InputError(info, "is not a JSON object", 'write a JSON object, e.g. {"made_by": "..."}')

    import torch

    from soul.miniature.model import pack
    from soul.models.shipped import WEIGHTS_DIR, has_shipped_weights

    weights_dir = out if out is not None else WEIGHTS_DIR
    if base is not None and not has_shipped_weights(base, weights_dir):
        raise InputError(f"--base {base}", f"no weights {base!r} in {weights_dir}", "pack the base first into the same --out")
    torch.set_num_threads(1)
    typer.echo(str(pack(checkpoint, weights_dir, record, name=name, base=base)))


def _training_recordings(media: Path) -> list[Path]:
    """The training recordings under ``media`` (not decoded), or a one-line error."""
    from soul.errors import InputError
    from soul.miniature.speech_pool import media_recordings

    try:
        return media_recordings(media)
    except FileNotFoundError:
        raise InputError(media, "holds none of the training recordings", "give a folder laid out like ../shared/media (audio/, clips/)") from None


def _speech_pool(media: Path, voices: int, seed: int) -> SpeechPool:
    """The training recordings under ``media`` (plus ``voices`` espeak-ng voices), or a one-line error."""
    from soul.miniature.speech_pool import SpeechPool

    pool = SpeechPool.from_files(_training_recordings(media))
    return pool.with_voices(voices, seed) if voices else pool


def _people_counts(text: str) -> tuple[int, ...]:
    """``--people 1,2,3``: the numbers of people a clip may show (1-4 each)."""
    from soul.errors import InputError
    from soul.miniature.group import MAX_PEOPLE

    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        counts = ()
    if not counts or any(not 1 <= c <= MAX_PEOPLE for c in counts):
        raise InputError(f"--people {text}", f"is not a list of numbers from 1 to {MAX_PEOPLE}", "e.g. --people 1 or --people 1,2,3,4")
    return counts
