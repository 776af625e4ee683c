"""Threshold-aware codebook replacement: drifted patches replaced, in-threshold ones untouched."""

from __future__ import annotations

import torch

from soul.sampling.codebook import LatentCodebook, from_patch_vectors, to_patch_vectors


def _scene(seed: int, frames: int = 6, c: int = 8, h: int = 8, w: int = 8) -> torch.Tensor:
    """Latents of a 'scene': fixed per-position content plus small per-frame motion noise."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(c, 1, h, w, generator=g)
    return base + 0.05 * torch.randn(c, frames, h, w, generator=g)


def test_patch_vectors_round_trip() -> None:
    x = torch.randn(8, 3, 6, 10)
    v = to_patch_vectors(x, 2)
    assert v.shape == (3, 3, 5, 32)
    assert torch.equal(from_patch_vectors(v, 8, 2), x)


def test_threshold_comes_from_first_chunk_statistics() -> None:
    scene = _scene(0)
    loose = LatentCodebook.build(scene[:, :1], scene[:, 1:], quantile=0.5)
    strict = LatentCodebook.build(scene[:, :1], scene[:, 1:], quantile=0.01)
    assert strict.threshold < loose.threshold < 1.0
    assert strict.threshold > 0.5  # frames of one scene resemble each other
    fixed = LatentCodebook.build(scene[:, :1], scene[:, 1:], threshold=0.3)
    assert fixed.threshold == 0.3


def test_in_threshold_vectors_are_untouched_and_drifted_ones_replaced() -> None:
    scene = _scene(1, frames=7)
    book = LatentCodebook.build(scene[:, :1], scene[:, 1:6])
    prefix = scene[:, 6:].clone()  # a new frame of the same scene: in distribution
    out, report = book.apply(prefix)
    assert report.replaced_fraction <= 0.1
    kept = out == prefix
    assert kept.float().mean() >= 0.9
    # now drift the top-left 2x2 patch of the prefix to something unrelated
    drifted = prefix.clone()
    drifted[:, :, :2, :2] = torch.randn(8, 1, 2, 2, generator=torch.Generator().manual_seed(9)) * 3
    out, report = book.apply(drifted)
    assert not torch.equal(out[:, :, :2, :2], drifted[:, :, :2, :2])
    patch = to_patch_vectors(out, 2)[0, 0, 0]
    sims = torch.nn.functional.cosine_similarity((book.entries - book.center), (patch - book.center)[None])
    assert sims.max() > 0.999  # replaced by an actual codebook entry
    # every patch whose similarity is at or above the threshold is bit-identical
    vectors = to_patch_vectors(drifted, 2)
    sim, _ = book.nearest(vectors.reshape(-1, vectors.shape[-1]))
    ok = (sim >= book.threshold).reshape(vectors.shape[:3])
    out_v = to_patch_vectors(out, 2)
    assert ok.sum() > 0 and torch.equal(out_v[ok], vectors[ok])
    assert not ok[0, 0, 0]


def test_blend_moves_partway() -> None:
    scene = _scene(2)
    book = LatentCodebook.build(scene[:, :1], scene[:, 1:])
    far = scene[:, -1:].clone()
    far[:, :, :2, :2] = -5.0
    full, _ = book.apply(far, blend=1.0)
    half, rep = book.apply(far, blend=0.5)
    assert rep.replaced_fraction > 0
    assert torch.allclose(half[:, :, :2, :2], 0.5 * far[:, :, :2, :2] + 0.5 * full[:, :, :2, :2], atol=1e-5)
    none, _ = book.apply(far, blend=0.0)
    assert torch.allclose(none, far)
