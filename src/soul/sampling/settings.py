"""Sampling settings: a preset's defaults plus a caller's overrides, resolved and validated once.

Every entry point (``soul generate`` through the job layer, ``SoulPipeline.__call__`` and
``SoulPipeline.long_video``) turns its arguments into one ``SamplingSettings`` with
``resolve_sampling`` and passes that object down, so the three can never disagree about steps,
sigmas, sampler, guidance, decoder, size or the long-video layout (they once did: the long-video
API sampled a distilled preset with the base model's schedule).

The precedence is one rule: an explicit value, else the preset's. For the schedule: explicit
``sigmas``, else explicit ``steps`` (shifted by the preset's flow shift, or ``shift``), else the
preset's ``sigmas``, else its ``steps``; so ``steps=8`` on a fast preset asks for 8 shifted steps,
not for the preset's 4 levels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import torch

from soul.config import SoulConfig
from soul.errors import InputError
from soul.sampling.chunks import TEMPORAL
from soul.sampling.guidance import Guidance
from soul.sampling.layout import latent_layout
from soul.sampling.schedules import SAMPLERS, resolve_sigmas

DEFAULT_MOTION_LATENTS = 2
"""Latent frames of the previous chunk reused as a clean prefix (DESIGN 4)."""
DEFAULT_MAX_DURATION = 1800.0
"""Longest audio accepted, in seconds (30 minutes)."""
VAES = ("full", "light")
AUDIO_NORMS = ("track", "causal")
"""How the audio encoder's input is normalised: by the whole track's mean and variance (offline),
or by those of the audio up to the end of what each chunk reads (``causal``: what a live session,
which never has the whole track, can do; ``soul.pipelines.chunk_audio.ChunkAudio``)."""

_T = TypeVar("_T")


@dataclass(frozen=True)
class SamplingSettings:
    """How a video is sampled: resolved from a preset and overrides by ``resolve_sampling``.

    ``sigmas`` are the noise levels, high to low, ending at 0. ``motion_latents`` is ``M`` (latent
    frames of the previous chunk reused as a clean prefix); ``codebook_threshold=None`` derives
    the drift threshold from chunk 0's own similarity statistics (its ``codebook_quantile``);
    ``codebook_blend`` 1 replaces drifted vectors, less blends toward the codebook entry.

    The live layout (``soul live``; offline runs can ask for the same to reproduce a live session
    frame for frame): ``first_chunk_frames`` makes chunk 0 shorter than the rest (None = as long);
    ``audio_lookahead`` caps the seconds of audio past a chunk's last audio window that its
    features may see (None = the encoder's whole context margin, ``context_seconds``);
    ``audio_norm`` is one of ``AUDIO_NORMS``.
    """

    height: int
    width: int
    fps: float
    sigmas: tuple[float, ...]
    sampler: Literal["euler", "unipc", "x0"]
    guidance: Guidance
    vae: Literal["full", "light"]
    chunk_frames: int
    motion_latents: int = DEFAULT_MOTION_LATENTS
    codebook: bool = True
    codebook_threshold: float | None = None
    codebook_blend: float = 1.0
    codebook_quantile: float = 0.02
    max_duration: float = DEFAULT_MAX_DURATION
    first_chunk_frames: int | None = None
    audio_lookahead: float | None = None
    audio_norm: Literal["track", "causal"] = "track"

    @property
    def steps(self) -> int:
        return len(self.sigmas) - 1

    @property
    def chunk_latents(self) -> int:
        return (self.chunk_frames - 1) // TEMPORAL + 1

    def sigma_tensor(self) -> torch.Tensor:
        """The schedule as the samplers take it (float64, ending at 0)."""
        return torch.tensor(self.sigmas, dtype=torch.float64)

    def as_record(self) -> dict[str, object]:
        """The settings as plain values: for result summaries and the resume fingerprint."""
        return {
            "height": self.height, "width": self.width, "fps": self.fps, "steps": self.steps,
            "sigmas": [round(s, 6) for s in self.sigmas], "sampler": self.sampler, "vae": self.vae,
            "guidance": self.guidance.enabled, "text_scale": self.guidance.text_scale,
            "audio_scale": self.guidance.audio_scale, "chunk_frames": self.chunk_frames,
            "motion_latents": self.motion_latents, "codebook": self.codebook,
            "codebook_threshold": self.codebook_threshold, "codebook_blend": self.codebook_blend,
            "codebook_quantile": self.codebook_quantile,
            # the live layout only when asked for, so records and resume fingerprints of ordinary runs are unchanged
            **({"first_chunk_frames": self.first_chunk_frames} if self.first_chunk_frames is not None else {}),
            **({"audio_lookahead": self.audio_lookahead} if self.audio_lookahead is not None else {}),
            **({"audio_norm": self.audio_norm} if self.audio_norm != "track" else {}),
        }


def _given(value: _T | None, default: _T) -> _T:
    """The caller's value, or the preset's when the caller left it unset (None)."""
    return default if value is None else value


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(name, f"{value!r} is not a finite number", "use e.g. 5.0")
    return float(value)


def _check_size(config: SoulConfig, height: int, width: int) -> None:
    """The one size rule (``latent_layout``): whole numbers, multiples of the VAE x patch grid."""
    latent_layout(
        num_frames=1, height=height, width=width, patch_size=tuple(config.transformer.patch_size),
        scale_spatial=config.vae.scale_factor_spatial, scale_temporal=config.vae.scale_factor_temporal,
    )


def _check_live_layout(chunk_frames: int, first_chunk_frames: int | None, lookahead: float | None, norm: str) -> None:
    if first_chunk_frames is not None and not (5 <= first_chunk_frames <= chunk_frames and (first_chunk_frames - 1) % TEMPORAL == 0):
        raise InputError("--first-chunk-frames", f"{first_chunk_frames}", f"use {TEMPORAL}k+1 frames from 5 to --chunk-frames ({chunk_frames})")
    if lookahead is not None and not (math.isfinite(lookahead) and lookahead >= 0):
        raise InputError("--audio-lookahead", f"{lookahead}", "use a non-negative number of seconds, e.g. 0.25")
    if norm not in AUDIO_NORMS:
        raise InputError("--audio-norm", f"{norm!r}", f"use one of: {', '.join(AUDIO_NORMS)}")


def _check_layout(chunk_frames: int, motion_latents: int, blend: float, threshold: float | None, max_duration: float) -> None:
    if chunk_frames < 5 or (chunk_frames - 1) % TEMPORAL:
        raise InputError("--chunk-frames", f"{chunk_frames}", f"use {TEMPORAL}k+1 frames, at least 5, e.g. {max(5, TEMPORAL * ((chunk_frames - 1) // TEMPORAL) + 1)}")
    chunk_latents = (chunk_frames - 1) // TEMPORAL + 1
    if not 0 <= motion_latents <= chunk_latents - 2:
        raise InputError("--motion-latents", f"{motion_latents} does not fit chunks of {chunk_latents} latent frames", f"use 0..{chunk_latents - 2}")
    if not 0.0 <= blend <= 1.0:
        raise InputError("--codebook-blend", f"{blend}", "use a value in [0, 1] (1 = replace, 0 = leave alone)")
    if threshold is not None and not -1.0 <= threshold <= 1.0:
        raise InputError("--codebook-threshold", f"{threshold}", "a cosine similarity in [-1, 1], or leave it out to derive it from the first chunk")
    if not max_duration > 0:
        raise InputError("--max-duration", f"{max_duration}", "use a positive number of seconds, e.g. 1800")


def _schedule(config: SoulConfig, steps: int | None, sigmas: Sequence[float] | None, shift: float | None) -> tuple[float, ...]:
    s = config.sampling
    if sigmas is not None:
        levels = resolve_sigmas(num_steps=steps, sigmas=sigmas)  # a step count given too must agree
    elif steps is not None or not s.sigmas:
        levels = resolve_sigmas(num_steps=_given(steps, s.steps), shift=_finite("shift", _given(shift, s.flow_shift)))
    else:
        levels = resolve_sigmas(sigmas=s.sigmas)
    return tuple(float(v) for v in levels)


def resolve_sampling(
    config: SoulConfig,
    *,
    height: int | None = None,
    width: int | None = None,
    fps: float | None = None,
    steps: int | None = None,
    sigmas: Sequence[float] | None = None,
    shift: float | None = None,
    sampler: str | None = None,
    text_scale: float | None = None,
    audio_scale: float | None = None,
    guidance: bool | None = None,
    vae: str | None = None,
    chunk_frames: int | None = None,
    motion_latents: int | None = None,
    codebook: bool | None = None,
    codebook_threshold: float | None = None,
    codebook_blend: float | None = None,
    max_duration: float | None = None,
    first_chunk_frames: int | None = None,
    audio_lookahead: float | None = None,
    audio_norm: str | None = None,
) -> SamplingSettings:
    """The one place where a preset's defaults meet a caller's overrides; every check happens here."""
    s = config.sampling
    height, width = _given(height, s.height), _given(width, s.width)
    _check_size(config, height, width)
    fps = _given(fps, s.fps)  # an int stays an int (24, not 24.0, in records)
    if _finite("--fps", fps) <= 0:
        raise InputError("--fps", f"{fps}", "use a positive frame rate, e.g. 24")
    sampler = _given(sampler, s.sampler)
    if sampler not in SAMPLERS:
        raise InputError("--sampler", f"unknown sampler {sampler!r}", f"choose one of: {', '.join(SAMPLERS)}")
    vae = _given(vae, s.vae)
    if vae not in VAES:
        raise InputError("--vae", f"{vae!r}", "use full or light")
    scales = Guidance(
        _finite("text_guidance_scale (--text-scale)", _given(text_scale, s.text_scale)),
        _finite("audio_guidance_scale (--audio-scale)", _given(audio_scale, s.audio_scale)),
        enabled=bool(_given(guidance, s.guidance)),
    )
    chunk_frames = int(_given(chunk_frames, s.chunk_frames))
    motion = int(_given(motion_latents, DEFAULT_MOTION_LATENTS))
    blend = float(_given(codebook_blend, 1.0))
    max_duration = float(_given(max_duration, DEFAULT_MAX_DURATION))
    _check_layout(chunk_frames, motion, blend, codebook_threshold, max_duration)
    norm = _given(audio_norm, "track")
    _check_live_layout(chunk_frames, first_chunk_frames, audio_lookahead, norm)
    return SamplingSettings(
        height=height, width=width, fps=fps, sigmas=_schedule(config, steps, sigmas, shift), sampler=sampler,  # type: ignore[arg-type]
        guidance=scales, vae=vae, chunk_frames=chunk_frames, motion_latents=motion,  # type: ignore[arg-type]
        codebook=bool(_given(codebook, True)), codebook_threshold=codebook_threshold, codebook_blend=blend,
        max_duration=max_duration, first_chunk_frames=None if first_chunk_frames is None else int(first_chunk_frames),
        audio_lookahead=None if audio_lookahead is None else float(audio_lookahead), audio_norm=norm,  # type: ignore[arg-type]
    )
