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

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from soul.errors import InputError
from soul.models.audio_encoder import SoulAudioEncoder, latent_frame_windows, resample_to_video, window_features
from soul.sampling.codebook import LatentCodebook
from soul.sampling.guidance import Conditions, Guidance, GuidancePass
from soul.sampling.layout import latent_layout
from soul.sampling.chunks import TEMPORAL, ChunkPlan, chunk_seed, plan_chunks
from soul.sampling.loop import denoise_chunk
from soul.media.spool import track_stats
from soul.models.vae import frames_to_uint8

if TYPE_CHECKING:  # the driver only calls the pipeline's stage methods
    from soul.pipelines.soul_pipeline import SoulPipeline

DEFAULT_MOTION_LATENTS = 2
DEFAULT_MAX_DURATION = 1800.0

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
"""Receives uint8 frames ``[T, H, W, 3]`` in order, as soon as they are decoded."""
ChunkCallback = Callable[[dict[str, Any]], None]
"""Called with a chunk's summary record after the chunk is saved and its frames are emitted."""


@dataclass(frozen=True)
class LongVideoOptions:
    """Long-video settings; defaults follow DESIGN 4 until the miniature world measures better ones.

    ``motion_latents`` is ``M`` (latent frames of the previous chunk reused as a clean prefix);
    ``codebook_threshold=None`` derives the drift threshold from chunk 0's own similarity
    statistics (its ``codebook_quantile``); ``codebook_blend`` 1 replaces drifted vectors, less
    blends toward the codebook entry.
    """

    chunk_frames: int | None = None
    motion_latents: int = DEFAULT_MOTION_LATENTS
    codebook: bool = True
    codebook_threshold: float | None = None
    codebook_blend: float = 1.0
    codebook_quantile: float = 0.02
    max_duration: float = DEFAULT_MAX_DURATION
    vae: str = "full"  # "full" (Wan2.2 decoder) or "light" (the distilled causal decoder)


class ChunkAudio:
    """Audio features of one chunk's latent frames, read from the whole tracks by absolute time.

    The encoder's input normalisation (zero mean, unit variance) uses each track's whole-length
    statistics, as ``encode_streams`` does (per-chunk statistics would make chunk borders audible
    to the model), but is applied to each chunk's stretch as it is read, so no normalised copy of a
    long track exists. Tracks are padded with digital silence past their end. A chunk encodes only
    the stretch its windows read, with the encoder's context margin either side, so memory is
    bounded by the chunk, not by the video.
    """

    def __init__(self, encoder: SoulAudioEncoder, streams: Sequence[np.ndarray], fps: float) -> None:
        self.encoder = encoder
        self.fps = float(fps)
        self.tracks = [np.asarray(s, dtype=np.float32) for s in streams]
        normalize = bool(getattr(encoder.feature_extractor, "do_normalize", True))
        self.stats = [track_stats(t) if normalize else (0.0, 1.0 - 1e-7) for t in self.tracks]

    def features(self, windows: torch.Tensor) -> torch.Tensor:
        """``windows [F, W]`` (absolute video frames) -> ``[N, F, W, L, D]`` float32."""
        enc = self.encoder
        sr, hop, field_ = enc.sample_rate, enc.hop, enc.receptive_field
        lo, hi = int(windows.min()), int(windows.max())
        centre = (field_ - 1) / 2.0
        j0 = max(0, math.floor((lo / self.fps * sr - centre) / hop) - 1)
        j1 = max(j0, math.ceil((hi / self.fps * sr - centre) / hop) + 1)
        margin = math.ceil(enc.context_seconds * sr / hop)
        a, b = max(0, j0 - margin), j1 + margin + 1
        length = (b - a - 1) * hop + field_
        out = []
        for track, (mean, var) in zip(self.tracks, self.stats):
            part = (track[a * hop : a * hop + length] - np.float32(mean)) / np.float32(math.sqrt(var + 1e-7))
            if part.shape[0] < length:
                part = np.pad(part, (0, length - part.shape[0]))
            feats = enc.encode(part.astype(np.float32, copy=False), normalized=True)
            rate = resample_to_video(
                feats, hi - lo + 1, self.fps, feature_rate=enc.feature_rate, feature_offset=enc.feature_offset + a * hop / sr - lo / self.fps
            )
            out.append(window_features(rate, windows - lo))
        return torch.stack(out, dim=0)


