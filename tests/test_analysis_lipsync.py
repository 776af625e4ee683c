"""The lmsync estimator: exact behaviour on synthetic series, and the test set of real clips.

The real clips of ../shared/media are the estimator's **test set**: its design and its confidence
threshold were chosen on other clips (the tuning set named in `soul.analysis.lipsync`, which also
says where this set leaked in). They are in sync as recorded, so what is checked is absolute, not
relative to the unshifted estimate:

- every clip's own offset is within ±1 frame of 0, with a confidence that clears the threshold;
- advancing the audio by k = ±3..8 frames gives k ± 1 (the video now lags the audio by k);
- two negative controls: an unrelated mouth series (smoothed noise) must not track those shifts,
  and it, or another recording's audio, scores below the clip's own audio in >= 90 % of pairs;
- a best lag at the edge of the search is no estimate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from soul.analysis import FaceAnalyzer, estimate_offset, lmsync, lmsync_tracks, shift_audio, speech_band_energy
from soul.analysis.lipsync import MIN_CONFIDENCE, articulation, min_frames
from soul.errors import InputError
from soul.media.video import read_video

SR = 16_000
TALKING = ["talking_face_1", "talking_face_2", "talking_face_3", "talking_upper_body_host"]
SHIFTS = [-8, -6, -5, -4, -3, 3, 4, 5, 6, 8]
NOISE_SEEDS = range(10)


def _synthetic(n: int = 150, lag: int = 0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    drive = np.convolve(rng.standard_normal(n + 40), np.ones(4) / 4, mode="same")
    energy = drive[20 : 20 + n]
    mouth = drive[20 - lag : 20 - lag + n]  # mouth[t] = energy[t - lag]: video lags audio by lag
    return mouth, energy


def _noise_mouth(n: int, seed: int) -> np.ndarray:
    """A mouth series with a lip signal's smoothness that has nothing to do with any audio."""
    rng = np.random.default_rng(1000 + seed)
    return np.convolve(rng.standard_normal(n + 6), np.hanning(5), mode="same")[3 : 3 + n]


@pytest.mark.parametrize("lag", [-7, 0, 4, 11])
def test_synthetic_offset_sign_is_syncnets(lag: int) -> None:
    mouth, energy = _synthetic(lag=lag)
    est = estimate_offset(mouth, energy)
    assert est.offset == lag and est.confident()
    assert est.peak_r > 0.95 and est.confidence > 5 * MIN_CONFIDENCE
    assert est.as_fields() == {"lmsync_offset": lag, "lmsync_conf": est.confidence}


@pytest.mark.parametrize("lag", [12, -12, 14, -15])
def test_a_peak_at_the_edge_is_no_estimate(lag: int) -> None:
    """A true lag at or just beyond the end of the search peaks at its edge: that is not a finding."""
    mouth, energy = _synthetic(lag=lag)
    est = estimate_offset(mouth, energy, max_offset=12)
    assert est.offset is None and not est.confident() and "edge" in (est.reason or "")
    assert est.as_fields()["lmsync_offset"] is None


def test_unrelated_series_score_below_synced_ones() -> None:
    for seed in range(5):
        mouth, energy = _synthetic(seed=seed, lag=2)
        _, foreign = _synthetic(seed=seed + 100)
        assert estimate_offset(mouth, foreign).confidence < estimate_offset(mouth, energy).confidence / 3


def test_articulation_adds_the_speed_of_the_lips() -> None:
    gap = np.r_[np.zeros(10), np.full(10, 0.3), np.zeros(10)]
    feature = articulation(gap)
    assert feature.shape == gap.shape
    assert feature[10] > feature[15] > feature[5]  # the opening moment outranks holding it open, which outranks closed
    assert np.all(articulation(np.full(30, 0.2)) == 0)  # a frozen mouth says nothing


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
    with pytest.raises(InputError, match="at least 56 frames"):
        estimate_offset(np.zeros(min_frames(12) - 1), np.zeros(min_frames(12) - 1))
    with pytest.raises(InputError):
        estimate_offset(np.zeros(100), np.zeros(90))
    with pytest.raises(InputError):
        estimate_offset(np.full(100, np.nan), np.zeros(100))


# ------------------------------------------------------------------------------------ the test set


