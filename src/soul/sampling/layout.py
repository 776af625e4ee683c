"""Where pixels, latent frames and transformer tokens line up, computed from the model configs.

The TI2V mechanism gives every token its own timestep (0 on clean frames), so the sampler must
know exactly which tokens belong to which latent frame. diffusers' Wan pipeline hard-codes a 2x2
patch for this (``mask[:, ::2, ::2]``); Soul derives it from the transformer's ``patch_size`` and
the VAE's scale factors so the tiny preset, the 5B preset and any future backbone share one path.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch

from soul.errors import InputError


@dataclass(frozen=True)
class LatentLayout:
    """The latent and token grid of one clip."""

    num_frames: int  # video frames, 4k+1
    height: int  # pixels
    width: int
    latent_frames: int
    latent_height: int
    latent_width: int
    patch_size: tuple[int, int, int]

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.latent_frames, self.latent_height, self.latent_width)

    @property
    def tokens_per_frame(self) -> int:
        _, p_h, p_w = self.patch_size
        return (self.latent_height // p_h) * (self.latent_width // p_w)

    @property
    def num_tokens(self) -> int:
        return (self.latent_frames // self.patch_size[0]) * self.tokens_per_frame


def latent_layout(
    *,
    num_frames: int,
    height: int,
    width: int,
    patch_size: tuple[int, int, int] | list[int],
    scale_spatial: int,
    scale_temporal: int,
) -> LatentLayout:
    """Check a requested clip size against the VAE and patch grid, and describe its latents.

    Sides must be multiples of ``scale_spatial * patch`` (32 for Wan2.2-TI2V-5B) and frame counts
    ``scale_temporal * k + 1`` (the causal VAE keeps frame 0 alone and packs 4 frames per latent).
    """
    for name, value in (("height", height), ("width", width), ("num_frames", num_frames)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise InputError(name, f"{value!r} is not a whole number", "pass an int")
    p_t, p_h, p_w = (int(p) for p in patch_size)
    step_h, step_w = scale_spatial * p_h, scale_spatial * p_w
    if height <= 0 or width <= 0 or height % step_h or width % step_w:
        raise InputError(
            f"size {width}x{height}",
            f"unsupported size: width must be a positive multiple of {step_w} and height of {step_h}"
            if step_w != step_h else f"unsupported size: both sides must be positive multiples of {step_w}",
            f"e.g. {max(step_w, round(width / step_w) * step_w)}x{max(step_h, round(height / step_h) * step_h)}",
        )
    if num_frames < 1 or (num_frames - 1) % scale_temporal:
        k = max(0, round((num_frames - 1) / scale_temporal))
        raise InputError(
            f"num_frames {num_frames}",
            f"frame counts must be {scale_temporal}k+1",
            f"e.g. {scale_temporal * k + 1} or {scale_temporal * (k + 1) + 1}",
        )
    latent_frames = (num_frames - 1) // scale_temporal + 1
    if latent_frames % p_t:
        raise InputError(f"num_frames {num_frames}", f"{latent_frames} latent frames do not fill temporal patches of {p_t}", "pick another frame count")
    return LatentLayout(
        num_frames=num_frames,
        height=height,
        width=width,
        latent_frames=latent_frames,
        latent_height=height // scale_spatial,
        latent_width=width // scale_spatial,
        patch_size=(p_t, p_h, p_w),
    )


def frame_timesteps(timestep: float | torch.Tensor, latent_frames: int, clean_frames: int, batch: int) -> torch.Tensor:
    """Per-latent-frame timesteps ``[B, F]``: 0 on the first ``clean_frames``, ``timestep`` after."""
    if not 0 <= clean_frames <= latent_frames:
        raise ValueError(f"clean_frames {clean_frames} outside 0..{latent_frames}")
    t = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1)
    if t.numel() not in (1, batch):
        raise ValueError(f"timestep has {t.numel()} values for batch {batch}")
    per_frame = t.view(-1, 1).expand(batch, latent_frames).clone()
    per_frame[:, :clean_frames] = 0.0
    return per_frame


def token_timesteps(
    timestep: float | torch.Tensor,
    latent_shape: tuple[int, int, int],
    patch_size: tuple[int, int, int] | list[int],
    clean_frames: int,
    batch: int,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The ``[B, seq]`` timestep the transformer takes, tokens ordered (frame, row, column).

    ``latent_shape`` is ``(F, h, w)``. Wan's patch embedding is a Conv3d with stride
    ``patch_size`` followed by ``flatten(2)``, so token ``i`` belongs to post-patch frame
    ``i // tokens_per_frame``. Clean frames must fill whole temporal patches, or a token would mix
    clean and noisy frames.
    """
    frames, height, width = latent_shape
    p_t, p_h, p_w = (int(p) for p in patch_size)
    if frames % p_t or height % p_h or width % p_w:
        raise ValueError(f"latent grid {frames}x{height}x{width} is not divisible by patch {(p_t, p_h, p_w)}")
    if clean_frames % p_t:
        raise ValueError(f"{clean_frames} clean frames do not fill temporal patches of {p_t}")
    per_frame = frame_timesteps(timestep, frames, clean_frames, batch)[:, ::p_t]
    return per_frame.repeat_interleave((height // p_h) * (width // p_w), dim=1).to(device)


def audio_frame_mask(latent_frames: int, clean_frames: int, batch: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Bool ``[B, F]``: True on frames that hear audio; clean prefix frames hear none (DESIGN 3.2)."""
    mask = torch.ones(batch, latent_frames, dtype=torch.bool, device=device)
    mask[:, :clean_frames] = False
    return mask