@dataclass
class LongVideoResult:
    """What a long generation did: frames emitted, the chunk records, and the settings used."""

    frames: int
    generated_frames: int
    chunks: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def generate_long_video(
    pipe: SoulPipeline,
    *,
    anchor: torch.Tensor,
    streams: Sequence[np.ndarray],
    text: torch.Tensor,
    null_text: torch.Tensor | None,
    video_frames: int,
    fps: float,
    height: int,
    width: int,
    sigmas: torch.Tensor,
    guidance: Guidance,
    seed: int,
    sink: FramesSink,
    person_masks: torch.Tensor | None = None,
    sampler: str = "euler",
    options: LongVideoOptions | None = None,
    state: ChunkStore | None = None,
    batched_guidance: bool = False,
    progress: Callable[[int, int], None] | None = None,
    on_chunk: ChunkCallback | None = None,
) -> LongVideoResult:
    """Generate ``video_frames`` frames chunk by chunk and stream them, decoded, into ``sink``.

    ``anchor`` is the portrait's normalised latent ``[1, C, 1, h, w]`` (``pipe.encode_image``),
    ``text``/``null_text`` the prompt embeddings, ``streams`` 16 kHz mono tracks (one per person,
    with ``person_masks [1, N, h, w]`` when N > 1). With a ``state``, finished chunks are loaded
    instead of sampled and every new chunk is saved before its frames are emitted.
    """
    opts = options or LongVideoOptions()
    cfg = pipe.config
    chunk_frames = opts.chunk_frames or cfg.sampling.chunk_frames
    if chunk_frames < 5 or (chunk_frames - 1) % TEMPORAL:
        raise InputError("chunk_frames", f"{chunk_frames}", f"use {TEMPORAL}k+1 frames, at least 5 (e.g. {cfg.sampling.chunk_frames})")
    if not 0.0 <= opts.codebook_blend <= 1.0:
        raise InputError("--codebook-blend", f"{opts.codebook_blend}", "use a value in [0, 1] (1 = replace, 0 = leave alone)")
    if opts.codebook_threshold is not None and not -1.0 <= opts.codebook_threshold <= 1.0:
        raise InputError("--codebook-threshold", f"{opts.codebook_threshold}", "a cosine similarity in [-1, 1], or leave it out to derive it from the first chunk")
    generated = TEMPORAL * math.ceil((video_frames - 1) / TEMPORAL) + 1
    layout = latent_layout(
        num_frames=chunk_frames, height=height, width=width, patch_size=tuple(cfg.transformer.patch_size),
        scale_spatial=cfg.vae.scale_factor_spatial, scale_temporal=TEMPORAL,
    )
    total_latents = (generated - 1) // TEMPORAL + 1
    plans = plan_chunks(total_latents, layout.latent_frames, opts.motion_latents)
    if state is not None and state.num_done > len(plans):
        raise ValueError(f"resume state has {state.num_done} chunks, the plan only {len(plans)}")

    device = pipe.device
    channels, lat_h, lat_w = cfg.vae.z_dim, layout.latent_height, layout.latent_width
    anchor = anchor.to(device=device, dtype=torch.float32)
    if tuple(anchor.shape) != (1, channels, 1, lat_h, lat_w):
        raise ValueError(f"anchor {tuple(anchor.shape)} must be [1, {channels}, 1, {lat_h}, {lat_w}]")
    audio = ChunkAudio(pipe.audio_encoder, streams, fps)
    context = pipe.audio_encoder.context_frames
    patch = int(cfg.transformer.patch_size[1])
    decoder = pipe.streaming_decoder(options.vae)
    steps_per_chunk = len(sigmas) - 1
    total_steps = steps_per_chunk * len(plans)
    emitted = 0
    codebook: LatentCodebook | None = None
    tail = anchor[:, :, :0]  # the last M latents of the sequence, [1, C, <=M, h, w]
    records: list[dict[str, Any]] = []

    def emit(latents: torch.Tensor) -> int:
        nonlocal emitted
        pipe.activate("vae")
        frames = frames_to_uint8(decoder.push(latents))
        frames = frames[: max(0, video_frames - emitted)]
        if frames.shape[0]:
            sink(frames)
            emitted += frames.shape[0]
        return int(frames.shape[0])

    for plan in plans:
        start = time.perf_counter()
        resumed = state is not None and plan.index < state.num_done
        if resumed:
            assert state is not None
            new = state.load_chunk(plan.index)[None].to(device)
            record = dict(state.chunks[plan.index])
            if progress:
                progress(steps_per_chunk * (plan.index + 1), total_steps)
        else:
            windows = latent_frame_windows(
                TEMPORAL * (plan.model_latents - 1) + 1, context,
                start=TEMPORAL * (plan.first_latent - plan.motion - 1), total_frames=generated,
            )
            feats = audio.features(windows).unsqueeze(0).to(device)
            report = None
            prefix = anchor
            if plan.motion:
                motion = tail
                if codebook is not None:
                    replaced, report = codebook.apply(motion[0], blend=opts.codebook_blend)
                    motion = replaced[None]
                prefix = torch.cat([anchor, motion], dim=2)
            generator = torch.Generator("cpu").manual_seed(chunk_seed(seed, plan.index))
            shape = (1, channels, plan.model_latents, lat_h, lat_w)
            noise = randn_tensor(shape, generator=generator, device=generator.device, dtype=torch.float32).to(device)
            base = steps_per_chunk * plan.index

            def step_cb(i: int, total: int, _x: torch.Tensor, base: int = base) -> None:
                if progress:
                    progress(base + i, total_steps)

            pipe.activate("transformer")
            with torch.no_grad():
                out = denoise_chunk(
                    pipe.transformer, noise, prefix,
                    Conditions(text=text, null_text=null_text, audio=feats, extra={"audio_masks": person_masks}),
                    sigmas, guidance=guidance, sampler=sampler, generator=generator,
                    batched_guidance=batched_guidance, callback=step_cb,
                )
            # Chunk 0 keeps its anchor: global latent 0 is the portrait frame of the video.
            new = out if plan.index == 0 else out[:, :, 1 + plan.motion :]
            record = {
                "index": plan.index,
                "frames": min(plan.video_frames, max(0, video_frames - plan.video_start)),
                "new_latents": plan.new_latents,
                "motion_latents": plan.motion,
                "replaced_fraction": None if report is None else report.replaced_fraction,
                "mean_similarity": None if report is None else report.mean_similarity,
                "threshold": None if report is None else report.threshold,
                "seconds": round(time.perf_counter() - start, 3),
            }
            if state is not None:
                state.save_chunk(plan.index, new[0], record)
        if plan.index == 0 and opts.codebook and opts.motion_latents > 0 and len(plans) > 1:
            codebook = LatentCodebook.build(
                anchor[0], new[0, :, 1:] if new.shape[2] > 1 else anchor[0], patch=patch,
                threshold=opts.codebook_threshold, quantile=opts.codebook_quantile,
                generator=torch.Generator().manual_seed(int(seed) & (2**63 - 1)),
            )
        if opts.motion_latents:
            tail = torch.cat([tail, new], dim=2)[:, :, -opts.motion_latents :]
        emit(new)
        record = dict(record, resumed=resumed)
        records.append(record)
        if on_chunk is not None:
            on_chunk(record)
    info = {
        "chunk_frames": chunk_frames,
        "chunk_latents": layout.latent_frames,
        "motion_latents": opts.motion_latents,
        "num_chunks": len(plans),
        "codebook": opts.codebook,
        "codebook_blend": opts.codebook_blend,
        "codebook_threshold": None if codebook is None else codebook.threshold,
        "resumed_chunks": sum(1 for r in records if r["resumed"]),
    }
    return LongVideoResult(frames=emitted, generated_frames=generated, chunks=records, info=info)


