"""The audio encoder: 50 Hz hidden states, time alignment to latent frames, segmented long audio."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from soul.errors import InputError
from soul.models.audio_encoder import (
    SoulAudioEncoder,
    frames_for_duration,
    latent_frame_windows,
    resample_to_video,
    video_frames_for_duration,
    window_features,
)

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(32,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
    feat_extract_norm="layer",
    do_stable_layer_norm=True,
    conv_bias=True,
    apply_spec_augment=False,
)
SR = 16000


@pytest.fixture(scope="module")
def encoder() -> SoulAudioEncoder:
    return SoulAudioEncoder.from_config(TINY, seed=0, segment_seconds=2.0, context_seconds=0.5)


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """Amplitude-modulated harmonics plus noise: structured enough to give varied features."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    tone = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate((140, 280, 420, 900)))
    return (0.2 * envelope * tone + 0.02 * rng.standard_normal(t.shape)).astype(np.float32)


# --------------------------------------------------------------------------- pure functions


def test_frames_for_duration_rounds_to_causal_grid() -> None:
    assert video_frames_for_duration(5.0, 24) == 120
    assert frames_for_duration(5.0, 24) == 121
    assert frames_for_duration(5.0, 25) == 125
    assert frames_for_duration(0.01, 25) == 1
    assert frames_for_duration(3.49, 16) == 57  # 56 frames of audio -> 57 on the grid
    for d in (0.3, 1.7, 7.5, 12.04):
        n = frames_for_duration(d, 25)
        assert (n - 1) % 4 == 0 and 0 <= n - video_frames_for_duration(d, 25) <= 3
    with pytest.raises(InputError):
        frames_for_duration(0.0, 25)


def test_latent_frame_windows_follow_the_causal_vae() -> None:
    w = latent_frame_windows(17, context=2)
    assert w.dtype == torch.long and tuple(w.shape) == (5, 8)
    # Latent 0: centred on frame 0 (positions -3..4), clamped to the video.
    assert w[0].tolist() == [0, 0, 0, 0, 1, 2, 3, 4]
    # Latent k >= 1: frames 4k-3..4k plus two context frames each side.
    assert w[1].tolist() == [0, 0, 1, 2, 3, 4, 5, 6]
    assert w[2].tolist() == [3, 4, 5, 6, 7, 8, 9, 10]
    assert w[4].tolist() == [11, 12, 13, 14, 15, 16, 16, 16]
    assert tuple(latent_frame_windows(121, context=0).shape) == (31, 4)
    assert latent_frame_windows(121, context=0)[30].tolist() == [117, 118, 119, 120]
    # A chunk inside a longer video reads its neighbours' frames.
    chunk = latent_frame_windows(9, context=2, start=40, total_frames=100)
    assert chunk[1].tolist() == [39, 40, 41, 42, 43, 44, 45, 46]
    with pytest.raises(InputError):
        latent_frame_windows(16)


def test_resample_to_video_uses_absolute_time() -> None:
    # A feature equal to its own timestamp must come out equal to each video frame's time.
    t50 = torch.arange(100, dtype=torch.float32) / 50.0
    feats = t50[None, :, None].expand(3, 100, 2).clone()
    out = resample_to_video(feats, 40, 24.0)
    assert tuple(out.shape) == (3, 40, 2)
    assert torch.allclose(out[1, :, 0], torch.arange(40) / 24.0, atol=1e-6)
    shifted = resample_to_video(feats, 40, 24.0, feature_offset=0.0125)
    assert torch.allclose(shifted[0, 5:, 0], torch.arange(5, 40) / 24.0 - 0.0125, atol=1e-6)
    # Past the end the last feature frame is held.
    long = resample_to_video(feats, 60, 24.0)
    assert torch.allclose(long[0, 50:, 0], torch.full((10,), 99 / 50.0))


