"""The lmsync estimator on synthetic series (exact sign convention) and on the real talking clips.

The real clips are in sync as recorded, so advancing their audio by k frames must move the
estimated offset by +k (SyncNet's sign: the video now lags the audio by k more frames).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from soul.analysis import FaceAnalyzer, lmsync, lmsync_tracks, estimate_offset, shift_audio, speech_band_energy
from soul.errors import InputError
from soul.media.video import read_video

SR = 16_000
TALKING = ["talking_face_1", "talking_face_2", "talking_face_3", "talking_upper_body_host"]
SHIFTS = [-8, -4, 3, 5, 8]


def _synthetic(n: int = 150, lag: int = 0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    drive = np.convolve(rng.standard_normal(n + 40), np.ones(4) / 4, mode="same")
    energy = drive[20 : 20 + n]
    mouth = drive[20 - lag : 20 - lag + n]  # mouth[t] = energy[t - lag]: video lags audio by lag
    return mouth, energy


@pytest.mark.parametrize("lag", [-7, 0, 4, 12])
def test_synthetic_offset_sign_is_syncnets(lag: int) -> None:
    mouth, energy = _synthetic(lag=lag)
    est = estimate_offset(mouth, energy)
    assert est.offset == lag
    assert est.confidence > 0.5
    assert est.as_fields() == {"lmsync_offset": lag, "lmsync_conf": est.confidence}


def test_unrelated_series_score_below_synced_ones() -> None:
    for seed in range(5):
        mouth, energy = _synthetic(seed=seed, lag=2)
        _, foreign = _synthetic(seed=seed + 100)
        assert estimate_offset(mouth, foreign).confidence < estimate_offset(mouth, energy).confidence - 0.2


def test_shift_audio_delays_and_keeps_length() -> None:
    x = np.arange(1, 1601, dtype=np.float32)
    delayed = shift_audio(x, SR, 25.0, 1)  # one frame at 25 fps = 640 samples
    assert delayed.shape == x.shape
    assert np.all(delayed[:640] == 0) and delayed[640] == 1
    advanced = shift_audio(x, SR, 25.0, -1)
    assert advanced[0] == 641 and np.all(advanced[-640:] == 0)


def test_speech_band_energy_follows_a_tone_burst() -> None:
    t = np.arange(SR * 2) / SR
    tone = np.sin(2 * np.pi * 1000 * t) * ((t > 0.8) & (t < 1.2))
    e = speech_band_energy(tone, SR, 25.0, 50)
    assert e.shape == (50,)
    assert e[25] > e[5] + 5  # a burst at 1 s is far above the silence floor
    steady = speech_band_energy(np.sin(2 * np.pi * 1000 * t), SR, 25.0, 50)
    hum = speech_band_energy(np.sin(2 * np.pi * 60 * t), SR, 25.0, 50)
    assert np.median(hum) < np.median(steady) - 10  # 60 Hz hum is outside the speech band


def test_bad_inputs_raise_input_error() -> None:
    with pytest.raises(InputError):
        estimate_offset(np.zeros(10), np.zeros(10))
    with pytest.raises(InputError):
        estimate_offset(np.zeros(100), np.zeros(90))
    with pytest.raises(InputError):
        estimate_offset(np.full(100, np.nan), np.zeros(100))


@pytest.fixture(scope="module")
def clips(media: Path) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """Mouth series of each talking clip's main face, its 16 kHz audio and fps (computed once)."""
    from soul.analysis import face_tracks, mouth_series

    analyzer = FaceAnalyzer(detect_max_side=480)
    out = {}
    for name in TALKING:
        reader = read_video(media / "clips" / f"{name}.mp4")
        frames = list(reader.frames())
        tracks = face_tracks(frames, analyzer, detect_every=5)
        assert tracks, f"no face tracked in {name}"
        out[name] = (mouth_series(frames, analyzer, tracks[0]), reader.read_audio(SR).samples, reader.fps)
    return out


def test_injected_audio_shifts_are_recovered(clips: dict) -> None:
    hits, cases, misses = 0, 0, []
    for name, (mouth, audio, fps) in clips.items():
        base = lmsync(mouth, audio, SR, fps).offset
        for k in SHIFTS:
            advanced = shift_audio(audio, SR, fps, -k)  # audio k frames early: video lags by k
            got = lmsync(mouth, advanced, SR, fps).offset - base
            cases += 1
            if abs(got - k) <= 1:
                hits += 1
            else:
                misses.append((name, k, got))
    assert hits / cases >= 0.8, f"{hits}/{cases} within ±1 frame; misses {misses}"


def test_own_audio_beats_foreign_audio(clips: dict) -> None:
    for name, (mouth, audio, fps) in clips.items():
        own = lmsync(mouth, audio, SR, fps).confidence
        for other, (_, foreign, _) in clips.items():
            if other == name:
                continue
            n = min(len(foreign), len(audio))
            theirs = lmsync(mouth, foreign[:n], SR, fps).confidence
            assert theirs < own, f"{name}: foreign audio of {other} scored {theirs:.3f} >= own {own:.3f}"


def test_lmsync_tracks_finds_the_speaker(media: Path) -> None:
    reader = read_video(media / "clips" / "two_people_left_speaks.mp4")
    frames = list(reader.frames())
    results = lmsync_tracks(frames, reader.read_audio(SR).samples, SR, reader.fps, analyzer=FaceAnalyzer(detect_max_side=480))
    assert len(results) == 2
    centres = sorted(track.boxes[0].center[0] for track, _ in results)
    assert centres[0] < reader.width / 2 < centres[1]
    confs = [est.confidence for _, est in results]
    assert confs == sorted(confs, reverse=True)
    speaker = results[0][0]  # only the left person's audio is on the track
    assert speaker.boxes[0].center[0] < reader.width / 2


def test_synced_clips_measure_near_zero(clips: dict) -> None:
    """The clips are in sync as recorded: the absolute offsets stay within a few frames of 0."""
    offsets = {name: lmsync(mouth, audio, SR, fps).offset for name, (mouth, audio, fps) in clips.items()}
    assert all(abs(o) <= 4 for o in offsets.values()), offsets
