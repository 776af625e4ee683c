"""The miniature world's lip-sync yardstick: the mouth measure tracks the drawn truth, and the
scorer separates a clip's own audio from another clip's."""

from __future__ import annotations

import numpy as np
import pytest

from soul.miniature.clips import draw_clip
from soul.miniature.lipsync import audio_envelope, lagged_correlation, mouth_opening, score_lipsync
from soul.miniature.portrait import draw_face, random_face


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_mouth_measure_follows_the_drawn_opening_with_head_sway(seed: int) -> None:
    clip = draw_clip(seed, 4.0)  # drawn clips sway the head and blink
    measured = mouth_opening(clip.frames, clip.face)
    assert np.corrcoef(measured, clip.mouth_open)[0, 1] >= 0.9


def test_mouth_measure_is_monotonic_in_opening_at_a_swayed_pose() -> None:
    face = random_face(11)
    frames = np.stack([np.asarray(draw_face(face.with_state(mouth_open=o, dx=0.015, dy=-0.01), 64)) for o in np.linspace(0, 1, 6)])
    areas = mouth_opening(frames, face)
    assert np.all(np.diff(areas) > 0)


def test_measure_reads_only_the_mouth() -> None:
    # Blinks and a different background change the frame but not the measured opening.
    face = random_face(5)
    a = np.asarray(draw_face(face.with_state(mouth_open=0.5, eye_open=1.0), 64))
    b = np.asarray(draw_face(face.with_state(mouth_open=0.5, eye_open=0.05, background=(0, 0, 0)), 64))
    m = mouth_opening(np.stack([a, b]), face)
    assert abs(m[0] - m[1]) < 0.02 * m[0]


def test_scorer_separates_own_audio_from_another_clips_audio() -> None:
    own, mismatched = [], []
    for seed in range(4):
        clip = draw_clip(seed, 8.0)
        other = draw_clip(seed + 100, 8.0)
        own.append(score_lipsync(clip.frames, clip.face, clip.audio, clip.fps).r)
        mismatched.append(score_lipsync(clip.frames, clip.face, other.audio, clip.fps).r)
    assert min(own) >= 0.7
    assert max(abs(r) for r in mismatched) <= 0.3
    assert np.mean(own) - np.mean(np.abs(mismatched)) >= 0.5


def test_scorer_finds_an_injected_delay() -> None:
    clip = draw_clip(7, 6.0)
    delayed = np.concatenate([clip.frames[:1]] * 2 + [clip.frames[:-2]])  # mouth 2 frames late
    score = score_lipsync(delayed, clip.face, clip.audio, clip.fps, max_lag=4)
    direct = score_lipsync(clip.frames, clip.face, clip.audio, clip.fps, max_lag=4)
    assert score.lag == direct.lag + 2
    assert score.r > 0.7


def test_static_mouth_scores_zero() -> None:
    face = random_face(3)
    frame = np.asarray(draw_face(face.with_state(mouth_open=0.3), 64))
    clip = draw_clip(3, 3.0)
    score = score_lipsync(np.stack([frame] * clip.frames.shape[0]), face, clip.audio, clip.fps)
    assert score.r == 0.0


def test_lagged_correlation_rejects_too_short_series() -> None:
    with pytest.raises(ValueError):
        lagged_correlation(np.ones(5), np.ones(5), 2)
    env = audio_envelope(np.zeros(16000, np.float32), 16, 16.0)
    assert env.shape == (16,)


def test_mismatched_audio_scores_near_zero_on_average() -> None:
    from soul.miniature.lipsync import score_mismatched

    clip = draw_clip(2, 20.0)
    own = score_lipsync(clip.frames, clip.face, clip.audio, clip.fps, skip_frames=1).r
    chance = score_mismatched(clip.frames, clip.face, clip.fps, seed=2, skip_frames=1)
    assert own > 0.8 and abs(chance) < 0.15  # measured 0.89 and -0.02
