"""Is a portrait a flat-colour drawing (the miniature world's kind) or a photo or painting?

The miniature models only ever saw procedurally drawn faces: a few flat colour fills with
anti-aliased edges. Given a photo they still produce a video, but a meaningless one, so generation
warns. Two measures on a 64x64 reduction tell the kinds apart: how much of the image the twelve
most common (coarsely binned) colours cover, and how many pixels equal their neighbours. Drawn
faces score about 0.90-0.94 and 0.67-0.71; every photo, painting, render, sketch and b/w portrait
in ../shared/media fails at least one (b/w photos have few colours but grain; flat-looking
paintings have texture): tests/test_analysis_drawing.py.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

ANALYSIS_SIDE = 64
MIN_PALETTE_COVERAGE = 0.85
MIN_FLAT_FRACTION = 0.55


def palette_coverage(rgb: np.ndarray, top: int = 12) -> float:
    """Fraction of pixels whose colour (16 levels per channel) is among the `top` most common."""
    binned = rgb.astype(np.int64) // 16
    keys = (binned[..., 0] * 256 + binned[..., 1] * 16 + binned[..., 2]).ravel()
    counts = np.sort(np.bincount(keys, minlength=4096))[::-1]
    return float(counts[:top].sum() / keys.size)


def flat_fraction(rgb: np.ndarray, tolerance: int = 2) -> float:
    """Fraction of inner pixels within `tolerance` levels of all four neighbours."""
    a = rgb.astype(np.int64)
    centre = a[1:-1, 1:-1]
    neighbours = (a[:-2, 1:-1], a[2:, 1:-1], a[1:-1, :-2], a[1:-1, 2:])
    step = np.max([np.abs(centre - n).max(axis=-1) for n in neighbours], axis=0)
    return float((step <= tolerance).mean())


def looks_drawn(image: Image.Image) -> bool:
    """True for a flat-colour drawing like the miniature world's faces.

    A wide picture (a drawn group, one square per person) is judged square by square along its
    long side, each at the size the measures were set on; it passes only if every square does.
    """
    rgb = image.convert("RGB")
    width, height = rgb.size
    tiles = max(1, round(max(width, height) / max(1, min(width, height))))
    along_x = width >= height
    for k in range(tiles):
        box = (k * width // tiles, 0, (k + 1) * width // tiles, height) if along_x else (0, k * height // tiles, width, (k + 1) * height // tiles)
        tile = np.asarray(rgb.crop(box).resize((ANALYSIS_SIDE, ANALYSIS_SIDE), Image.Resampling.BILINEAR))
        if palette_coverage(tile) < MIN_PALETTE_COVERAGE or flat_fraction(tile) < MIN_FLAT_FRACTION:
            return False
    return True
