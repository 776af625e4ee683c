"""Drift measures of the miniature world on drawn clips whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from soul.miniature.clips import draw_clip
from soul.miniature.drift import drift_curves
from soul.miniature.portrait import draw_face


@pytest.fixture(scope="module")
def clip():  # noqa: ANN201 - DrawnClip
    return draw_clip(3, 6.0)


def test_one_drawn_face_over_time_hardly_drifts(clip) -> None:  # noqa: ANN001
    d = drift_curves(clip.frames, clip.face, clip.fps, window_seconds=2.0)
    assert d["start_seconds"] == [0.0, 2.0, 4.0] and d["identity_distance"][0] == 0.0
    assert max(d["identity_distance"]) < 0.05 and max(d["colour_drift"]) < 1.5  # head sway only


def test_a_colour_cast_shows_as_colour_drift_in_its_windows(clip) -> None:  # noqa: ANN001
    cast = clip.frames.astype(float)
    cast[48:, ..., 0] *= 1.12
    d = drift_curves(np.clip(cast, 0, 255).astype(np.uint8), clip.face, clip.fps, window_seconds=1.0)
    base = drift_curves(clip.frames, clip.face, clip.fps, window_seconds=1.0)
    assert all(c > b + 2.0 for c, b in zip(d["colour_drift"][3:], base["colour_drift"][3:]))
    assert d["colour_drift"][:3] == base["colour_drift"][:3]


def test_another_person_is_far_while_speech_and_blinks_are_not(clip) -> None:  # noqa: ANN001
    swapped = np.concatenate([clip.frames[:48], draw_clip(4, 6.0).frames[48:]])
    other = drift_curves(swapped, clip.face, clip.fps, window_seconds=1.0)["identity_distance"]
    still = np.stack([np.asarray(draw_face(clip.face.with_state(mouth_open=0.0), 64))] * 32)
    talking = np.stack([np.asarray(draw_face(clip.face.with_state(mouth_open=1.0, eye_open=0.05), 64))] * 16)
    moving = drift_curves(np.concatenate([still[:16], talking]), clip.face, clip.fps, window_seconds=1.0)["identity_distance"]
    assert min(other[3:]) > 0.2
    assert moving[1] < 0.1 * min(other[3:])  # a wide-open mouth and shut eyes are not another person


def test_streams_frames_and_rejects_non_square_input(clip) -> None:  # noqa: ANN001
    assert drift_curves(iter(clip.frames), clip.face, clip.fps, window_seconds=2.0) == drift_curves(clip.frames, clip.face, clip.fps, window_seconds=2.0)
    with pytest.raises(ValueError, match="square"):
        drift_curves(clip.frames[:, :, :40], clip.face, clip.fps)


def test_distance_to_portrait_separates_the_person_from_another(clip) -> None:  # noqa: ANN001
    from soul.miniature.drift import distance_to_portrait

    portrait = np.asarray(draw_face(clip.face, 64))
    own = distance_to_portrait(clip.frames, clip.face, portrait)
    other = distance_to_portrait(draw_clip(4, 2.0).frames, clip.face, portrait)
    assert own["identity_distance"] < 0.03 and own["colour_difference"] < 1.0
    assert other["identity_distance"] > 5 * own["identity_distance"] and other["colour_difference"] > 5.0
