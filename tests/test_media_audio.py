"""Audio decoding to mono float32 at the model rate, loudness, every container we promise."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soul.errors import InputError
from soul.media.audio import Audio, audio_info, gated_loudness_db, load_audio, normalize_loudness


@pytest.mark.parametrize(
    "name,rate,channels,duration",
    [
        ("hallo_1.wav", 44100, 2, 7.5),
        ("hallo_2.wav", 48000, 2, 12.0),
        ("wan_prompt_16k_mono.wav", 16000, 1, 3.48),
        ("wan_talk.wav", 44100, 2, 5.02),
    ],
)
def test_shared_wavs_decode_to_16k_mono(media: Path, name: str, rate: int, channels: int, duration: float) -> None:
    info = audio_info(media / "audio" / name)
    assert (info.sample_rate, info.channels) == (rate, channels)
    assert info.duration == pytest.approx(duration, abs=0.02)
    audio = load_audio(media / "audio" / name)
    assert audio.sample_rate == 16000 and audio.samples.ndim == 1 and audio.samples.dtype == np.float32
    assert audio.duration == pytest.approx(info.duration, abs=0.01)
    assert np.abs(audio.samples).max() <= 1.0


def test_mp3_and_video_audio_track(media: Path) -> None:
    mp3 = load_audio(media / "audio" / "wan_sing.mp3")
    assert mp3.duration == pytest.approx(18.76, abs=0.1)
    track = load_audio(media / "clips" / "talking_face_1.mp4")
    assert track.duration == pytest.approx(6.1, abs=0.1)
    assert gated_loudness_db(track.samples, 16000) == pytest.approx(-23.0, abs=1.5)


def test_resampling_keeps_pitch(tmp_path: Path) -> None:
    rate = 44100
    t = np.arange(rate * 2) / rate
    tone = 0.3 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    sf.write(tmp_path / "tone.flac", np.stack([tone, tone], 1), rate)
    audio = load_audio(tmp_path / "tone.flac", normalize=False)
    spectrum = np.abs(np.fft.rfft(audio.samples))
    peak_hz = np.argmax(spectrum) * audio.sample_rate / audio.samples.size
    assert peak_hz == pytest.approx(440, abs=2)
    assert audio.duration == pytest.approx(2.0, abs=0.005)


@pytest.mark.parametrize("fmt,suffix", [("OGG", ".ogg"), ("FLAC", ".flac"), ("WAV", ".wav")])
def test_containers_soundfile_writes(tmp_path: Path, fmt: str, suffix: str) -> None:
    rate = 22050
    x = (0.1 * np.random.default_rng(0).standard_normal(rate)).astype(np.float32)
    sf.write(tmp_path / f"a{suffix}", x, rate, format=fmt)
    audio = load_audio(tmp_path / f"a{suffix}", sample_rate=16000)
    assert audio.duration == pytest.approx(1.0, abs=0.02)


def test_m4a_written_by_our_encoder(tmp_path: Path) -> None:
    import av

    rate = 16000
    x = (0.2 * np.sin(2 * np.pi * 200 * np.arange(rate) / rate)).astype(np.float32)
    with av.open(str(tmp_path / "a.m4a"), "w", format="ipod") as out:
        stream = out.add_stream("aac", rate=rate)
        stream.layout = "mono"
        for i in range(0, rate, 1024):
            frame = av.AudioFrame.from_ndarray(np.pad(x[i : i + 1024], (0, max(0, i + 1024 - rate)))[None], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    audio = load_audio(tmp_path / "a.m4a")
    assert audio.duration == pytest.approx(1.0, abs=0.1)


def test_loudness_normalisation_reaches_target_without_clipping() -> None:
    rate = 16000
    rng = np.random.default_rng(1)
    quiet = (0.01 * rng.standard_normal(rate * 3)).astype(np.float32)
    out = normalize_loudness(quiet, rate)
    assert gated_loudness_db(out, rate) == pytest.approx(-23.0, abs=0.1)
    spiky = quiet.copy()
    spiky[100] = 0.9
    assert np.abs(normalize_loudness(spiky, rate)).max() <= 10 ** (-1 / 20) + 1e-6
    silent = np.zeros(rate, np.float32)
    assert np.array_equal(normalize_loudness(silent, rate), silent)


def test_audio_slice_pads_past_the_end() -> None:
    audio = Audio(np.ones(16000, np.float32), 16000)
    part = audio.slice(0.5, 1.5)
    assert part.samples.shape == (16000,)
    assert part.samples[:8000].sum() == 8000 and part.samples[8000:].sum() == 0


def test_bad_audio_inputs(tmp_path: Path, media: Path) -> None:
    text = tmp_path / "speech.wav"
    text.write_text("this is not audio at all")
    with pytest.raises(InputError, match="not a readable audio"):
        load_audio(text)
    empty = tmp_path / "zero.wav"
    with wave.open(str(empty), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
    with pytest.raises(InputError, match="no audio samples"):
        load_audio(empty)
    with pytest.raises(InputError, match="no audio track"):
        load_audio(media / "clips" / "full_body_dance_no_audio.mp4")
    with pytest.raises(InputError, match="not found"):
        load_audio(tmp_path / "nope.mp3")
