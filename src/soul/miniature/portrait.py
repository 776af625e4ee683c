"""Procedural faces: a portrait drawn from random parameters, with controllable mouth and eyes.

The face layout is known exactly (where the mouth is, how open it is), which is what lets the
miniature world measure lip sync on generated frames without any face model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

Color = tuple[int, int, int]
# Training draws faces (and their babble) from seeds below this; evaluation, the demo and the
# benchmarks draw from here up, so "a person who never appeared in training" is true.
HELD_OUT_SEED = 1_000_000


@dataclass(frozen=True)
class FaceParams:
    """Everything that identifies a drawn person, plus the per-frame pose/expression fields."""

    skin: Color
    hair: Color
    background: Color
    shirt: Color
    head_width: float  # fraction of the image width
    head_height: float  # fraction of the image height
    eye_spacing: float  # fraction of head width
    eye_size: float  # fraction of head width
    mouth_width: float  # fraction of head width
    mouth_y: float  # fraction of head height below the centre
    # per-frame state
    mouth_open: float = 0.0  # 0 closed .. 1 wide open
    mouth_round: float = 0.0  # 0 spread .. 1 rounded (narrower, taller)
    eye_open: float = 1.0  # 0 closed (blink) .. 1 open
    dx: float = 0.0  # head offset, fraction of the image width
    dy: float = 0.0

    def with_state(self, **state: float) -> "FaceParams":
        return replace(self, **state)

    def as_dict(self) -> dict:
        return asdict(self)


def random_face(seed: int) -> FaceParams:
    """Draw a new person; the same seed gives the same person."""
    rng = np.random.default_rng(seed)

    def colour(lo: int, hi: int) -> Color:
        return tuple(int(c) for c in rng.integers(lo, hi, 3))  # type: ignore[return-value]

    skin_tone = rng.uniform(0.25, 1.0)
    skin = (int(110 + 135 * skin_tone), int(70 + 120 * skin_tone), int(50 + 100 * skin_tone))
    return FaceParams(
        skin=skin,
        hair=colour(10, 140),
        background=colour(60, 230),
        shirt=colour(20, 230),
        # A close-up: the head fills most of the frame and the mouth spans about 2x2 latent cells
        # of the 16x-compressing VAE at 64 px. Why: in a wider shot the mouth is one cell, and the
        # mini video VAE (4 frames per latent) then learnt to draw one average mouth (measured:
        # lip-sync ceiling r 0.2-0.37 after 800 steps); the face's large shapes it learns first.
        head_width=float(rng.uniform(0.60, 0.72)),
        head_height=float(rng.uniform(0.78, 0.90)),
        eye_spacing=float(rng.uniform(0.36, 0.46)),
        eye_size=float(rng.uniform(0.10, 0.14)),
        mouth_width=float(rng.uniform(0.42, 0.54)),
        mouth_y=float(rng.uniform(0.34, 0.42)),
    )


def mouth_box(p: FaceParams, size: int) -> tuple[float, float, float, float]:
    """Pixel box (x0, y0, x1, y1) that contains the mouth at any opening: where to measure it."""
    cx, cy = size * (0.5 + p.dx), size * (0.54 + p.dy)
    hw, hh = size * p.head_width / 2, size * p.head_height / 2
    my = cy + hh * p.mouth_y
    half_w = hw * p.mouth_width
    return (cx - half_w * 1.1, my - hh * 0.32, cx + half_w * 1.1, my + hh * 0.32)


def draw_face(p: FaceParams, size: int = 256, supersample: int = 2) -> Image.Image:
    """Render the face as an RGB image of `size` x `size` (anti-aliased by supersampling)."""
    s = size * supersample
    img = Image.new("RGB", (s, s), p.background)
    d = ImageDraw.Draw(img)
    cx, cy = s * (0.5 + p.dx), s * (0.54 + p.dy)
    hw, hh = s * p.head_width / 2, s * p.head_height / 2
    # shoulders and neck
    d.ellipse([cx - hw * 1.9, cy + hh * 0.85, cx + hw * 1.9, cy + hh * 2.6], fill=p.shirt)
    d.rectangle([cx - hw * 0.35, cy + hh * 0.5, cx + hw * 0.35, cy + hh * 1.05], fill=p.skin)
    # hair behind, head, hair on top
    d.ellipse([cx - hw * 1.12, cy - hh * 1.12, cx + hw * 1.12, cy + hh * 0.55], fill=p.hair)
    d.ellipse([cx - hw, cy - hh, cx + hw, cy + hh], fill=p.skin)
    d.chord([cx - hw * 1.05, cy - hh * 1.1, cx + hw * 1.05, cy - hh * 0.1], 180, 360, fill=p.hair)
    # eyes
    ey = cy - hh * 0.12
    er = hw * p.eye_size
    for side in (-1, 1):
        ex = cx + side * hw * p.eye_spacing
        open_h = max(er * 0.08, er * 0.75 * p.eye_open)
        d.ellipse([ex - er, ey - open_h, ex + er, ey + open_h], fill=(250, 250, 250))
        if p.eye_open > 0.25:
            pr = min(er * 0.5, open_h)
            d.ellipse([ex - pr, ey - pr, ex + pr, ey + pr], fill=(30, 25, 20))
        d.line([ex - er * 1.2, ey - er * 1.4, ex + er * 1.2, ey - er * 1.5], fill=p.hair, width=max(1, int(er * 0.3)))
    # nose
    d.line([cx, cy - hh * 0.02, cx - hw * 0.06, cy + hh * 0.14, cx + hw * 0.02, cy + hh * 0.16], fill=_shade(p.skin, 0.75), width=max(1, s // 160))
    # mouth: lips as an outer ellipse, the opening as a dark inner ellipse
    my = cy + hh * p.mouth_y
    mw = hw * p.mouth_width * (1 - 0.35 * p.mouth_round)
    open_h = hh * (0.015 + 0.20 * p.mouth_open) * (1 + 0.3 * p.mouth_round)
    lip = _shade(p.skin, 0.6, red=1.25)
    d.ellipse([cx - mw, my - open_h - hh * 0.035, cx + mw, my + open_h + hh * 0.035], fill=lip)
    d.ellipse([cx - mw * 0.85, my - open_h, cx + mw * 0.85, my + open_h], fill=(45, 12, 18))
    if p.mouth_open > 0.35:  # teeth show when the mouth is well open
        d.chord([cx - mw * 0.7, my - open_h, cx + mw * 0.7, my + open_h * 0.2], 180, 360, fill=(235, 235, 225))
    return img.resize((size, size), Image.Resampling.LANCZOS)


def _shade(c: Color, factor: float, red: float = 1.0) -> Color:
    return (min(255, int(c[0] * factor * red)), int(c[1] * factor), int(c[2] * factor))