@pytest.fixture(scope="module")
def clips(media: Path) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """Inner-lip gap series of each talking clip's main face, its 16 kHz audio and fps (computed once)."""
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


@pytest.fixture(scope="module")
def foreign_audio(media: Path, clips: dict) -> dict[str, np.ndarray]:
    """Other recordings: the voices and driving audio of shared/media, and the other clips' tracks."""
    from soul.media.audio import load_audio

    paths = sorted((media / "audio" / "voices").glob("*.wav")) + sorted((media / "audio").glob("*.wav"))
    out = {p.stem: load_audio(p, SR).mono() for p in paths}
    out.update({name: audio for name, (_, audio, _) in clips.items()})
    return out


def _fit(audio: np.ndarray, n: int) -> np.ndarray:
    """`audio` looped or cut to n samples (a short voice is repeated, never padded with silence)."""
    return np.tile(audio, n // len(audio) + 1)[:n]


def test_clips_recorded_in_sync_measure_within_one_frame(clips: dict) -> None:
    for name, (mouth, audio, fps) in clips.items():
        est = lmsync(mouth, audio, SR, fps)
        assert est.offset is not None and abs(est.offset) <= 1, (name, est.offset, est.confidence)
        assert est.confident(), (name, est.confidence)


def test_injected_shifts_are_tracked_in_absolute_terms(clips: dict) -> None:
    misses = []
    for name, (mouth, audio, fps) in clips.items():
        for k in SHIFTS:
            est = lmsync(mouth, shift_audio(audio, SR, fps, -k), SR, fps)  # audio k frames early: video lags by k
            if est.offset is None or abs(est.offset - k) > 1 or not est.confident():
                misses.append((name, k, est.offset, round(est.confidence, 2)))
    assert not misses, misses


def test_an_unrelated_mouth_does_not_track_the_shifts(clips: dict) -> None:
    """The control the old test lacked: with a smoothed-noise mouth the lag curve still slides with
    the audio, so a relative score 'recovered' shifts; absolute, confident hits stay rare."""
    hits = cases = 0
    for mouth, audio, fps in clips.values():
        for seed in NOISE_SEEDS:
            noise = _noise_mouth(len(mouth), seed)
            for k in SHIFTS:
                est = estimate_offset(noise, speech_band_energy(shift_audio(audio, SR, fps, -k), SR, fps, len(noise)))
                cases += 1
                hits += bool(est.confident() and abs(est.offset - k) <= 1)
    assert hits / cases <= 0.05, f"{hits}/{cases}"


def test_own_audio_beats_foreign_audio_and_noise(clips: dict, foreign_audio: dict) -> None:
    below = pairs = 0
    for name, (mouth, audio, fps) in clips.items():
        own = lmsync(mouth, audio, SR, fps).confidence
        for other, theirs in foreign_audio.items():
            if other != name:
                pairs += 1
                below += lmsync(mouth, _fit(theirs, len(audio)), SR, fps).confidence < own
        for seed in NOISE_SEEDS:
            noise = _noise_mouth(len(mouth), seed)
            pairs += 1
            below += estimate_offset(noise, speech_band_energy(audio, SR, fps, len(noise))).confidence < own
    assert below / pairs >= 0.9, f"own audio above the control in {below}/{pairs} pairs"


def test_lmsync_tracks_finds_the_speaker(media: Path) -> None:
    reader = read_video(media / "clips" / "two_people_left_speaks.mp4")
    frames = list(reader.frames())
    results = lmsync_tracks(frames, reader.read_audio(SR).samples, SR, reader.fps, analyzer=FaceAnalyzer(detect_max_side=480))
    assert len(results) == 2
    centres = sorted(track.boxes[0].center[0] for track, _ in results)
    assert centres[0] < reader.width / 2 < centres[1]
    (speaker, est), (_, silent) = results  # only the left person's audio is on the track
    assert speaker.boxes[0].center[0] < reader.width / 2
    assert est.confident() and abs(est.offset) <= 1 and not silent.confident()


def test_benchmark_names_a_missing_clip() -> None:
    from tests.helpers.benchmarks import load_benchmark

    bench = load_benchmark("lipsync_offsets")
    with pytest.raises(SystemExit, match="nowhere.mp4: not found"):
        bench.main(["--clips", "/nowhere.mp4"])
