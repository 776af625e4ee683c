"""A loss on the decoded mouth: the predicted clean latents through the frozen VAE decoder, in pixels.

Why: the flow-matching loss is a mean squared error on latents, where a mouth that opens and closes
inside one latent frame (four video frames share it) is a small part of the latent's variance, so
the loss barely asks for it. Measuring the mouth after the decoder weighs it as it is seen. This is
the pixel-space supervision LatentSync trains its lip sync with (its VAE decoder is frozen too);
diffusers has no such loss, hence this module.

The clean latents are read off the velocity the model predicts (``x0 = x_t - sigma v``); the given
motion prefix keeps its true latents. Only frames after the prefix are scored, inside each
speaker's mouth box, against the clip's own frames.

Cost: the decoder runs forward and backward every step. So only a square of latent cells around
each mouth is decoded (``crop`` cells a side, clamped to the grid), and every crop of a batch goes
through the decoder at once. The decoder pads the crop's edges with zeros where the full frame has
neighbours; with a cell or more of margin around the box the mouth itself decodes as in the frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from soul.models.vae import decode_latents
from soul.training.data import box_slices

Box = tuple[float, float, float, float]


def predicted_clean_latents(x_t: torch.Tensor, velocity: torch.Tensor, sigma: float, x0_prefix: torch.Tensor) -> torch.Tensor:
    """``[1, C, F, h, w]`` clean latents the velocity points to, the first ``x0_prefix.shape[2]``
    latent frames replaced by the given (true) prefix."""
    prefix = x0_prefix.shape[2]
    generated = x_t[:, :, prefix:] - sigma * velocity[:, :, prefix:]
    return torch.cat([x0_prefix, generated], dim=2)


def first_generated_frame(prefix_latents: int, temporal_factor: int) -> int:
    """Index of the first video frame not covered by the prefix (the causal VAE's frame 0 has a
    latent frame of its own; every later latent frame holds ``temporal_factor`` frames)."""
    return 1 + temporal_factor * (prefix_latents - 1)


def crop_origin(box: Box, cells: int, grid: int, axis: int) -> int:
    """First latent cell of a ``cells``-wide window centred on the box along one axis (0 = x,
    1 = y), clamped so the window stays on a grid of ``grid`` cells."""
    centre = (box[axis] + box[axis + 2]) / 2 * grid
    return int(min(max(round(centre - cells / 2), 0), grid - cells))


@dataclass
class MouthCrop:
    """One mouth to score: its latents, the clip's pixels under them, and which of those count."""

    latents: torch.Tensor  # [C, F, c, c], normalised, attached to the model's prediction
    truth: torch.Tensor  # [3, T, c * s, c * s] in [-1, 1]
    mask: torch.Tensor  # [1, T, c * s, c * s]: 1 inside the mouth box on generated frames
    sample: int  # which sample of the batch it belongs to


def mouth_crops(
    clean_latents: torch.Tensor,
    frames: np.ndarray,
    mouth_boxes: Sequence[Box],
    prefix_latents: int,
    cells: int,
    spatial_factor: int,
    temporal_factor: int,
    sample: int,
) -> list[MouthCrop]:
    """Cut a ``cells`` x ``cells`` window of latents around each mouth box (clamped to the grid),
    with the clip's frames under it and the mask of what is scored."""
    _, _, _, h, w = clean_latents.shape
    ch, cw = min(cells, h), min(cells, w)
    pixels = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)  # [3, T, H, W]
    start = first_generated_frame(prefix_latents, temporal_factor)
    crops = []
    for box in mouth_boxes:
        y0, x0 = crop_origin(box, ch, h, 1), crop_origin(box, cw, w, 0)
        ys, xs = slice(y0 * spatial_factor, (y0 + ch) * spatial_factor), slice(x0 * spatial_factor, (x0 + cw) * spatial_factor)
        mask = torch.zeros(1, *pixels.shape[1:])
        rows, cols = box_slices(box, *pixels.shape[2:])
        mask[:, start:, rows, cols] = 1.0
        crops.append(MouthCrop(clean_latents[0, :, :, y0 : y0 + ch, x0 : x0 + cw], pixels[:, :, ys, xs], mask[:, :, ys, xs], sample))
    return crops


def mouth_pixel_losses(vae: torch.nn.Module, crops: Sequence[MouthCrop], batch: int) -> torch.Tensor:
    """Per-sample mean squared error ``[batch]`` inside the mouth boxes, all crops decoded at once
    through the frozen decoder (gradients flow to the latents). A sample without a crop gets 0."""
    if not crops:
        return torch.zeros(batch)  # the caller moves it to its losses' device
    decoded = decode_latents(vae, torch.stack([c.latents for c in crops]))  # [N, 3, T, H, W]
    sums = torch.zeros(batch, dtype=decoded.dtype, device=decoded.device)
    counts = torch.zeros(batch, dtype=decoded.dtype, device=decoded.device)
    for k, crop in enumerate(crops):
        mask = crop.mask.to(decoded)
        error = (decoded[k] - crop.truth.to(decoded)) ** 2 * mask
        sums = sums.index_add(0, torch.tensor([crop.sample], device=decoded.device), error.sum()[None])
        counts[crop.sample] += float(mask.sum()) * 3
    return sums / counts.clamp(min=1.0)
