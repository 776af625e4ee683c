"""Lip sync in the miniature world: measure how open a drawn mouth is, and score it against audio.

Why not the general estimator in `soul.analysis.lipsync`: that one needs dlib landmarks, which do
not fire on 64x64 drawn faces. In the miniature world the face layout is known exactly from the
portrait's parameters (where the mouth sits, what colour skin and lips are), so the mouth opening
can be read straight off the pixels of any frame that shows that face, generated or drawn.

Mouth measure: inside the mouth box (grown by the head sway's reach), each pixel's distance in RGB
to the nearest "closed" colour of this face (skin, lip, nose shading) says how much it belongs
to the opening (the dark inside, or teeth); the soft count of such pixels is the opening's area.
Roundness changes the inner ellipse's area by under 5 %, so the area tracks the drawn opening.

Scorer: Pearson r between that per-frame area and the audio's opening envelope (speech-band log
energy per frame, mapped exactly as the drawn clips map it, `clips.speech_features`, without the
mouth lead), at the best lag within +-2 frames (so the 40 ms lead the drawing uses, and any
one-frame slack a model learns, do not count against it). Lag sign: `lag > 0` means the mouth
follows the audio by `lag` frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soul.media.audio import MODEL_SAMPLE_RATE
from soul.miniature.clips import speech_features
from soul.miniature.portrait import FaceParams, _shade, mouth_box

DEFAULT_MAX_LAG = 2
SWAY_MARGIN = 0.02  # fraction of the image: drawn head sway reaches 0.015 (x) and 0.01 (y)


def lip_colour(face: FaceParams) -> tuple[int, int, int]:
    """The lip colour `draw_face` uses for this face."""
    return _shade(face.skin, 0.6, red=1.25)


def mouth_opening(frames: np.ndarray, face: FaceParams, *, tolerance: float = 60.0) -> np.ndarray:
    """Per-frame mouth-opening area (pixels, soft count) of frames `[T, S, S, 3]` showing `face`.

    A pixel counts fully when its RGB distance to both skin and lip colours exceeds `tolerance`
    (the inner mouth is ~150+ away from any skin tone, teeth likewise), partially in between; the
    box is the rest-pose mouth box grown by the sway's reach, so the mouth never leaves it.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[1] != frames.shape[2]:
        raise ValueError(f"frames must be [T, S, S, 3] square RGB, got shape {frames.shape}")
    size = frames.shape[1]
    rest = face.with_state(dx=0.0, dy=0.0)
    x0, y0, x1, y1 = mouth_box(rest, size)
    m = SWAY_MARGIN * size
    # The box's top reaches the eyes' lower lids at 64 px; the drawn inner mouth starts below the
    # head centre (cy = 0.54 S) except at the widest round opening, so the crop starts just there.
    eyes_clear = size * (0.54 + 0.03)
    xa, ya = max(0, int(np.floor(x0 - m))), max(0, int(np.floor(max(y0 - m, eyes_clear))))
    xb, yb = min(size, int(np.ceil(x1 + m))), min(size, int(np.ceil(y1 + m)))
    crop = frames[:, ya:yb, xa:xb].astype(np.float32)
    # "Closed" colours: skin, lips and the nose's shading line (it overlaps the box's top).
    refs = np.array([face.skin, lip_colour(face), _shade(face.skin, 0.75)], np.float32)
    dist = np.linalg.norm(crop[..., None, :] - refs, axis=-1).min(axis=-1)
    inside = np.clip((dist - 0.5 * tolerance) / (0.5 * tolerance), 0.0, 1.0)
    return inside.reshape(frames.shape[0], -1).sum(axis=1)


def audio_envelope(audio: np.ndarray, num_frames: int, fps: float) -> np.ndarray:
    """Per-frame opening the audio asks for: the drawn clips' own mapping, with no mouth lead."""
    return speech_features(np.asarray(audio, np.float32), num_frames, fps, lead_s=0.0)[0]


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 1e-12 else 0.0


def lagged_correlation(mouth: np.ndarray, envelope: np.ndarray, max_lag: int = DEFAULT_MAX_LAG) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r of `mouth[t]` with `envelope[t - lag]` for lag in -max_lag..max_lag (overlap only)."""
    mouth = np.asarray(mouth, np.float64)
    envelope = np.asarray(envelope, np.float64)
    n = min(mouth.shape[0], envelope.shape[0])
    if n <= 2 * max_lag + 2:
        raise ValueError(f"need more than {2 * max_lag + 2} frames to correlate, got {n}")
    lags = np.arange(-max_lag, max_lag + 1)
    rs = []
    for lag in lags:
        if lag >= 0:
            rs.append(_pearson(mouth[lag:n], envelope[: n - lag]))
        else:
            rs.append(_pearson(mouth[: n + lag], envelope[-lag:n]))
    return lags, np.array(rs)


@dataclass(frozen=True)
class LipSyncScore:
    """Best-lag correlation of mouth opening with the audio envelope, and the whole lag curve."""

    r: float
    lag: int
    lags: np.ndarray
    correlations: np.ndarray

    def as_dict(self) -> dict[str, float | int]:
        return {"r": round(self.r, 4), "lag": int(self.lag)}


def score_lipsync(
    frames: np.ndarray,
    face: FaceParams,
    audio: np.ndarray,
    fps: float,
    *,
    max_lag: int = DEFAULT_MAX_LAG,
    skip_frames: int = 0,
) -> LipSyncScore:
    """Score frames of `face` against 16 kHz `audio` starting at frame 0.

    `skip_frames` drops leading frames from the comparison (e.g. the anchor frame, which is the
    portrait and not driven by audio).
    """
    mouth = mouth_opening(frames, face)
    env = audio_envelope(audio, mouth.shape[0], fps)
    lags, rs = lagged_correlation(mouth[skip_frames:], env[skip_frames:], max_lag)
    best = int(np.argmax(rs))
    return LipSyncScore(float(rs[best]), int(lags[best]), lags, rs)


def score_mismatched(frames: np.ndarray, face: FaceParams, fps: float, *, others: int = 4, seed: int = 0, skip_frames: int = 0) -> float:
    """Mean best-lag r of the frames against `others` unrelated babble tracks of the same length.

    The chance level a real score must beat. Why a mean over several tracks: one unrelated track
    of 20 s still scores up to ~0.26 against drawn clips (the best of 5 lags of two smooth
    series), so a single draw says little; four of them average to ~0.1.
    """
    from soul.miniature.speech import synthesize_babble

    seconds = frames.shape[0] / fps
    rs = [score_lipsync(frames, face, synthesize_babble(seconds, MODEL_SAMPLE_RATE, seed=7919 + 104_729 * seed + k), fps, skip_frames=skip_frames).r
          for k in range(others)]
    return float(np.mean(rs))
