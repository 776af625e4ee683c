"""Chunk planning for long videos: which latent frames each chunk makes, and its noise seed.

Pure functions of the sequence length and the chunk layout (DESIGN 4), tested alone; the
long-video driver (``soul.pipelines.long_video``) only sequences them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from soul.errors import InputError
from soul.sampling.seeds import mix_seed

TEMPORAL = 4
"""Video frames per latent frame (the Wan VAE's causal 4x time compression)."""


@dataclass(frozen=True)
class ChunkPlan:
    """One chunk of the latent sequence.

    ``first_latent`` is the global index of the chunk's first new latent and ``new_latents`` how
    many it adds; ``motion`` is ``M`` for this chunk (0 for chunk 0). Chunk 0 also contributes the
    anchor latent itself (global latent 0 = the portrait frame).
    """

    index: int
    first_latent: int
    new_latents: int
    motion: int

    @property
    def model_latents(self) -> int:
        """Latent frames the transformer sees: anchor + motion + new."""
        return 1 + self.motion + self.new_latents

    @property
    def video_start(self) -> int:
        """Absolute video frame of the chunk's first new frame (chunk 0 starts at the portrait frame)."""
        return 0 if self.index == 0 else TEMPORAL * self.first_latent - (TEMPORAL - 1)

    @property
    def video_frames(self) -> int:
        """Video frames the chunk adds to the sequence (before the final cut to the audio length)."""
        return 1 + TEMPORAL * self.new_latents if self.index == 0 else TEMPORAL * self.new_latents


def plan_chunks(total_latents: int, chunk_latents: int, motion: int) -> list[ChunkPlan]:
    """Split a sequence of ``total_latents`` into chunks of at most ``chunk_latents`` model frames.

    Every chunk but possibly the last adds ``chunk_latents - 1 - motion`` new latents; the last one
    is shorter rather than sampling frames past the audio.
    """
    if total_latents < 1:
        raise ValueError("total_latents must be >= 1")
    if chunk_latents < 2:
        raise InputError("chunk_frames", f"{chunk_latents} latent frame(s) per chunk", "use at least 5 frames per chunk")
    if not 0 <= motion <= chunk_latents - 2:
        raise InputError("motion_latents", f"{motion} does not fit chunks of {chunk_latents} latent frames", f"use 0..{chunk_latents - 2}")
    first = min(chunk_latents, total_latents)
    plans = [ChunkPlan(0, 1, first - 1, 0)]
    step = chunk_latents - 1 - motion
    done = first
    while done < total_latents:
        n = min(step, total_latents - done)
        plans.append(ChunkPlan(len(plans), done, n, motion))
        done += n
    return plans


def chunk_seed(seed: int, index: int) -> int:
    """The noise seed of chunk ``index``: chunk 0 uses ``seed`` itself, later chunks a mixed value.

    A pure function of (seed, index), so a resumed run draws the same noise as an uninterrupted one.
    """
    if index == 0:
        return int(seed)
    return mix_seed(seed, index)


@dataclass(frozen=True)
class VideoPlan:
    """A whole video's chunks: ``generated_frames`` (4k+1, at least the video's) made in ``chunks``."""

    generated_frames: int
    chunks: list[ChunkPlan]


def plan_video(video_frames: int, chunk_frames: int, motion: int) -> VideoPlan:
    """The chunks that make ``video_frames`` frames with chunks of ``chunk_frames`` (4k+1) frames.

    The model makes 4k+1 frames (the causal VAE), so the sequence is rounded up; the writer cuts
    it back to ``video_frames``.
    """
    if video_frames < 1:
        raise ValueError("video_frames must be >= 1")
    generated = TEMPORAL * math.ceil((video_frames - 1) / TEMPORAL) + 1
    total_latents = (generated - 1) // TEMPORAL + 1
    return VideoPlan(generated, plan_chunks(total_latents, (chunk_frames - 1) // TEMPORAL + 1, motion))
