"""Per-frame mouth signals from 68-point landmarks: the visual half of the lip-sync estimator.

* `inner_mouth_gap` (what lmsync uses): the inner-lip gap (pairs 61-67, 62-66, 63-65) over the
  outer-eye-corner distance (36, 45), a face scale that does not move with speech; 0 means the
  lips touch. Chosen on the tuning clips described in `soul.analysis.lipsync`.
* `mouth_opening`: the outer-lip height (pairs 50-58, 51-57, 52-56) over the same scale.
* `mouth_darkness`: how dark the centre of the mouth is, in a window placed by the landmarks (the
  open oral cavity is dark). It was lmsync's signal until its choices turned out to be tuned on the
  very clips it was tested on; on the tuning clips it ranked own over foreign audio less often
  (78 of 88 pairs against the gap's 81). The per-person binding of `soul bench` still reads it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from soul.analysis.faces import FaceAnalyzer, FaceTrack
from soul.errors import InputError

INNER_PAIRS = ((61, 67), (62, 66), (63, 65))
OUTER_PAIRS = ((50, 58), (51, 57), (52, 56))
EYE_CORNERS = (36, 45)
CROP_SIZE = (32, 20)  # width, height of the normalised mouth crop
CENTRE = (slice(6, 14), slice(8, 24))  # rows, cols of the crop that hold the mouth interior


def _check(landmarks: np.ndarray) -> np.ndarray:
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.shape != (68, 2):
        raise InputError("landmarks", f"must be 68 points [68, 2], got {pts.shape}", "use FaceAnalyzer.landmarks68")
    return pts


def _eye_distance(pts: np.ndarray) -> float:
    return float(np.linalg.norm(pts[EYE_CORNERS[0]] - pts[EYE_CORNERS[1]]))


def _ratio(landmarks: np.ndarray, pairs: tuple[tuple[int, int], ...]) -> float:
    pts = _check(landmarks)
    gap = np.mean([np.linalg.norm(pts[a] - pts[b]) for a, b in pairs])
    scale = _eye_distance(pts)
    return float(gap / scale) if scale > 1e-6 else 0.0


def mouth_opening(landmarks: np.ndarray) -> float:
    """Outer-lip height over outer-eye-corner distance for one face (grows as the mouth opens)."""
    return _ratio(landmarks, OUTER_PAIRS)


def inner_mouth_gap(landmarks: np.ndarray) -> float:
    """Inner-lip gap over outer-eye-corner distance; 0 means the lips touch."""
    return _ratio(landmarks, INNER_PAIRS)


def mouth_crop(frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
    """Grey mouth crop, 1.5 x 1.0 eye distances around the lip centre, resized to 32x20.

    `frame` is RGB [H, W, 3] or already grey [H, W] (the luma plane bulk analysis decodes).

    Returns None when the mouth lies outside the frame (nothing to read).
    """
    import cv2

    pts = _check(landmarks)
    eye = _eye_distance(pts)
    if eye < 2:
        return None
    cx, cy = pts[48:68].mean(axis=0)
    h, w = frame.shape[:2]
    x0, x1 = int(max(0, cx - 0.75 * eye)), int(min(w, cx + 0.75 * eye))
    y0, y1 = int(max(0, cy - 0.5 * eye)), int(min(h, cy + 0.5 * eye))
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    region = np.ascontiguousarray(frame[y0:y1, x0:x1])
    grey = region if region.ndim == 2 else cv2.cvtColor(region, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, CROP_SIZE, interpolation=cv2.INTER_AREA)


def mouth_darkness(frame: np.ndarray, landmarks: np.ndarray) -> float | None:
    """1 - mean luma/255 at the mouth's centre: higher when the (dark) mouth cavity shows."""
    crop = mouth_crop(frame, landmarks)
    if crop is None:
        return None
    return float(1.0 - crop[CENTRE].mean() / 255.0)


def mouth_series(
    frames: Iterable[np.ndarray],
    analyzer: FaceAnalyzer,
    track: FaceTrack,
    *,
    start: int = 0,
    signal: str = "gap",
) -> np.ndarray:
    """One mouth value per frame for a tracked face (frame `start` first); `signal` picks which.

    The track gives the box at each frame (interpolated between detections), so only the cheap
    landmark predictor runs per frame. A frame where the mouth cannot be read repeats the last
    value (or the first readable one at the start), which adds no false movement.
    """
    readers = {"gap": lambda frame, pts: inner_mouth_gap(pts), "darkness": mouth_darkness, "opening": lambda frame, pts: mouth_opening(pts)}
    if signal not in readers:
        raise InputError("signal", f"unknown mouth signal {signal!r}", f"use one of {sorted(readers)}")
    read = readers[signal]
    values: list[float | None] = []
    for offset, frame in enumerate(frames):
        values.append(read(frame, analyzer.landmarks68(frame, track.box_at(start + offset))))
    readable = [v for v in values if v is not None]
    if not readable:
        return np.zeros(len(values), dtype=np.float64)
    last = readable[0]
    filled = []
    for v in values:
        last = v if v is not None else last
        filled.append(last)
    return np.asarray(filled, dtype=np.float64)
