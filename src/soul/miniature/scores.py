"""The scores of a generated drawn-face video: one definition for `soul demo` and the speed benchmark.

Why one place: a speed-up "at equal quality" is only meaningful if the benchmark measures quality
exactly as the demo reports it (same lip-sync skip of the portrait frame, same chance level, same
drift window, same flicker).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from soul.bench.metrics import clip_from_frames, flicker
from soul.miniature.drift import drift_curves, portrait_curves
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


def score_portrait(frames: np.ndarray, fps: float, face_seed: int, audio: np.ndarray) -> dict[str, Any]:
    """How far the video stays from its portrait, per window, beside what the drawing itself scores.

    `video`: `portrait_curves` of the video against the portrait of `random_face(face_seed)`;
    `drawn`: the same for the drawn clip of that face speaking the same audio (it moves its mouth,
    blinks and sways, so its distance is the floor a perfect model reaches); `other_portrait`: the
    video against another person's portrait (the negative control: a measure that cannot tell
    people apart scores this as low as the rest). The top-level numbers are window means.
    """
    from soul.miniature.clips import draw_clip
    from soul.miniature.portrait import draw_face, random_face

    size = frames.shape[1]
    window = _drift_window(frames.shape[0] / fps)
    face = random_face(face_seed)
    portrait = np.asarray(draw_face(face, size))
    drawn = draw_clip(face_seed, frames.shape[0] / fps, fps, size, audio=audio).frames
    other = np.asarray(draw_face(random_face(face_seed + 7919), size))
    curves = {
        "video": portrait_curves(frames, face, portrait, fps, window_seconds=window),
        "drawn": portrait_curves(drawn, face, portrait, fps, window_seconds=window),
        "other_portrait": portrait_curves(frames, face, other, fps, window_seconds=window),
    }
    mean = {name: {k: round(float(np.mean(c[k])), 5) for k in ("identity", "eyes")} for name, c in curves.items()}
    return {
        **curves, "identity": mean["video"]["identity"], "eyes": mean["video"]["eyes"],
        "drawn_identity": mean["drawn"]["identity"], "drawn_eyes": mean["drawn"]["eyes"], "other_eyes": mean["other_portrait"]["eyes"],
    }


__all__ = ["score_drawn_video", "score_portrait"]