def needs_null_text(guidance: Guidance) -> bool:
    """Whether any guidance pass uses the negative prompt (so it must be encoded)."""
    return bool({GuidancePass.UNCOND, GuidancePass.AUDIO} & set(guidance.weights(has_audio=True)))


@dataclass
class ChunkConditions:
    """What every chunk shares: the anchor latent, prompt embeddings and the person masks."""

    anchor: torch.Tensor
    text: torch.Tensor
    null_text: torch.Tensor | None
    person_masks: torch.Tensor | None


def prepare_conditions(
    pipe: SoulPipeline,
    image: Any,
    *,
    prompt: str,
    negative_prompt: str,
    num_streams: int,
    height: int,
    width: int,
    guidance: Guidance,
    person_masks: np.ndarray | None = None,
) -> ChunkConditions:
    """Encode once what all chunks reuse (the portrait, the prompts, the speakers' masks).

    ``person_masks`` ``[N, H, W]`` (any resolution) or None: with several streams and no masks,
    people are found on the fitted portrait, as ``SoulPipeline.__call__`` does.
    """
    cfg = pipe.config
    layout = latent_layout(
        num_frames=1, height=height, width=width, patch_size=tuple(cfg.transformer.patch_size),
        scale_spatial=cfg.vae.scale_factor_spatial, scale_temporal=TEMPORAL,
    )
    pil = image if hasattr(image, "convert") else None
    if pil is None:
        from PIL import Image

        pil = Image.fromarray(np.asarray(image, dtype=np.uint8))
    pil = pil.convert("RGB")
    text = pipe.encode_prompt([prompt])
    null_text = pipe.encode_prompt([negative_prompt]) if needs_null_text(guidance) else None
    masks = pipe.person_mask_tokens(pil, person_masks, num_streams, layout)
    anchor = pipe.encode_image(pil, width, height)
    return ChunkConditions(anchor=anchor, text=text, null_text=null_text, person_masks=masks)


