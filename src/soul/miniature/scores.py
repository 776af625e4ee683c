"""The scores of a generated drawn-face video: one definition for `soul demo` and the speed benchmark.

Why one place: a speed-up "at equal quality" is only meaningful if the benchmark measures quality
exactly as the demo reports it (same lip-sync skip of the portrait frame, same chance level, same
drift window, same flicker).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from soul.bench.metrics import clip_from_frames, flicker
from soul.miniature.drift import drift_curves
from soul.miniature.lipsync import score_lipsync, score_mismatched
from soul.miniature.portrait import FaceParams


def _drift_window(seconds: float) -> float:
    """Drift windows of 10 s from 20 s of video on (last against first); shorter videos use halves."""
    return 10.0 if seconds >= 20.0 else max(1.0, seconds / 2)


def score_drawn_video(frames: np.ndarray, fps: float, face: FaceParams, audio: np.ndarray, seed: int) -> dict[str, Any]:
    """Lip sync with ``audio`` (frame 0, the portrait itself, skipped) and with 4 unrelated tracks
    (the chance level), identity and colour drift curves, and flicker."""
    own = score_lipsync(frames, face, audio, fps, skip_frames=1)
    return {
        "lipsync_r": own.r,
        "lipsync_lag": own.lag,
        "lipsync_r_mismatched": score_mismatched(frames, face, fps, seed=seed, skip_frames=1),
        "drift": drift_curves(frames, face, fps, window_seconds=_drift_window(frames.shape[0] / fps)),
        "flicker": float(flicker(clip_from_frames(list(frames), fps))["flicker"]),
    }


__all__ = ["score_drawn_video"]
