"""espeak-ng voices for the miniature world's training speech (Debian's espeak-ng; .ci/run installs it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from soul.miniature.speech_pool import SpeechPool, add_noise


@pytest.fixture(scope="module")
def espeak() -> None:
    if shutil.which("espeak-ng") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("espeak-ng is missing: .ci/run installs Debian's espeak-ng")
        pytest.skip("espeak-ng not installed")


def test_voices_are_speech_like_varied_and_reproducible(espeak: None) -> None:
    from soul.analysis.lipsync import speech_band_energy
    from soul.miniature.tts import espeak_languages, espeak_track

    assert len(espeak_languages()) >= 100
    tracks = [espeak_track(seed, seconds=6.0) for seed in range(6)]
    assert len({(v["language"], v["variant"], v["rate"]) for _, v in tracks}) == 6
    again, voice = espeak_track(3, seconds=6.0)
    assert voice == tracks[3][1] and np.array_equal(again, tracks[3][0])
    for samples, voice in tracks:
        assert samples.dtype == np.float32 and 2.0 < samples.shape[0] / 16_000 < 30.0, voice
        energy = speech_band_energy(samples, 16_000, 25.0, int(samples.shape[0] / 16_000 * 25))
        # syllables and pauses: the speech-band energy swings by tens of dB, unlike a steady tone
        assert np.percentile(energy, 90) - np.percentile(energy, 10) > 3.0, voice


def test_a_pool_with_voices_mixes_them_in_with_noise(espeak: None) -> None:
    rng = np.random.default_rng(0)
    real = SpeechPool([rng.standard_normal(48_000).astype(np.float32) * 0.1], ["real"])
    pool = real.with_voices(4, seed=1, voice_share=1.0, noise_share=0.0)
    assert len(pool.voices) == 4 and pool.tracks == real.tracks and not real.voices
    a = pool.segment(2.0, np.random.default_rng(5))
    b = pool.segment(2.0, np.random.default_rng(5))
    assert a.shape == (32_000,) and np.array_equal(a, b)
    # voice_share 1: no piece is the real (white-noise) track, whose samples are never silent
    assert np.mean(np.abs(a) < 1e-4) > 0.01
    unvaried = real.segment(2.0, np.random.default_rng(5))
    assert np.array_equal(unvaried, SpeechPool(real.tracks, real.names).segment(2.0, np.random.default_rng(5)))


def test_noise_is_added_at_the_asked_snr() -> None:
    speech = np.sin(np.linspace(0, 400 * np.pi, 16_000)).astype(np.float32)
    for snr in (5.0, 20.0):
        noisy = add_noise(speech, snr, np.random.default_rng(1))
        noise = noisy - speech
        measured = 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(noise ** 2))
        assert abs(measured - snr) < 0.5


def test_voices_need_media(tmp_path: Path) -> None:
    from tests.test_cli_generate import cli

    code, _, err = cli("mini", "clips", tmp_path / "x", "--voices", "10")
    assert code == 2 and "--voices 10" in err and "--media" in err
    assert not (tmp_path / "x").exists()
