"""The drawn faces and synthesised speech that demos and the miniature world are made of."""

from __future__ import annotations

import numpy as np

from soul.miniature.portrait import draw_face, mouth_box, random_face
from soul.miniature.speech import synthesize_babble


def test_faces_are_deterministic_and_distinct() -> None:
    a1, a2, b = random_face(3), random_face(3), random_face(4)
    assert a1 == a2 and a1 != b
    assert np.array_equal(np.asarray(draw_face(a1, 96)), np.asarray(draw_face(a2, 96)))
    assert not np.array_equal(np.asarray(draw_face(a1, 96)), np.asarray(draw_face(b, 96)))


def test_mouth_opening_darkens_only_the_mouth_box() -> None:
    face = random_face(0)
    size = 128
    closed = np.asarray(draw_face(face.with_state(mouth_open=0.0), size)).astype(float)
    opened = np.asarray(draw_face(face.with_state(mouth_open=1.0), size)).astype(float)
    x0, y0, x1, y1 = (int(round(v)) for v in mouth_box(face, size))
    diff = np.abs(opened - closed).sum(axis=2)
    inside = diff[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1].sum()
    assert inside > 0.97 * diff.sum()  # all change is inside the mouth box
    assert opened[y0:y1, x0:x1].mean() < closed[y0:y1, x0:x1].mean()  # an open mouth is darker


def test_babble_is_speech_like() -> None:
    rate = 16000
    x = synthesize_babble(6.0, rate, seed=2)
    assert x.shape == (6 * rate,) and x.dtype == np.float32
    assert np.array_equal(x, synthesize_babble(6.0, rate, seed=2))
    assert not np.array_equal(x, synthesize_babble(6.0, rate, seed=3))
    # syllabic energy: the 20 ms energy envelope swings strongly (pauses and syllables)
    frames = x[: len(x) // 320 * 320].reshape(-1, 320)
    energy_db = 10 * np.log10((frames.astype(np.float64) ** 2).mean(axis=1) + 1e-10)
    assert np.percentile(energy_db, 90) - np.percentile(energy_db, 10) > 20
    # the modulation spectrum of the envelope peaks at syllable rates (2-8 Hz)
    env = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    spectrum = np.abs(np.fft.rfft(env - env.mean()))
    freqs = np.fft.rfftfreq(env.size, d=0.02)
    band = (freqs >= 2) & (freqs <= 8)
    assert spectrum[band].mean() > spectrum[(freqs > 15)].mean() * 2
