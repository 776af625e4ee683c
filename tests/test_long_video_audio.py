"""Streaming audio for long runs: same loudness and mix as the in-memory path, soundtrack read from disk."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from soul.errors import InputError
from soul.media.audio import Audio, load_audio, normalize_loudness
from soul.media.video import read_video, write_video
from soul.media.spool import FileSamples, loudness_normalize_, mix_spooled, spool_audio, track_stats


def test_spooled_track_equals_load_audio_and_loudness_matches(media: Path, tmp_path: Path) -> None:
    src = media / "audio" / "wan_talk.wav"
    spooled = spool_audio(src, tmp_path, sample_rate=16000, mono=True)
    raw = load_audio(src, 16000, normalize=False).samples
    assert spooled.frames == raw.shape[0]
    np.testing.assert_array_equal(spooled.load(), raw)
    np.testing.assert_array_equal(spooled.read(100, 300), raw[100:300])
    mine = loudness_normalize_(spooled.load(), 16000)
    np.testing.assert_allclose(mine, normalize_loudness(raw, 16000), rtol=1e-5, atol=1e-7)
    mean, var = track_stats(raw)
    assert abs(mean - float(raw.astype(np.float64).mean())) < 1e-9 and abs(var - float(raw.astype(np.float64).var())) < 1e-9


def test_file_samples_feed_the_writer_like_an_array(media: Path, tmp_path: Path) -> None:
    track = spool_audio(media / "audio" / "wan_talk.wav", tmp_path, mono=False)
    lazy = FileSamples(track)
    assert lazy.shape[0] == track.frames and lazy.ndim in (1, 2) and len(lazy[10:20]) == 10
    with pytest.raises(TypeError):
        lazy[::2]
    frames = np.zeros((16, 64, 64, 3), np.uint8)
    write_video(tmp_path / "a.mp4", frames, 16, audio=Audio(lazy, track.sample_rate))  # type: ignore[arg-type]
    video = read_video(tmp_path / "a.mp4")
    assert video.has_audio and abs(video.read_audio().duration - 1.0) < 0.03


def test_mix_limits_and_keeps_length(tmp_path: Path) -> None:
    def wav(name: str, x: np.ndarray) -> Path:
        with wave.open(str(tmp_path / name), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(48000)
            w.writeframes((x * 32767).astype("<i2").tobytes())
        return tmp_path / name

    t = np.arange(48000) / 48000
    a = spool_audio(wav("a.wav", 0.9 * np.sin(2 * np.pi * 220 * t)), tmp_path, sample_rate=48000, mono=False)
    b = spool_audio(wav("b.wav", 0.9 * np.sin(2 * np.pi * 220 * t[:24000])), tmp_path, sample_rate=48000, mono=False)
    mix = mix_spooled([a, b], tmp_path, 48000)
    data = mix.load()
    assert mix.frames == 48000 and data.shape == (48000, 2)
    assert abs(float(np.abs(data).max()) - 0.99) < 1e-3  # limited, not clipped
    assert np.allclose(data[30000:, 0] * 2, data[30000:, 1] * 2) and float(np.abs(data[30000:]).max()) < 0.6


def test_bad_audio_is_an_input_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.wav"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(InputError):
        spool_audio(bad, tmp_path)
