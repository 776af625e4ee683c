"""Chunk planning for long videos: which latent frames each chunk makes, and its noise seed.

Pure functions of the sequence length and the chunk layout (DESIGN 4), tested alone; the
long-video driver (``soul.pipelines.long_video``) only sequences them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soul.errors import InputError

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
    state = np.random.SeedSequence([int(seed) & (2**63 - 1), int(index)]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & (2**63 - 1)
