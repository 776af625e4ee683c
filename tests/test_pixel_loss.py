"""The decoded-mouth loss cuts the right pixels, scores only the mouth of generated frames, and
reaches the trainer's loss with its weight."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from soul.config import load_preset
from soul.miniature.clips import write_clip_shards
from soul.models.vae import build_vae, decode_latents
from soul.training.config import ConditioningConfig, DataConfig, OptimConfig, TrainConfig
from soul.training.pixel_loss import MouthCrop, crop_origin, first_generated_frame, mouth_crops, mouth_pixel_losses, predicted_clean_latents
from soul.training.trainer import Trainer

torch.set_num_threads(1)

BOX = (0.30, 0.55, 0.70, 0.85)  # a drawn close-up's mouth, normalised (x0, y0, x1, y1)


def test_the_prefix_ends_where_its_latent_frames_end() -> None:
    assert first_generated_frame(1, 4) == 1  # only the anchor: frame 0 has a latent frame of its own
    assert first_generated_frame(2, 4) == 5
    assert first_generated_frame(3, 4) == 9


def test_crop_windows_centre_on_the_box_and_stay_on_the_grid() -> None:
    assert crop_origin(BOX, 4, 8, 0) == 2  # centre 0.5 * 8 = 4, four cells from 2
    assert crop_origin(BOX, 4, 8, 1) == 4  # centre 0.7 * 8 = 5.6 -> 3.6 -> 4 (the last four rows)
    assert crop_origin((0.9, 0.9, 1.0, 1.0), 4, 8, 0) == 4  # at the edge: clamped, not cut
    assert crop_origin((0.0, 0.0, 0.1, 0.1), 4, 8, 1) == 0


def test_crops_take_latents_and_pixels_from_the_same_place() -> None:
    c, f, h, w, s = 3, 3, 8, 16, 8  # two people side by side, 8x latents
    latents = torch.arange(c * f * h * w, dtype=torch.float32).reshape(1, c, f, h, w)
    frames = np.zeros((9, h * s, w * s, 3), np.float32)
    frames[..., 0] = np.arange(w * s)[None, None, :] / 1000.0  # red: the column
    frames[..., 1] = np.arange(h * s)[None, :, None] / 1000.0  # green: the row
    frames[..., 2] = np.arange(9)[:, None, None] / 1000.0  # blue: the frame
    left, right = (0.15, 0.55, 0.35, 0.85), (0.65, 0.55, 0.85, 0.85)  # 3.2 cells wide: inside a 4-cell window
    crops = mouth_crops(latents, frames, [left, right], prefix_latents=2, cells=4, spatial_factor=s, temporal_factor=4, sample=1)
    assert len(crops) == 2 and {k.sample for k in crops} == {1}
    for crop, box in zip(crops, [left, right]):
        y0, x0 = crop_origin(box, 4, h, 1), crop_origin(box, 4, w, 0)
        assert torch.equal(crop.latents, latents[0, :, :, y0 : y0 + 4, x0 : x0 + 4])
        assert crop.truth.shape == (3, 9, 32, 32)
        assert crop.truth[0, 0, 0, 0] == pytest.approx(x0 * s / 1000.0) and crop.truth[1, 0, 0, 0] == pytest.approx(y0 * s / 1000.0)
        assert crop.mask[:, :5].sum() == 0  # the prefix's frames are given, not scored
        rows, cols = np.nonzero(crop.mask[0, 5].numpy())
        full_rows, full_cols = rows + y0 * s, cols + x0 * s  # back on the frame: inside the box, all of it
        assert full_rows.min() == int(box[1] * h * s) and full_rows.max() == int(np.ceil(box[3] * h * s)) - 1
        assert full_cols.min() == int(box[0] * w * s) and full_cols.max() == int(np.ceil(box[2] * w * s)) - 1
        assert torch.equal(crop.mask[:, 5], crop.mask[:, 8])


@pytest.fixture(scope="module")
def tiny_vae() -> torch.nn.Module:
    torch.manual_seed(0)
    vae = build_vae(load_preset("tiny"))
    for p in vae.parameters():
        p.requires_grad_(False)
    return vae


def test_the_loss_counts_only_the_masked_pixels_and_reaches_the_latents(tiny_vae: torch.nn.Module) -> None:
    z = tiny_vae.config.z_dim
    latents = torch.randn(z, 3, 4, 4, requires_grad=True)
    decoded = decode_latents(tiny_vae, latents[None].detach())[0]  # [3, 9, 64, 64]
    mask = torch.zeros(1, *decoded.shape[1:])
    mask[:, 5:, 30:40, 20:44] = 1.0
    exact = MouthCrop(latents, decoded.clone(), mask, sample=0)
    assert mouth_pixel_losses(tiny_vae, [exact], 2).tolist() == pytest.approx([0.0, 0.0], abs=1e-10)

    off_mouth = decoded.clone()
    off_mouth[:, :5] += 0.5  # the prefix's frames
    off_mouth[:, :, :30] -= 0.5  # above the mouth
    assert mouth_pixel_losses(tiny_vae, [MouthCrop(latents, off_mouth, mask, 1)], 2).tolist() == pytest.approx([0.0, 0.0], abs=1e-10)

    on_mouth = decoded.clone()
    on_mouth[:, 5:, 30:40, 20:44] += 0.1
    loss = mouth_pixel_losses(tiny_vae, [MouthCrop(latents, on_mouth, mask, 1)], 2)
    assert loss.tolist() == pytest.approx([0.0, 0.01], rel=1e-4)
    loss.sum().backward()
    assert latents.grad is not None and latents.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_vae.parameters())  # the decoder stays as it is


def test_clean_latents_keep_the_given_prefix() -> None:
    x0 = torch.randn(1, 4, 5, 2, 2)
    noise = torch.randn_like(x0)
    sigma = 0.7
    x_t = (1 - sigma) * x0 + sigma * noise
    x_t[:, :, :2] = x0[:, :, :2]
    clean = predicted_clean_latents(x_t, noise - x0, sigma, x0[:, :, :2])
    assert torch.allclose(clean, x0, atol=1e-6)  # the true velocity points back to x0, prefix included


@pytest.fixture(scope="module")
def drawn_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("drawn")
    write_clip_shards(out, num_clips=2, seconds=1.0, fps=16, size=64, seed=3, clips_per_shard=2)
    return out


def test_the_trainer_adds_the_weighted_mouth_loss(drawn_data: Path, tmp_path: Path) -> None:
    def losses(weight: float) -> torch.Tensor:
        cfg = TrainConfig(
            preset="tiny",
            trainable="all",
            data=DataConfig(path=str(drawn_data), num_frames=9, fps=16, buckets=[(64, 64)]),
            conditioning=ConditioningConfig(max_prefix_latents=1, mouth_weight=2.0, pixel_mouth_weight=weight),
            optim=OptimConfig(lr=1e-3, batch_size=2),
            max_steps=1,
            output=str(tmp_path / f"w{weight}"),
        )
        trainer = Trainer(cfg)
        indices = trainer.sample_indices(0, 0)
        return trainer.sample_losses(trainer.load_samples(indices), indices).detach()

    plain, once, twice = losses(0.0), losses(2.0), losses(4.0)
    assert (once > plain).all()  # the drawn clips carry mouth boxes: every sample is scored
    assert torch.allclose(twice - plain, 2 * (once - plain), rtol=1e-4)
