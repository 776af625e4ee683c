"""One generation job from files to an MP4: the shared path of `soul generate`, the benchmark and the server.

Every input is read and validated before any model is built, so a bad file costs a second, not a
model load; the MP4 is written atomically, so a failure never leaves a file that looks finished.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from soul.errors import InputError
from soul.media.audio import Audio, load_audio
from soul.media.image import load_image

ProgressFn = Callable[[int, int], None]
MUX_SAMPLE_RATE = 48_000


class GenerateRequest(BaseModel):
    """Everything a generation needs; None means "the preset's default"."""

    model_config = ConfigDict(extra="forbid")

    image: Path
    audio: list[Path] = Field(min_length=1)
    prompt: str = ""
    negative_prompt: str = ""
    output: Path
    preset: str = "tiny"
    checkpoint: Path | None = None
    height: int | None = None
    width: int | None = None
    fps: int | None = None
    steps: int | None = None
    sigmas: list[float] | None = None
    sampler: Literal["euler", "unipc", "x0"] = "euler"
    text_scale: float | None = None
    audio_scale: float | None = None
    guidance: bool = True
    seed: int = 0
    masks: list[Path] = Field(default_factory=list)
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    cpu_offload: bool = False


def build_request(**fields: Any) -> GenerateRequest:
    """A request from CLI/HTTP fields, turning validation failures into one-line input errors."""
    from pydantic import ValidationError

    try:
        return GenerateRequest(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as err:
        first = err.errors()[0]
        name = "--" + "-".join(str(p) for p in first["loc"][:1]).replace("_", "-")
        raise InputError(name, first["msg"], "see soul generate --help") from None


@dataclass
class GenerateResult:
    output: Path
    num_frames: int
    fps: int
    duration: float
    audio_duration: float
    height: int
    width: int
    seconds: float
    preset: str
    seed: int
    info: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["output"] = str(self.output)
        return out


@dataclass
class PreparedInputs:
    """Decoded inputs: the portrait, 16 kHz streams for the model, and the sound to put in the MP4."""

    image: Any
    model_audio: list[np.ndarray]
    mux_audio: Audio
    duration: float


def prepare_inputs(request: GenerateRequest) -> PreparedInputs:
    """Read and validate every input file before anything expensive happens."""
    if request.output.suffix.lower() != ".mp4":
        raise InputError(request.output, "output must be an .mp4 file", "name the output like result.mp4")
    if request.output.exists() and request.output.is_dir():
        raise InputError(request.output, "is a directory", "give a file name ending in .mp4")
    image = load_image(request.image)
    model_audio = [load_audio(p, 16_000, normalize=True).samples for p in request.audio]
    tracks = [load_audio(p, MUX_SAMPLE_RATE, normalize=False, mono=False) for p in request.audio]
    mux = _mix(tracks)
    for mask in request.masks:
        if not mask.exists():
            raise InputError(mask, "mask image not found", "check the path, or leave masks out to detect people automatically")
    return PreparedInputs(image=image, model_audio=model_audio, mux_audio=mux, duration=max(a.shape[0] for a in model_audio) / 16_000)


def _mix(tracks: list[Audio]) -> Audio:
    """Several speakers' tracks become one stereo soundtrack (summed, limited to avoid clipping)."""
    if len(tracks) == 1:
        return tracks[0]
    n = max(t.samples.shape[0] for t in tracks)
    out = np.zeros((n, 2), np.float32)
    for t in tracks:
        s = t.samples if t.samples.ndim == 2 else np.repeat(t.samples[:, None], 2, axis=1)
        out[: s.shape[0], : s.shape[1]] += s[:, :2]
    peak = float(np.abs(out).max())
    if peak > 0.99:
        out *= 0.99 / peak
    return Audio(out, MUX_SAMPLE_RATE)


def run_generate(request: GenerateRequest, progress: ProgressFn | None = None) -> GenerateResult:
    """Generate the video for `request` and write it to `request.output`."""
    import torch

    from soul.config import load_preset
    from soul.media.video import write_video
    from soul.sampling.pipeline import SoulPipeline

    start = time.perf_counter()
    inputs = prepare_inputs(request)
    config = load_preset(request.preset)
    fps = request.fps or config.sampling.fps
    height = request.height or config.sampling.height
    width = request.width or config.sampling.width
    step = config.spatial_multiple
    if height % step or width % step or height <= 0 or width <= 0:
        raise InputError(f"--height {height} --width {width}", f"unsupported size: both sides must be positive multiples of {step}", f"e.g. --height {max(step, height // step * step)} --width {max(step, width // step * step)}")
    from soul.models.audio_encoder import frames_for_duration, video_frames_for_duration

    frames = video_frames_for_duration(inputs.duration, fps)
    chunk = config.sampling.chunk_frames
    if frames > chunk:
        raise InputError(
            request.audio[0] if len(request.audio) == 1 else "--audio",
            f"is {inputs.duration:.2f} s but this build generates one chunk of at most {chunk} frames ({chunk / fps:.2f} s at {fps} fps)",
            f"trim the audio to {chunk / fps:.2f} s or lower --fps",
        )
    if request.checkpoint is not None:
        pipe = SoulPipeline.from_pretrained(request.checkpoint, preset=config, torch_dtype=getattr(torch, request.dtype), device=request.device)
    elif config.hub.backbone is None:  # a preset built from its config (tiny): random weights
        pipe = SoulPipeline.from_preset(config, seed=0, device=request.device)
    else:
        raise InputError(
            f"--preset {request.preset}",
            "needs downloaded weights",
            f"run `soul download --preset {request.preset}`, then pass --checkpoint DIR",
        )
    if request.cpu_offload:
        pipe.enable_model_cpu_offload()
    masks = None
    if len(request.audio) > 1 or request.masks:
        from soul.models.person_masks import person_masks_for

        latent = (height // config.vae.scale_factor_spatial, width // config.vae.scale_factor_spatial)
        from soul.media.image import fit_image

        masks = person_masks_for(
            fit_image(inputs.image, width, height), len(request.audio), latent, mask_paths=request.masks or None,
            source=request.image,
        )
    generator = torch.Generator("cpu").manual_seed(request.seed)
    steps = request.steps or config.sampling.steps

    def _callback(i: int, total: int, _latents: Any) -> None:
        if progress:
            progress(i, total)

    result = pipe(
        image=inputs.image,
        audio=inputs.model_audio,
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        num_frames=frames_for_duration(inputs.duration, fps),
        height=height,
        width=width,
        fps=fps,
        num_inference_steps=None if request.sigmas else steps,
        sigmas=request.sigmas,
        sampler=request.sampler,
        text_guidance_scale=request.text_scale if request.text_scale is not None else config.sampling.text_scale,
        audio_guidance_scale=request.audio_scale if request.audio_scale is not None else config.sampling.audio_scale,
        guidance=request.guidance,
        generator=generator,
        person_masks=masks,
        callback=_callback,
    )
    video = result.frames[:frames]
    write_video(request.output, video, fps, audio=inputs.mux_audio)
    return GenerateResult(
        output=request.output,
        num_frames=int(video.shape[0]),
        fps=fps,
        duration=video.shape[0] / fps,
        audio_duration=inputs.duration,
        height=height,
        width=width,
        seconds=round(time.perf_counter() - start, 3),
        preset=request.preset,
        seed=request.seed,
        info=dict(result.info) if getattr(result, "info", None) else {},
    )
