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


def next_chunk(index: int, done: int, chunk_latents: int, motion: int, *, first_latents: int | None = None, total: int | None = None) -> ChunkPlan:
    """Chunk ``index`` after ``done`` latents of the sequence exist; ``total`` None = the end is not known yet.

    The one planning rule, shared by the offline planner (``plan_chunks``) and live sessions,
    which learn the sequence's length only when the audio stops: chunk 0 has ``first_latents``
    model frames (default ``chunk_latents``), every later chunk adds ``chunk_latents - 1 - motion``
    new latents, and a chunk that would pass ``total`` is cut short rather than sampling frames
    past the audio.
    """
    first = chunk_latents if first_latents is None else first_latents
    want = first if index == 0 else chunk_latents - 1 - motion
    if total is not None:
        want = min(want, total - done)
    if want < 1:
        raise ValueError(f"chunk {index}: nothing left to make ({done} of {total} latents done)")
    return ChunkPlan(index, 1, want - 1, 0) if index == 0 else ChunkPlan(index, done, want, motion)


def plan_chunks(total_latents: int, chunk_latents: int, motion: int, first_latents: int | None = None) -> list[ChunkPlan]:
    """Split a sequence of ``total_latents`` into chunks of at most ``chunk_latents`` model frames.

    Every chunk but possibly the last adds ``chunk_latents - 1 - motion`` new latents; the last one
    is shorter rather than sampling frames past the audio. ``first_latents`` (2..chunk_latents,
    default ``chunk_latents``) makes chunk 0 shorter, so its frames exist sooner: a live session's
    first chunk decides how long the viewer waits for the first frame.
    """
    if total_latents < 1:
        raise ValueError("total_latents must be >= 1")
    if chunk_latents < 2:
        raise InputError("chunk_frames", f"{chunk_latents} latent frame(s) per chunk", "use at least 5 frames per chunk")
    if not 0 <= motion <= chunk_latents - 2:
        raise InputError("motion_latents", f"{motion} does not fit chunks of {chunk_latents} latent frames", f"use 0..{chunk_latents - 2}")
    if first_latents is not None and not 2 <= first_latents <= chunk_latents:
        raise InputError("first_chunk_frames", f"{first_latents} latent frames", f"use 2..{chunk_latents} latent frames (5..{TEMPORAL * (chunk_latents - 1) + 1} video frames)")
    plans = [next_chunk(0, 0, chunk_latents, motion, first_latents=first_latents, total=total_latents)]
    done = plans[0].new_latents + 1
    while done < total_latents:
        plans.append(next_chunk(len(plans), done, chunk_latents, motion, total=total_latents))
        done += plans[-1].new_latents
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


def plan_video(video_frames: int, chunk_frames: int, motion: int, first_chunk_frames: int | None = None) -> VideoPlan:
    """The chunks that make ``video_frames`` frames with chunks of ``chunk_frames`` (4k+1) frames.

    The model makes 4k+1 frames (the causal VAE), so the sequence is rounded up; the writer cuts
    it back to ``video_frames``.
    """
    if video_frames < 1:
        raise ValueError("video_frames must be >= 1")
    generated = TEMPORAL * math.ceil((video_frames - 1) / TEMPORAL) + 1
    total_latents = (generated - 1) // TEMPORAL + 1
    first = None if first_chunk_frames is None else (first_chunk_frames - 1) // TEMPORAL + 1
    return VideoPlan(generated, plan_chunks(total_latents, (chunk_frames - 1) // TEMPORAL + 1, motion, first))
