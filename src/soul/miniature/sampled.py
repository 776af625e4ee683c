"""Latents a pipeline samples for drawn clips: what a light decoder meets in use.

The light decoder's distillation pools (`soul distill vae` with ``sampled_from``) and its identity
check (benchmarks/light_decoder_identity.py) need the same thing: for a seed, the drawn face of
``draw_clip(seed)`` as the portrait and its babble as the voice, sampled with the pipeline's own
settings. One function, so the check scores the latents the decoder was trained on.
"""

from __future__ import annotations

import torch

from soul.miniature.clips import CAPTION, DrawnClip, draw_clip
from soul.miniature.portrait import draw_face
from soul.pipelines.soul_pipeline import SoulPipeline


def sample_drawn_latents(pipe: SoulPipeline, seed: int, num_frames: int, fps: float = 16.0, size: int = 64) -> tuple[DrawnClip, torch.Tensor]:
    """The drawn clip of `seed` and the normalised latents ``[1, C, F, h, w]`` (float32) `pipe` samples for it."""
    clip = draw_clip(seed, num_frames / fps, fps, size)
    with torch.no_grad():
        out = pipe(draw_face(clip.face, 4 * size), clip.audio, CAPTION, num_frames=num_frames, width=size, height=size,
                   generator=torch.Generator().manual_seed(seed), output_type="latent")
    return clip, out.latents.float()
