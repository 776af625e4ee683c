"""Identity and colour drift of a generated video of a known drawn face, window by window.

Why not the benchmark's dlib identity: dlib does not fire on 64x64 drawn faces. A drawn person's
identity is their colours and shapes (skin, hair, head outline, eyes' placement), all known from
the portrait's parameters, so it is measured straight on the pixels of the head region:
- identity descriptor: the head box at 16x16 (area average), the mouth box and the eye band
  masked out, because speech and blinks move them and that is not identity; a window's
  descriptor is the mean over its frames, which also averages the small head sway away.
  Identity distance = RMS difference (0..1 pixel scale) between a window's descriptor and the
  first window's.
- colour: the mean CIELAB of the inner head box; colour drift = CIEDE2000 between a window's
  mean and the first window's (the benchmark's colour measure, `soul.bench.signal`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from soul.bench.signal import ciede2000, rgb_to_lab
from soul.miniature.portrait import FaceParams, mouth_box

DESCRIPTOR_SIZE = 16


def head_box(face: FaceParams, size: int) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1) inside the drawn head at rest (80 % of it: no background or hair edge)."""
    cx, cy = size * 0.5, size * 0.54
    hw, hh = size * face.head_width / 2 * 0.8, size * face.head_height / 2 * 0.8
    return (max(0, int(cx - hw)), max(0, int(cy - hh)), min(size, int(np.ceil(cx + hw))), min(size, int(np.ceil(cy + hh))))


def _descriptor_mask(face: FaceParams, size: int) -> np.ndarray:
    """[16, 16] weights over the head box: 0 where the mouth or the eyes are, 1 elsewhere."""
    x0, y0, x1, y1 = head_box(face, size)
    ys = y0 + (np.arange(DESCRIPTOR_SIZE) + 0.5) * (y1 - y0) / DESCRIPTOR_SIZE
    xs = x0 + (np.arange(DESCRIPTOR_SIZE) + 0.5) * (x1 - x0) / DESCRIPTOR_SIZE
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    mask = np.ones((DESCRIPTOR_SIZE, DESCRIPTOR_SIZE), np.float32)
    mx0, my0, mx1, my1 = mouth_box(face.with_state(dx=0.0, dy=0.0), size)
    pad = 0.03 * size
    mask[(xx >= mx0 - pad) & (xx <= mx1 + pad) & (yy >= my0 - pad) & (yy <= my1 + pad)] = 0.0
    eye_y = size * 0.54 - size * face.head_height / 2 * 0.12
    eye_r = size * face.head_width / 2 * face.eye_size * 1.6 + pad
    mask[np.abs(yy - eye_y) <= eye_r] = 0.0
    return mask


def _head_pixels(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return frame[y0:y1, x0:x1].astype(np.float32) / 255.0


def _area_resize(crop: np.ndarray, out: int) -> np.ndarray:
    """Area-average an [H, W, 3] crop to [out, out, 3] (edges by nearest index bins)."""
    h, w = crop.shape[:2]
    ys = np.linspace(0, h, out + 1).astype(int)
    xs = np.linspace(0, w, out + 1).astype(int)
    res = np.empty((out, out, 3), np.float32)
    for i in range(out):
        for j in range(out):
            cell = crop[ys[i] : max(ys[i + 1], ys[i] + 1), xs[j] : max(xs[j + 1], xs[j] + 1)]
            res[i, j] = cell.reshape(-1, 3).mean(axis=0)
    return res


def frame_features(frame: np.ndarray, face: FaceParams) -> tuple[np.ndarray, np.ndarray]:
    """(identity descriptor [16, 16, 3] in 0..1, mean Lab colour [3]) of one square RGB frame."""
    size = frame.shape[0]
    box = head_box(face, size)
    crop = _head_pixels(frame, box)
    lab = rgb_to_lab(np.asarray(frame[box[1] : box[3], box[0] : box[2]]).reshape(-1, 3)).mean(axis=0)
    return _area_resize(crop, DESCRIPTOR_SIZE), lab


def drift_curves(frames: np.ndarray | Iterable[np.ndarray], face: FaceParams, fps: float, *, window_seconds: float = 10.0) -> dict:
    """Identity distance and colour drift of each `window_seconds` window against the first one.

    `frames` is [T, S, S, 3] uint8 or any iterable of such frames (e.g. a video reader), read once.
    A last window shorter than half a window is merged into the one before it.
    """
    per_window = max(1, int(round(window_seconds * fps)))
    sums: list[list] = []  # per window: [descriptor sum, lab sum, count]
    mask = None
    for i, frame in enumerate(frames):
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[0] != frame.shape[1] or frame.shape[2] != 3:
            raise ValueError(f"frames must be square RGB [S, S, 3], got {frame.shape}")
        if mask is None:
            mask = _descriptor_mask(face, frame.shape[0])[..., None]
        desc, lab = frame_features(frame, face)
        if i % per_window == 0:
            sums.append([np.zeros_like(desc), np.zeros(3), 0])
        sums[-1][0] += desc
        sums[-1][1] += lab
        sums[-1][2] += 1
    if not sums:
        raise ValueError("no frames to measure")
    if len(sums) > 1 and sums[-1][2] < per_window / 2:
        last = sums.pop()
        sums[-1] = [sums[-1][0] + last[0], sums[-1][1] + last[1], sums[-1][2] + last[2]]
    descs = [s[0] / s[2] for s in sums]
    labs = np.stack([s[1] / s[2] for s in sums])
    assert mask is not None
    weight = float(mask.sum() * 3)
    identity = [float(np.sqrt((((d - descs[0]) ** 2) * mask).sum() / weight)) for d in descs]
    colour = ciede2000(np.broadcast_to(labs[0], labs.shape), labs).astype(float).tolist()
    starts = [round(k * per_window / fps, 3) for k in range(len(sums))]
    return {
        "window_seconds": window_seconds,
        "start_seconds": starts,
        "identity_distance": [round(v, 5) for v in identity],
        "colour_drift": [round(float(v), 4) for v in colour],
        "identity_end": round(identity[-1], 5),
        "colour_end": round(float(colour[-1]), 4),
        "identity_mean": round(float(np.mean(identity[1:])) if len(identity) > 1 else 0.0, 5),
        "colour_mean": round(float(np.mean(colour[1:])) if len(colour) > 1 else 0.0, 4),
    }


def distance_to_portrait(frames: np.ndarray | Iterable[np.ndarray], face: FaceParams, portrait: np.ndarray) -> dict[str, float]:
    """Identity distance and colour difference (CIEDE2000) of a whole video against its portrait.

    The same measures as `drift_curves`, with the portrait (at the video's size) as the
    reference instead of the first window: how far a sampler's output is from the person asked for.
    """
    portrait = np.asarray(portrait)
    mask = _descriptor_mask(face, portrait.shape[0])[..., None]
    ref_desc, ref_lab = frame_features(portrait, face)
    desc_sum, lab_sum, count = np.zeros_like(ref_desc), np.zeros(3), 0
    for frame in frames:
        desc, lab = frame_features(np.asarray(frame), face)
        desc_sum += desc
        lab_sum += lab
        count += 1
    if not count:
        raise ValueError("no frames to measure")
    identity = float(np.sqrt((((desc_sum / count - ref_desc) ** 2) * mask).sum() / float(mask.sum() * 3)))
    colour = float(ciede2000(ref_lab[None], (lab_sum / count)[None])[0])
    return {"identity_distance": round(identity, 5), "colour_difference": round(colour, 4)}