def test_window_features_touch_only_latents_covering_a_frame() -> None:
    num_frames, context = 33, 2
    windows = latent_frame_windows(num_frames, context)
    base = torch.randn(3, num_frames, 4)
    ref = window_features(base, windows)
    assert tuple(ref.shape) == (9, 8, 3, 4)
    assert torch.equal(ref[3, 2], base[:, 9])  # latent 3 covers frames 9..12, at positions 2..5
    for j in range(num_frames):
        changed = base.clone()
        changed[:, j] += 1.0
        hit = (window_features(changed, windows) != ref).flatten(1).any(1).nonzero().flatten().tolist()
        expected = [0] if j <= 4 else []
        expected += [k for k in range(1, 9) if 4 * k - 3 - context <= j <= 4 * k + context]
        assert hit == sorted(set(expected)), j


# ------------------------------------------------------------------------------ the encoder


def test_tiny_encoder_gives_all_hidden_states_at_50_hz(encoder: SoulAudioEncoder) -> None:
    feats = encoder.encode(_speechlike(1.0))
    assert feats.dtype == torch.float32 and not feats.requires_grad
    assert feats.shape[0] == encoder.num_hidden_states == 3
    assert feats.shape[2] == encoder.hidden_size == 32
    assert feats.shape[1] == 49  # 1 s: (16000 - 400) // 320 + 1, i.e. 50 Hz
    assert encoder.feature_rate == 50.0
    assert encoder.encode(_speechlike(1.0)).equal(feats)  # deterministic
    assert encoder.encode(np.zeros(100, np.float32)).shape[1] == 1  # shorter than one frame: padded
    with pytest.raises(InputError):
        encoder.encode(np.zeros((2, 100), np.float32))
    with pytest.raises(InputError):
        encoder.encode(np.array([0.0, np.nan], np.float32))