def long_video(
    pipe: SoulPipeline,
    image: Any,
    audio: np.ndarray | Sequence[np.ndarray],
    prompt: str,
    negative_prompt: str = "",
    *,
    sink: FramesSink,
    seed: int = 0,
    fps: float | None = None,
    height: int | None = None,
    width: int | None = None,
    num_inference_steps: int | None = None,
    sigmas: Sequence[float] | None = None,
    sampler: str = "euler",
    text_guidance_scale: float | None = None,
    audio_guidance_scale: float | None = None,
    guidance: bool = True,
    person_masks: np.ndarray | None = None,
    options: LongVideoOptions | None = None,
    state: ChunkStore | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> LongVideoResult:
    """Python API for audio of any length: 16 kHz mono track(s) in, frames streamed to ``sink``.

    Defaults come from the preset's ``sampling`` section; the video has the audio's length to the
    frame. ``soul.jobs.generate.run_generate`` is the same path from files to an MP4 (with resume).
    """
    from soul.models.audio_encoder import SAMPLE_RATE, video_frames_for_duration
    from soul.sampling.schedules import resolve_sigmas

    cfg = pipe.config
    streams = [np.asarray(audio, dtype=np.float32)] if isinstance(audio, np.ndarray) else [np.asarray(a, dtype=np.float32) for a in audio]
    if not streams or any(s.ndim != 1 or s.size == 0 for s in streams):
        raise InputError("audio", "expected one or more non-empty 1-D 16 kHz tracks", "pass soul.media.load_audio(path).samples")
    if len(streams) > cfg.audio.max_streams:
        raise InputError("audio", f"{len(streams)} tracks, the model supports at most {cfg.audio.max_streams}", "pass one track per person")
    opts = options or LongVideoOptions()
    seconds = max(s.shape[0] for s in streams) / SAMPLE_RATE
    if seconds > opts.max_duration:
        raise InputError("audio", f"is {seconds:.1f} s, longer than the maximum of {opts.max_duration:.0f} s", "trim it or raise LongVideoOptions.max_duration")
    fps = float(fps or cfg.sampling.fps)
    height, width = height or cfg.sampling.height, width or cfg.sampling.width
    scales = Guidance(
        cfg.sampling.text_scale if text_guidance_scale is None else text_guidance_scale,
        cfg.sampling.audio_scale if audio_guidance_scale is None else audio_guidance_scale,
        enabled=guidance,
    )
    schedule = resolve_sigmas(
        num_steps=None if sigmas is not None else (num_inference_steps or cfg.sampling.steps), shift=cfg.sampling.flow_shift, sigmas=sigmas
    )
    conds = prepare_conditions(
        pipe, image, prompt=prompt, negative_prompt=negative_prompt, num_streams=len(streams), height=height,
        width=width, guidance=scales, person_masks=person_masks,
    )
    return generate_long_video(
        pipe, anchor=conds.anchor, streams=streams, text=conds.text, null_text=conds.null_text,
        video_frames=video_frames_for_duration(seconds, fps), fps=fps, height=height, width=width, sigmas=schedule,
        guidance=scales, seed=seed, sink=sink, person_masks=conds.person_masks, sampler=sampler, options=opts,
        state=state, progress=progress,
    )


__all__ = [
    "ChunkAudio",
    "ChunkConditions",
    "ChunkStore",
    "LongVideoOptions",
    "LongVideoResult",
    "generate_long_video",
    "long_video",
    "needs_null_text",
    "prepare_conditions",
]
