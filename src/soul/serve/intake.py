"""From a multipart upload to a checked `GenerateRequest` whose files live in the job's directory.

The server accepts a job only after the checks `soul generate` makes before loading a model
(fields through `build_request`, the preset and sampling settings through `resolve_request`, every
file decoded by `prepare_inputs`, the audio length), so a bad upload gets the CLI's one-line
message as a 400 at once instead of a failed job minutes later. Uploads are stored under generated
names (``image.png``, ``audio-0.wav``): a client's filename never becomes a path on the server.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from soul.config import available_presets, load_preset
from soul.errors import InputError
from soul.jobs.generate import GenerateRequest, build_request, prepare_inputs, resolve_request
from soul.serve.config import ServeConfig

FILE_FIELDS = ("image", "audio")
TEXT_FIELDS = ("prompt", "negative_prompt")
OPTION_FIELDS = (
    "preset", "seed", "steps", "sigmas", "sampler", "guidance", "text_scale", "audio_scale", "vae", "height", "width",
    "fps", "chunk_frames", "motion_latents", "codebook", "codebook_threshold", "codebook_blend",
)
FIELDS = FILE_FIELDS + TEXT_FIELDS + OPTION_FIELDS
OUTPUT_NAME = "output.mp4"
PREVIEW_NAME = "preview.mp4"
# Suffixes kept from a client's filename (decoders sniff content anyway; a suffix only helps a human).
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
_AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".mp4", ".mov", ".mkv", ".webm"}


@dataclass
class Upload:
    """One file part of the form: the client's filename (only its suffix is used) and its bytes."""

    filename: str | None
    file: BinaryIO


FormItems = list[tuple[str, "str | Upload"]]


def accept_upload(items: FormItems, job_dir: Path, config: ServeConfig) -> GenerateRequest:
    """Store the uploads in ``job_dir`` and return the checked request; InputError when unusable.

    On an InputError the caller deletes ``job_dir``: nothing of a rejected job is kept.
    """
    texts, files = _split(items)
    job_dir.mkdir(parents=True, exist_ok=False)
    try:
        return _accept(texts, files, job_dir, config)
    except InputError as err:
        raise InputError(public_text(err.subject, job_dir), public_text(err.problem, job_dir), err.fix and public_text(err.fix, job_dir)) from None


def _accept(texts: dict[str, str], files: dict[str, list[Upload]], job_dir: Path, config: ServeConfig) -> GenerateRequest:
    image = _save(files["image"][0], job_dir / "image", _IMAGE_SUFFIXES)
    audio = [_save(f, job_dir / f"audio-{k}", _AUDIO_SUFFIXES) for k, f in enumerate(files["audio"])]
    preset = texts.get("preset") or config.preset
    if preset != config.preset and preset not in available_presets():
        raise InputError(f"preset {preset!r}", "unknown preset", f"available presets: {', '.join(available_presets())}")
    request = build_request(
        image=image, audio=audio, output=job_dir / OUTPUT_NAME, preset=preset,
        checkpoint=config.checkpoint if preset == config.preset else None, device=config.device,
        prompt=texts.get("prompt", ""), negative_prompt=texts.get("negative_prompt", ""),
        seed=texts.get("seed"), steps=texts.get("steps"), sigmas=_sigmas(texts.get("sigmas")), sampler=texts.get("sampler"),
        guidance=_on_off("guidance", texts.get("guidance")), text_scale=texts.get("text_scale"),
        audio_scale=texts.get("audio_scale"), vae=texts.get("vae"), height=texts.get("height"), width=texts.get("width"),
        fps=texts.get("fps"), chunk_frames=texts.get("chunk_frames"), motion_latents=texts.get("motion_latents"),
        codebook=_on_off("codebook", texts.get("codebook")), codebook_threshold=texts.get("codebook_threshold"),
        codebook_blend=texts.get("codebook_blend"),
    )
    check_request(request)
    return request


def check_request(request: GenerateRequest) -> None:
    """What `run_generate` checks before it builds a model: preset, settings, every file, the length."""
    config = load_preset(request.preset)
    settings = resolve_request(request, config)
    with tempfile.TemporaryDirectory(prefix=".intake-", dir=request.output.parent) as work:
        inputs = prepare_inputs(request, Path(work))
    if inputs.duration > settings.max_duration:
        raise InputError(
            "audio", f"is {inputs.duration:.1f} s, longer than the maximum of {settings.max_duration:.0f} s",
            f"trim the audio (a shorter clip), or ask for a server whose preset allows {math.ceil(inputs.duration)} s",
        )


def public_text(text: str, job_dir: Path) -> str:
    """``text`` (an error, a warning) with server paths replaced by the names the client knows.

    A client sent fields, not files: ``/srv/data/jobs/<id>/audio-0.wav: is empty`` reads
    ``audio: is empty`` (``audio 2`` for the second of several); other job files lose their
    directory (``output.mp4``).
    """
    several = (job_dir / "audio-1").exists() or any(job_dir.glob("audio-1.*"))
    prefix = re.escape(str(job_dir) + os.sep)
    text = re.sub(prefix + r"image(\.[a-z0-9]+)?\b", "image", text)
    text = re.sub(prefix + r"audio-(\d+)(\.[a-z0-9]+)?\b", lambda m: f"audio {int(m.group(1)) + 1}" if several else "audio", text)
    return text.replace(str(job_dir) + os.sep, "").replace(str(job_dir), "job")


def _split(items: FormItems) -> tuple[dict[str, str], dict[str, list[Upload]]]:
    """Text fields and file fields of the form, each checked against what `POST /v1/jobs` takes."""
    texts: dict[str, str] = {}
    files: dict[str, list[Upload]] = {"image": [], "audio": []}
    for name, value in items:
        if name not in FIELDS:
            raise InputError(name, "unknown field", f"fields are: {', '.join(FIELDS)}")
        if name in FILE_FIELDS:
            if not isinstance(value, Upload):
                raise InputError(name, "must be a file upload", "send it as a multipart file part")
            files[name].append(value)
        elif isinstance(value, Upload):
            raise InputError(name, "must be a text field, not a file", "send the value as a plain form field")
        elif name in texts:
            raise InputError(name, "given more than once", "send each field once (only audio repeats)")
        elif value.strip() or name in TEXT_FIELDS:  # an empty option (a blank form input) means the default
            texts[name] = value if name in TEXT_FIELDS else value.strip()
    if len(files["image"]) != 1:
        raise InputError("image", "one portrait image is required" if not files["image"] else "given more than once", "send exactly one image file")
    if not files["audio"]:
        raise InputError("audio", "at least one audio file is required", "send one audio file per person")
    return texts, files


def _save(upload: Upload, stem: Path, suffixes: set[str]) -> Path:
    """Copy an upload to ``stem`` + a known suffix of the client's filename (never its name)."""
    suffix = Path(upload.filename or "").suffix.lower()
    path = stem.with_suffix(suffix if suffix in suffixes else "")
    upload.file.seek(0)
    with open(path, "wb") as out:
        shutil.copyfileobj(upload.file, out, 1 << 20)
    return path


def _on_off(name: str, value: str | None) -> bool | None:
    if value is None:
        return None
    if value not in ("on", "off"):
        raise InputError(name, f"{value!r}", f"use {name}=on or {name}=off")
    return value == "on"


def _sigmas(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise InputError("sigmas", f"{value!r}", "give comma-separated numbers, e.g. 1,0.75,0.5,0.25") from None
