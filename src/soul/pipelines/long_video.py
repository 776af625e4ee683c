"""Long video: chunked generation ``[anchor | motion prefix | noisy]`` with streaming decode and resume.

A chunk is what the model sees at once (the preset's ``sampling.chunk_frames``). The video is one
growing latent sequence, made chunk by chunk (DESIGN 4):

- chunk 0 is an ordinary TI2V clip: latent 0 is the portrait's clean latent, the rest is sampled;
- chunk ``i > 0`` is laid out ``[anchor | motion | noisy]``: the portrait latent again (identity
  from the source, not from a copy of a copy), then the last ``M`` latent frames of the sequence so
  far, clean and kept as latents (never decoded and re-encoded), then the new latents. Only the new
  latents join the sequence: the anchor is not a frame of chunk ``i``, so chunk ``i`` adds
  ``4 * new`` video frames after the ``1 + 4 * (F - 1)`` of chunk 0;
- before the motion frames are reused, a ``LatentCodebook`` built from the anchor and chunk 0 pulls
  drifted patch vectors back toward the run's best frames (``codebook.py``);
- audio is taken by absolute time: each latent frame reads the video frames it covers (plus
  context) wherever they fall, so windows cross chunk borders as continuous speech requires; the
  features are computed per chunk from the chunk's stretch of the track, so memory does not grow
  with the audio's length;
- noise comes from a generator seeded by ``(seed, chunk index)``, so a resumed run draws exactly
  the noise an uninterrupted one would;
- the sequence is decoded with the VAE's causal cache (``StreamingDecoder``) as each chunk
  finishes and the frames go straight to the caller (the MP4 writer): memory is flat in length.

Resume (``resume.py``): each chunk's new latents are saved as it finishes; a re-run loads them,
re-decodes them into the new writer (decoding is deterministic and a fraction of sampling cost, and
it rebuilds the decoder cache exactly) and continues sampling from the first missing chunk.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from soul.models.audio_encoder import latent_frame_windows
from soul.models.vae import frames_to_uint8
from soul.pipelines.chunk_audio import ChunkAudio
from soul.sampling.chunks import TEMPORAL, ChunkPlan, chunk_seed, plan_video
from soul.sampling.codebook import LatentCodebook
from soul.sampling.guidance import Conditions
from soul.sampling.loop import StepCallback, denoise_chunk
from soul.sampling.settings import SamplingSettings

if TYPE_CHECKING:  # the driver only calls the pipeline's stage methods
    from soul.pipelines.soul_pipeline import SoulPipeline


class ChunkStore(Protocol):
    """Where finished chunks are kept so a re-run can resume (``soul.jobs.resume.ResumeState``).

    A protocol, so the driver needs nothing from the job layer above it.
    """

    chunks: list[dict[str, Any]]

    @property
    def num_done(self) -> int: ...

    def load_chunk(self, index: int) -> torch.Tensor: ...

    def save_chunk(self, index: int, latents: torch.Tensor, record: dict[str, Any]) -> None: ...


FramesSink = Callable[[np.ndarray], None]
"""Receives uint8 frames ``[T, H, W, 3]`` in order, as soon as they are decoded. ``sink=None``
means nobody wants the frames (the non-writing ranks of a parallel run): nothing is decoded."""
ChunkCallback = Callable[[dict[str, Any]], None]
"""Called with a chunk's summary record after the chunk is saved and its frames are emitted."""


@dataclass
class LongVideoResult:
    """What a long generation did: frames emitted, the chunk records, and the settings used."""

    frames: int
    generated_frames: int
    chunks: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class ChunkConditions:
    """What every chunk shares: the anchor latent, prompt embeddings and the person masks."""

    anchor: torch.Tensor
    text: torch.Tensor
    null_text: torch.Tensor | None
    person_masks: torch.Tensor | None


def chunk_windows(pipe: SoulPipeline, plan: ChunkPlan, total_frames: int) -> torch.Tensor:
    """The absolute video frames each of a chunk's model latents reads audio from ``[F, W]``.

    A short first chunk (a live session's) can leave fewer latents before chunk 1 than its motion
    prefix holds: the prefix then starts at latent 0 (the portrait frame) and the windows in front
    of the video read its first frame, as windows past the end read the last one.
    """
    num = TEMPORAL * (plan.model_latents - 1) + 1
    start = TEMPORAL * (plan.first_latent - plan.motion - 1)
    if start >= 0:
        return latent_frame_windows(num, pipe.audio_encoder.context_frames, start=start, total_frames=total_frames)
    windows = latent_frame_windows(num, pipe.audio_encoder.context_frames, start=0, total_frames=num - start) + start
    return windows.clamp_(0, total_frames - 1)


