"""The drawn-clip generator: deterministic by seed, mouths that follow the audio, real speech split."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np

from soul.miniature.clips import draw_clip, write_clip_shards
from soul.miniature.speech_pool import HELD_OUT_SPEECH, TRAIN_SPEECH, SpeechPool
from tests.helpers.shards import shard_members


def test_clips_are_deterministic_by_seed() -> None:
    a, b, c = draw_clip(5, 1.5), draw_clip(5, 1.5), draw_clip(6, 1.5)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)
    assert not np.array_equal(a.frames, c.frames)
    assert a.frames.shape == (24, 64, 64, 3) and a.audio.shape == (24_000,)


def test_mouth_truth_follows_the_audio_energy() -> None:
    silence_then_speech = np.concatenate([np.zeros(16_000, np.float32), draw_clip(1, 1.0).audio * 4])
    clip = draw_clip(2, 2.0, audio=silence_then_speech)
    assert clip.mouth_open[:12].max() < 0.05  # silent first second (the mouth leads by 40 ms)
    assert clip.mouth_open[18:].mean() > 0.2


def test_held_out_recordings_are_never_training_speech() -> None:
    assert not set(HELD_OUT_SPEECH) & set(TRAIN_SPEECH)


def test_speech_segments_are_deterministic_and_exact_length() -> None:
    rng = np.random.default_rng(0)
    pool = SpeechPool([rng.standard_normal(40_000).astype(np.float32), rng.standard_normal(20_000).astype(np.float32)], ["a", "b"])
    one = pool.segment(1.7, np.random.default_rng(3))
    two = pool.segment(1.7, np.random.default_rng(3))
    assert one.shape == (27_200,) and np.array_equal(one, two)
    assert not np.array_equal(one, pool.segment(1.7, np.random.default_rng(4)))


def _sources(out: Path) -> dict[str, str]:
    found = {}
    for shard in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".json"):
                    meta = json.load(tar.extractfile(member))  # type: ignore[arg-type]
                    found[meta["clip_id"]] = meta["audio_source"]
    return found


def test_shards_mix_real_speech_and_babble_from_the_training_split(media: Path, tmp_path: Path) -> None:
    pool = SpeechPool.from_media(media)
    assert pool.names and not any(held in name for name in pool.names for held in HELD_OUT_SPEECH)
    write_clip_shards(tmp_path / "a", 8, seconds=1.0, seed=3, clips_per_shard=4, speech=pool)
    write_clip_shards(tmp_path / "b", 8, seconds=1.0, seed=3, clips_per_shard=4, speech=pool)
    sources = _sources(tmp_path / "a")
    assert sources == _sources(tmp_path / "b") and set(sources.values()) == {"babble", "speech"}
    a, b = shard_members(tmp_path / "a"), shard_members(tmp_path / "b")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _band_envelope(audio: np.ndarray, low: float, high: float, frames: int = 48) -> np.ndarray:
    """Log energy of one band per 1/16 s frame (50 ms Hann windows, as the drawing rule reads)."""
    win = 800
    freqs = np.fft.rfftfreq(win, 1 / 16_000)
    band = (freqs >= low) & (freqs < high)
    spans = [audio[i * 1000 : i * 1000 + win] for i in range(frames)]
    return np.array([10 * np.log10((np.abs(np.fft.rfft(np.pad(s, (0, win - s.shape[0])) * np.hanning(win))) ** 2)[band].sum() + 1e-10) for s in spans])


def test_low_band_energy_moves_on_its_own_and_leaves_the_drawn_mouth_alone(media: Path) -> None:
    from soul.miniature.clips import speech_features
    from soul.miniature.speech_pool import low_band_energy

    pool = SpeechPool.from_media(media)
    rng = np.random.default_rng(0)
    own, added, mouth = [], [], []
    for _ in range(8):
        speech = pool.segment(3.0, rng)
        heard = low_band_energy(speech, rng, pool.tracks)
        extra = heard - speech
        assert np.abs(heard).max() <= 1.0 and np.sqrt(np.mean(extra**2)) > 0.2 * np.sqrt(np.mean(speech**2))
        in_band = _band_envelope(speech, 300, 3400)
        own.append(np.corrcoef(_band_envelope(speech, 0, 250), in_band)[0, 1])  # the speech's own low band: moves with it
        added.append(np.corrcoef(_band_envelope(extra, 0, 250), in_band)[0, 1])
        mouth.append(np.corrcoef(speech_features(heard, 48, 16.0)[0], speech_features(speech, 48, 16.0)[0])[0, 1])
    assert np.mean(own) > 0.6  # why the model could not tell the bands apart
    assert np.mean(np.abs(added)) < 0.35
    assert min(mouth) > 0.98  # the rule reads 300-3400 Hz: the drawn mouth barely changes


def test_a_pool_without_low_band_draws_nothing_for_it() -> None:
    rng = np.random.default_rng(0)
    pool = SpeechPool([rng.standard_normal(40_000).astype(np.float32) * 0.1], ["a"])
    plain = pool.segment(1.5, np.random.default_rng(3))
    assert np.array_equal(plain, pool.with_low_band(0.0).segment(1.5, np.random.default_rng(3)))
    assert not np.array_equal(plain, pool.with_low_band(1.0).segment(1.5, np.random.default_rng(3)))


def test_varying_colour_moves_the_bands_apart_and_keeps_the_level(media: Path) -> None:
    from soul.miniature.speech_pool import varying_colour

    pool = SpeechPool.from_media(media)
    rng = np.random.default_rng(1)
    follows = []
    for _ in range(8):
        speech = pool.segment(3.0, rng)
        coloured = varying_colour(speech, rng)
        assert np.abs(coloured).max() <= 1.0
        assert abs(np.sqrt(np.mean(coloured**2)) / np.sqrt(np.mean(speech**2)) - 1) < 0.05
        # the balance between two bands (difference of log energies) over time: a fixed filter
        # would leave it following the speech's own balance (r = 1)
        balance = _band_envelope(speech, 300, 700) - _band_envelope(speech, 1500, 3400)
        follows.append(np.corrcoef(balance, _band_envelope(coloured, 300, 700) - _band_envelope(coloured, 1500, 3400))[0, 1])
    assert np.mean(follows) < 0.8
