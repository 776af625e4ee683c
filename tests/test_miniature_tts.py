"""espeak-ng voices for the miniature world's training speech (Debian's espeak-ng; .ci/run installs it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from soul.miniature.speech_pool import CHANNELS, SpeechPool, add_noise, transmission_channel


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


def test_the_mouth_follows_the_speech_while_the_soundtrack_carries_noise_and_a_channel(espeak: None) -> None:
    from soul.miniature.clips import draw_clip

    real = SpeechPool([np.zeros(48_000, np.float32)], ["silent"])  # every piece from the voices below
    pool = real.with_voices(2, seed=4, voice_share=1.0, noise_share=1.0)
    speech = pool.segment(2.0, np.random.default_rng(2))
    heard = pool.hear(speech, np.random.default_rng(3))
    assert heard.shape == speech.shape and not np.allclose(heard, speech)
    clean, noisy = draw_clip(9, 2.0, audio=speech), draw_clip(9, 2.0, audio=speech, heard=heard)
    assert np.array_equal(clean.frames, noisy.frames) and np.array_equal(clean.mouth_open, noisy.mouth_open)
    assert np.array_equal(noisy.audio, heard) and np.array_equal(clean.audio, speech)
    # a pool without voices hears the speech as it is and draws nothing from the generator
    rng = np.random.default_rng(7)
    assert real.hear(speech, rng) is speech and rng.random() == np.random.default_rng(7).random()


def test_every_channel_keeps_the_level_and_changes_the_sound() -> None:
    t = np.arange(32_000) / 16_000
    speech = (np.sin(2 * np.pi * 180 * t) + 0.5 * np.sin(2 * np.pi * 2500 * t) + 0.3 * np.sin(2 * np.pi * 6000 * t)) * (np.sin(2 * np.pi * 3 * t) > 0)
    seen = set()
    for seed in range(60):
        rng = np.random.default_rng(seed)
        kind = CHANNELS[int(np.random.default_rng(seed).integers(len(CHANNELS)))]
        out = transmission_channel(speech, rng)
        seen.add(kind)
        assert out.dtype == np.float32 and out.shape == speech.shape and np.all(np.isfinite(out))
        assert abs(np.sqrt(np.mean(out.astype(np.float64) ** 2)) / np.sqrt(np.mean(speech ** 2)) - 1) < 1e-3, kind
        assert np.allclose(out, speech, atol=1e-5) == (kind == "direct"), kind
    assert seen == set(CHANNELS)


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


def test_low_band_and_colour_need_media_and_a_share(tmp_path: Path) -> None:
    from tests.test_cli_generate import cli

    code, _, err = cli("mini", "clips", tmp_path / "x", "--low-band", "0.5")
    assert code == 2 and "--low-band 0.5" in err and "--media" in err
    code, _, err = cli("mini", "clips", tmp_path / "x", "--low-band", "1.5", "--media", str(tmp_path))
    assert code == 2 and "--low-band 1.5" in err and "between 0 and 1" in err
    assert not (tmp_path / "x").exists()
    code, _, err = cli("mini", "clips", tmp_path / "x", "--colour", "0.5")
    assert code == 2 and "--colour 0.5" in err and "--media" in err
