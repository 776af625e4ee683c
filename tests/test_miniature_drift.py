"""Drift measures of the miniature world on drawn clips whose truth is known."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from soul.miniature.clips import DrawnClip, draw_clip
from soul.miniature.drift import (
    colour_drift,
    distance_to_portrait,
    drift_curves,
    face_box,
    identity_descriptor,
    identity_distance,
    palette_masks,
    portrait_curves,
)
from soul.miniature.portrait import FaceParams, draw_face, random_face

FPS = 16.0


@pytest.fixture(scope="module")
def clip() -> DrawnClip:
    return draw_clip(3, 6.0)


def talking(face: FaceParams, opening: np.ndarray, size: int = 64) -> np.ndarray:
    """`face` drawn with the given per-frame mouth opening and a fixed head sway: any face, same motion."""
    t = np.arange(len(opening)) / FPS
    return np.stack([
        np.asarray(draw_face(face.with_state(mouth_open=float(o), dx=0.015 * np.sin(1.6 * ti), dy=0.01 * np.sin(1.1 * ti)), size))
        for o, ti in zip(opening, t)
    ])


def test_one_drawn_face_over_time_hardly_drifts() -> None:
    long_clip = draw_clip(3, 30.0)  # 10 s windows average the head sway (periods 4-5.6 s) away
    d = drift_curves(long_clip.frames, long_clip.face, long_clip.fps)
    assert d["start_seconds"] == [0.0, 10.0, 20.0] and d["identity_distance"][0] == 0.0 and d["colour_drift"][0] == 0.0
    assert d["identity_max"] < 0.02 and d["colour_max"] < 0.5  # speech and blinks only (drawn: 0.005 / 0.17)
    assert d["palette_max"] < 0.01 and set(d["palette_by_region"]) == {"skin", "hair", "background", "shirt"}
    assert d["identity_end"] == d["identity_distance"][-1] and d["colour_end"] == d["colour_drift"][-1]


def test_palette_regions_hold_only_their_drawn_colour(clip: DrawnClip) -> None:
    colours = {"skin": clip.face.skin, "hair": clip.face.hair, "background": clip.face.background, "shirt": clip.face.shirt}
    for name, mask in palette_masks(clip.face, 64).items():
        error = np.abs(clip.frames[:, mask].astype(int) - np.array(colours[name])).max()
        assert error <= 4, (name, error)  # sway and blinking eyes never reach into a region
    x0, y0, x1, y1 = face_box(clip.face, 64)
    assert 0 < x0 < x1 < 64 and 0 < y0 < y1 < 64 and x0 + x1 == 64


def test_a_colour_cast_shows_as_colour_drift_in_its_windows(clip: DrawnClip) -> None:
    cast = clip.frames.astype(float)
    cast[48:, ..., 0] *= 1.12
    d = drift_curves(np.clip(cast, 0, 255).astype(np.uint8), clip.face, clip.fps, window_seconds=1.0)
    base = drift_curves(clip.frames, clip.face, clip.fps, window_seconds=1.0)
    assert all(c > b + 2.0 for c, b in zip(d["colour_drift"][3:], base["colour_drift"][3:]))
    assert all(p > 2.0 for p in d["palette_drift"][3:])
    assert d["colour_drift"][:3] == base["colour_drift"][:3] and d["palette_drift"][:3] == base["palette_drift"][:3]


def test_a_background_change_shows_in_the_palette_not_in_the_face_box(clip: DrawnClip) -> None:
    grey = replace(clip.face, background=(128, 128, 128))
    frames = np.concatenate([talking(clip.face, clip.mouth_open[:32]), talking(grey, clip.mouth_open[32:64])])
    d = drift_curves(frames, clip.face, clip.fps, window_seconds=1.0)
    assert d["palette_by_region"]["background"][2] > 10 and max(d["palette_by_region"]["skin"]) < 0.1
    assert d["palette_end"] > 5 * d["colour_end"]  # the face box barely sees the background


def test_another_face_with_the_same_mouth_is_far_while_mouth_motion_is_not(clip: DrawnClip) -> None:
    own = talking(clip.face, clip.mouth_open[:32])
    other = talking(random_face(4), clip.mouth_open[:32])  # same mouth and sway frame by frame
    swapped = drift_curves(np.concatenate([own, other]), clip.face, clip.fps, window_seconds=1.0)["identity_distance"]
    person = identity_distance(other[:16], own[:16], clip.face)
    assert min(swapped[2:]) > 0.2 and swapped[2] == pytest.approx(person, abs=1e-5)
    assert identity_distance(own[16:], own[:16], clip.face) < 0.1 * person  # other speech and sway, same person
    closed = np.asarray(draw_face(clip.face.with_state(mouth_open=0.0), 64))
    wide = np.asarray(draw_face(clip.face.with_state(mouth_open=1.0, eye_open=0.05), 64))
    assert identity_distance(wide, closed, clip.face) < 0.1 * person  # a wide-open mouth and shut eyes are not another person
    assert colour_drift(other, own, clip.face) > 5.0


def test_streams_frames_and_rejects_bad_input(clip: DrawnClip) -> None:
    pair = identity_descriptor(clip.frames[:2], clip.face)
    assert pair.shape == (16, 16, 3) and np.allclose(pair, (identity_descriptor(clip.frames[0], clip.face) + identity_descriptor(clip.frames[1], clip.face)) / 2)
    assert drift_curves(iter(clip.frames), clip.face, clip.fps, window_seconds=2.0) == drift_curves(clip.frames, clip.face, clip.fps, window_seconds=2.0)
    with pytest.raises(ValueError, match="square"):
        drift_curves(clip.frames[:, :, :40], clip.face, clip.fps)
    with pytest.raises(ValueError, match="no frames"):
        drift_curves(iter([]), clip.face, clip.fps)
    with pytest.raises(ValueError, match="reference of 64 px"):
        identity_distance(talking(clip.face, np.zeros(2), size=32), clip.frames[:2], clip.face)


def test_a_short_last_window_joins_the_one_before(clip: DrawnClip) -> None:
    d = drift_curves(clip.frames[:72], clip.face, clip.fps, window_seconds=2.0)  # 4.5 s: 2 + 2.5
    assert d["start_seconds"] == [0.0, 2.0]


def test_distance_to_portrait_separates_the_person_from_another(clip: DrawnClip) -> None:
    portrait = np.asarray(draw_face(clip.face, 64))
    own = distance_to_portrait(clip.frames, clip.face, portrait)
    other = distance_to_portrait(draw_clip(4, 2.0).frames, clip.face, portrait)
    assert own["identity_distance"] < 0.03 and own["colour_difference"] < 1.0 and own["palette_difference"] < 0.1
    assert other["identity_distance"] > 5 * own["identity_distance"] and other["colour_difference"] > 5.0 and other["palette_difference"] > 10.0


def test_portrait_curves_see_eyes_that_are_gone(clip: DrawnClip) -> None:
    """Eyes painted over with skin: far from the portrait in the eye band, not in the rest of the face."""
    from soul.miniature.drift import _eye_band

    portrait = np.asarray(draw_face(clip.face, 64))
    own = portrait_curves(clip.frames, clip.face, portrait, clip.fps, window_seconds=3.0)
    assert own["start_seconds"] == [0.0, 3.0] and max(own["eyes"]) < 0.05 and max(own["identity"]) < 0.03
    eye_y, eye_r = _eye_band(clip.face, 64, 0.0)
    x0, _, x1, _ = face_box(clip.face, 64)
    blind = clip.frames.copy()
    skin = clip.frames[0, int(eye_y + 2 * eye_r), int((x0 + x1) / 2)]  # a cheek pixel below the eyes
    blind[:, int(eye_y - eye_r) : int(eye_y + eye_r) + 1, int(x0) + 2 : int(x1) - 2] = skin
    gone = portrait_curves(blind, clip.face, portrait, clip.fps, window_seconds=3.0)
    assert min(gone["eyes"]) > 2 * max(own["eyes"])
    assert max(gone["identity"]) < 2 * max(own["identity"]) + 0.01  # the identity mask leaves the eyes out