def test_encode_for_video_shape_and_streams(encoder: SoulAudioEncoder) -> None:
    audio = _speechlike(1.0)
    one = encoder.encode_for_video(audio, SR, 25, 24.0)
    assert tuple(one.shape) == (7, 8, 3, 32)
    assert tuple(encoder.encode_for_video(audio, SR, 25, 24.0, context=1).shape) == (7, 6, 3, 32)
    both = encoder.encode_streams([audio, audio[: SR // 4]], fps=24.0, num_frames=25)
    assert tuple(both.shape) == (2, 7, 8, 3, 32)
    assert torch.allclose(both[0], one)
    # The short track is padded with silence to cover the video (last frame at 1 s, plus one
    # conv receptive field of 400 samples): the same features as an explicitly silent tail.
    padded = np.concatenate([encoder.normalize(audio[: SR // 4]), np.zeros(SR + 400 - SR // 4, np.float32)])
    explicit = encoder.to_video_rate(encoder.encode(padded, normalized=True), 25, 24.0)
    assert torch.allclose(both[1], window_features(explicit, latent_frame_windows(25, 2)), atol=1e-5)
    with pytest.raises(InputError):
        encoder.encode_for_video(audio, 44100, 25, 24.0)


def test_audio_perturbation_changes_only_nearby_latent_frames(encoder: SoulAudioEncoder) -> None:
    fps, num_frames = 25.0, 101  # 4 s, 26 latent frames
    audio = _speechlike(4.0, seed=1)
    windows = latent_frame_windows(num_frames, 2)

    def encode(values: np.ndarray) -> torch.Tensor:
        # The input normalisation is a whole-track gain (any click moves it); everything after
        # it must be local, so the test perturbs the normalised track.
        return window_features(encoder.to_video_rate(encoder.encode(values, normalized=True), num_frames, fps), windows)

    audio = encoder.normalize(audio)
    ref = encode(audio)
    changed = audio.copy()
    t0 = 2.0
    changed[int(t0 * SR) : int((t0 + 0.02) * SR)] += 3.0  # a 20 ms click at 2 s = video frame 50
    out = encode(changed)
    diff = (out - ref).abs()
    # Embedding output: local by construction (conv stack + position conv, ±8 frames at 50 Hz).
    # Reach in video frames: click 0.5 frame + position conv 0.16 s (4 frames) + conv field
    # + interpolation 1 frame, plus 2 context frames; latent k covers 4k-3..4k.
    per_latent = diff[:, :, 0].flatten(1).amax(1)
    reach = 8
    near = [k for k in range(1, 26) if 4 * k - 3 - reach <= 50 <= 4 * k + reach]
    far = [k for k in range(26) if k not in near]
    assert per_latent[12] > 1e-3  # latent 12 covers frames 45..48 plus context 49..50
    assert float(per_latent[far].max()) == 0.0
    assert 12 in near and 13 in near and min(near) >= 10 and max(near) <= 15
    # Transformer layers attend globally, but the change stays concentrated around the click.
    deep = diff[:, :, 1:].flatten(1).amax(1)
    assert float(deep[[0, 1, 2, 3, 22, 23, 24, 25]].max()) < 0.02 * float(deep[12:14].max())


def test_segmented_long_audio_equals_one_shot_inside(encoder: SoulAudioEncoder) -> None:
    audio = _speechlike(9.0, seed=2)
    values = encoder.normalize(audio)
    segmented = encoder.encode(values, normalized=True)  # 2 s cores, 0.5 s margins: 4+ segments
    one_shot = encoder._forward(values)
    assert segmented.shape == one_shot.shape == (3, 449, 32)
    # Embedding output: exact (the margins cover the position conv's reach).
    assert torch.allclose(segmented[0], one_shot[0], atol=1e-5)
    # Attention layers: close, against features that vary by O(1) along time.
    interior = slice(25, -25)
    err = (segmented[1:, interior] - one_shot[1:, interior]).abs().max()
    spread = one_shot[1:, interior].std()
    assert float(err) < 0.05 * float(spread)


def test_minutes_of_audio_encode_in_bounded_segments(encoder: SoulAudioEncoder) -> None:
    audio = _speechlike(120.0, seed=3)
    feats = encoder.encode(audio)  # 2 s segments: ~60 forward passes of 3 s each
    assert tuple(feats.shape) == (3, encoder.num_feature_frames(audio.shape[0]), 32) and feats.shape[1] == 5999
    assert torch.isfinite(feats).all()
    # Segments hold different audio, so features must differ between them (no copied segment).
    assert not torch.allclose(feats[:, 100:200], feats[:, 1100:1200])


def test_save_and_load_round_trip(encoder: SoulAudioEncoder, tmp_path) -> None:
    path = encoder.save_pretrained(tmp_path / "audio_encoder")
    loaded = SoulAudioEncoder.from_pretrained(path, segment_seconds=2.0, context_seconds=0.5)
    audio = _speechlike(0.5)
    assert torch.equal(loaded.encode(audio), encoder.encode(audio))
    assert loaded.feature_extractor.do_normalize
    with pytest.raises(InputError):
        SoulAudioEncoder.from_pretrained(tmp_path / "missing")


def test_loads_a_ctc_checkpoint_like_the_default_one(tmp_path) -> None:
    # facebook/wav2vec2-base-960h is saved as Wav2Vec2ForCTC: its encoder must load without the head.
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    torch.manual_seed(0)
    ctc = Wav2Vec2ForCTC(Wav2Vec2Config(vocab_size=32, **TINY)).eval()
    ctc.save_pretrained(tmp_path / "ctc")
    loaded = SoulAudioEncoder.from_pretrained(tmp_path / "ctc")
    audio = _speechlike(0.5)
    with torch.no_grad():
        ref = ctc.wav2vec2(torch.from_numpy(loaded.normalize(audio))[None], output_hidden_states=True).hidden_states
    assert torch.allclose(loaded.encode(audio), torch.stack([h[0] for h in ref]), atol=1e-6)