def chunk_audio(pipe: SoulPipeline, streams: Sequence[Any], settings: SamplingSettings) -> ChunkAudio:
    """The chunk feature reader for ``streams`` (arrays or growing tracks) under ``settings``' audio layout."""
    return ChunkAudio(pipe.audio_encoder, streams, settings.fps, norm=settings.audio_norm, lookahead=settings.audio_lookahead)


def sample_chunk(
    pipe: SoulPipeline,
    plan: ChunkPlan,
    prefix: torch.Tensor,
    audio: ChunkAudio,
    conditions: ChunkConditions,
    settings: SamplingSettings,
    generator: torch.Generator,
    *,
    total_frames: int,
    batched_guidance: bool = False,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """Sample one chunk ``[prefix | new latents]`` (``prefix`` = anchor + motion) and return all of it.

    The audio windows of the chunk's latent frames are read by absolute video time from the whole
    tracks (``total_frames`` long); the noise is drawn from ``generator`` first, then the sampler
    may draw more from it (x0 re-noising).
    """
    cfg = pipe.config
    feats = audio.features(chunk_windows(pipe, plan, total_frames)).unsqueeze(0).to(pipe.device)
    parallel = getattr(pipe, "parallel", None)
    shape = (1, cfg.vae.z_dim, plan.model_latents, prefix.shape[3], prefix.shape[4])
    noise = randn_tensor(shape, generator=generator, device=generator.device, dtype=torch.float32).to(pipe.device)
    pipe.activate("transformer")
    with torch.no_grad():
        return denoise_chunk(
            pipe.transformer, noise, prefix,
            Conditions(text=conditions.text, null_text=conditions.null_text, audio=feats, extra={"audio_masks": conditions.person_masks}),
            settings.sigma_tensor(), guidance=settings.guidance, sampler=settings.sampler, generator=generator,
            batched_guidance=batched_guidance, callback=callback, guide=None if parallel is None else parallel.guide,
        )


class LatentSequence:
    """The growing latent sequence: its motion tail, the codebook, and the decoder feeding the sink."""

    def __init__(self, pipe: SoulPipeline, anchor: torch.Tensor, settings: SamplingSettings, seed: int, video_frames: int, sink: FramesSink | None) -> None:
        self.pipe, self.anchor, self.settings, self.seed = pipe, anchor, settings, seed
        self.video_frames, self.sink = video_frames, sink
        self.decoder = None if sink is None else pipe.streaming_decoder(settings.vae)
        self.codebook: LatentCodebook | None = None
        self.tail = anchor[:, :, :0]  # the last M latents of the sequence, [1, C, <=M, h, w]
        self.emitted = 0

    def prefix(self, plan: ChunkPlan) -> tuple[torch.Tensor, Any]:
        """``[anchor | motion]`` for a chunk, the motion pulled toward the codebook when there is one."""
        if not plan.motion:
            return self.anchor, None
        motion, report = self.tail, None
        if self.codebook is not None:
            replaced, report = self.codebook.apply(motion[0], blend=self.settings.codebook_blend)
            motion = replaced[None]
        return torch.cat([self.anchor, motion], dim=2), report

    def append(self, plan: ChunkPlan, new: torch.Tensor, last_chunk: bool) -> None:
        """Take a finished chunk's new latents: build the codebook after chunk 0, keep the tail, emit frames."""
        s = self.settings
        if plan.index == 0 and s.codebook and s.motion_latents > 0 and not last_chunk:
            self.codebook = LatentCodebook.build(
                self.anchor[0], new[0, :, 1:] if new.shape[2] > 1 else self.anchor[0], patch=int(self.pipe.config.transformer.patch_size[1]),
                threshold=s.codebook_threshold, quantile=s.codebook_quantile,
                generator=torch.Generator().manual_seed(int(self.seed) & (2**63 - 1)),
            )
        if s.motion_latents:
            self.tail = torch.cat([self.tail, new], dim=2)[:, :, -s.motion_latents :]
        remaining = max(0, self.video_frames - self.emitted)
        if self.sink is None or self.decoder is None:  # no one wants the frames: count them, decode nothing
            self.emitted += min(plan.video_frames, remaining)
            return
        self.pipe.activate("vae")
        frames = frames_to_uint8(self.decoder.push(new))[:remaining]
        if frames.shape[0]:
            self.sink(frames)
            self.emitted += frames.shape[0]


def _chunk_record(plan: ChunkPlan, video_frames: int, report: Any, started: float) -> dict[str, Any]:
    return {
        "index": plan.index,
        "frames": min(plan.video_frames, max(0, video_frames - plan.video_start)),
        "new_latents": plan.new_latents,
        "motion_latents": plan.motion,
        "replaced_fraction": None if report is None else report.replaced_fraction,
        "mean_similarity": None if report is None else report.mean_similarity,
        "threshold": None if report is None else report.threshold,
        "seconds": round(time.perf_counter() - started, 3),
    }


def generate_long_video(
    pipe: SoulPipeline,
    conditions: ChunkConditions,
    streams: Sequence[np.ndarray],
    *,
    video_frames: int,
    settings: SamplingSettings,
    seed: int,
    sink: FramesSink | None,
    state: ChunkStore | None = None,
    batched_guidance: bool = False,
    progress: Callable[[int, int], None] | None = None,
    on_chunk: ChunkCallback | None = None,
) -> LongVideoResult:
    """Generate ``video_frames`` frames chunk by chunk and stream them, decoded, into ``sink``.

    ``conditions`` come from ``pipe.encode_conditions``; ``streams`` are 16 kHz mono tracks (one
    per person). With a ``state``, finished chunks are loaded instead of sampled and every new
    chunk is saved before its frames are emitted. The planning is ``soul.sampling.chunks.plan_video``.
    """
    cfg = pipe.config
    video = plan_video(video_frames, settings.chunk_frames, settings.motion_latents, settings.first_chunk_frames)
    if state is not None and state.num_done > len(video.chunks):
        raise ValueError(f"resume state has {state.num_done} chunks, the plan only {len(video.chunks)}")
    lat_h, lat_w = settings.height // cfg.vae.scale_factor_spatial, settings.width // cfg.vae.scale_factor_spatial
    anchor = conditions.anchor.to(device=pipe.device, dtype=torch.float32)
    if tuple(anchor.shape) != (1, cfg.vae.z_dim, 1, lat_h, lat_w):
        raise ValueError(f"anchor {tuple(anchor.shape)} must be [1, {cfg.vae.z_dim}, 1, {lat_h}, {lat_w}]")
    audio = chunk_audio(pipe, streams, settings)
    sequence = LatentSequence(pipe, anchor, settings, seed, video_frames, sink)
    total_steps = settings.steps * len(video.chunks)
    records: list[dict[str, Any]] = []
    for plan in video.chunks:
        started, base = time.perf_counter(), settings.steps * plan.index
        resumed = state is not None and plan.index < state.num_done
        if resumed:
            new = state.load_chunk(plan.index)[None].to(pipe.device)  # type: ignore[union-attr]
            record = dict(state.chunks[plan.index])  # type: ignore[union-attr]
            if progress:
                progress(base + settings.steps, total_steps)
        else:
            prefix, report = sequence.prefix(plan)
            out = sample_chunk(
                pipe, plan, prefix, audio, conditions, settings, torch.Generator("cpu").manual_seed(chunk_seed(seed, plan.index)),
                total_frames=video.generated_frames, batched_guidance=batched_guidance,
                callback=None if progress is None else (lambda i, _n, _x, base=base: progress(base + i, total_steps)),
            )
            new = out if plan.index == 0 else out[:, :, 1 + plan.motion :]  # chunk 0 keeps its anchor: the portrait frame
            record = _chunk_record(plan, video_frames, report, started)
            if state is not None:
                state.save_chunk(plan.index, new[0], record)
        sequence.append(plan, new, last_chunk=len(video.chunks) == 1)
        records.append(dict(record, resumed=resumed))
        if on_chunk is not None:
            on_chunk(records[-1])
    info = {
        "chunk_frames": settings.chunk_frames, "chunk_latents": settings.chunk_latents, "motion_latents": settings.motion_latents,
        "num_chunks": len(video.chunks), "first_chunk_frames": settings.first_chunk_frames, "audio_norm": settings.audio_norm,
        "audio_lookahead": settings.audio_lookahead, "codebook": settings.codebook, "codebook_blend": settings.codebook_blend,
        "codebook_threshold": None if sequence.codebook is None else sequence.codebook.threshold,
        "resumed_chunks": sum(1 for r in records if r["resumed"]),
    }
    return LongVideoResult(frames=sequence.emitted, generated_frames=video.generated_frames, chunks=records, info=info)


__all__ = [
    "ChunkAudio",
    "ChunkConditions",
    "ChunkStore",
    "LatentSequence",
    "LongVideoResult",
    "chunk_audio",
    "chunk_windows",
    "generate_long_video",
    "sample_chunk",
]
