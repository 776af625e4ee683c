"""The miniature audio encoder's pretraining (`soul mini train-audio`): it learns, and the pipeline keeps it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from soul.config import load_preset
from soul.miniature.audio_pretrain import AudioPretrainConfig, clean_log_mel, pretrain_audio_encoder
from soul.miniature.speech import synthesize_babble
from soul.miniature.speech_pool import SpeechPool
from soul.models.audio_encoder import SoulAudioEncoder


def test_the_target_has_one_frame_per_feature_frame_and_hears_the_right_band() -> None:
    enc = SoulAudioEncoder.build(load_preset("mini"), seed=0)
    t = np.arange(48_000) / 16_000
    low, high = (np.sin(2 * np.pi * f * t).astype(np.float32) for f in (200.0, 4000.0))
    for n in (400, 16_000, 48_000):
        assert clean_log_mel(low[:n], enc.hop, enc.receptive_field, 40).shape == (enc.num_feature_frames(n), 40)
    a, b = (clean_log_mel(x, enc.hop, enc.receptive_field, 40).mean(axis=0) for x in (low, high))
    assert int(np.argmax(a)) < 10 < 25 < int(np.argmax(b))  # 40 mel bands over 60 Hz-7.6 kHz
    # the floor: digital silence is 5 bels under the loudest value, not -inf
    half = np.concatenate([low[:24_000], np.zeros(24_000, np.float32)])
    target = clean_log_mel(half, enc.hop, enc.receptive_field, 40)
    assert np.isfinite(target).all() and target.max() - target.min() <= 5.0 + 1e-5


def test_pretraining_lowers_the_loss_and_leaves_a_frozen_encoder() -> None:
    enc = SoulAudioEncoder.build(load_preset("mini"), seed=0)
    before = {n: p.detach().clone() for n, p in enc.model.named_parameters()}
    pool = SpeechPool([synthesize_babble(4.0, seed=s) for s in range(4)], [f"babble-{s}" for s in range(4)])
    rows: list[dict] = []
    summary = pretrain_audio_encoder(enc, pool, AudioPretrainConfig(steps=60, batch_size=2, seconds=1.0, lr=1e-3, log_every=10), log=rows.append)
    assert [r["step"] for r in rows] == [10, 20, 30, 40, 50, 60]
    assert summary["loss_last"] < 0.6 * summary["loss_first"], summary
    assert not enc.model.training and not any(p.requires_grad for p in enc.model.parameters())
    assert any(not torch.equal(before[n], p) for n, p in enc.model.named_parameters())
    assert enc.encode(synthesize_babble(2.0, seed=99)).shape[0] == enc.num_hidden_states  # LayerDrop off: every layer, every time


def test_train_audio_then_assemble_puts_the_encoder_in_the_pipeline(media: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from soul.pipelines.soul_pipeline import SoulPipeline
    from tests.test_cli_mini import in_process

    code, out, err = in_process(capsys, "-q", "mini", "train-audio", tmp_path / "audio", "--media", media, "--voices", "0", "--steps", "2")
    assert code == 0, err
    assert out.strip() == str(tmp_path / "audio" / "audio_encoder")
    assert json.loads((tmp_path / "audio" / "summary.json").read_text())["steps"] == 2
    code, _, err = in_process(capsys, "-q", "mini", "train-vae", tmp_path / "vae-run", "--steps", "1", "--pool-clips", "1",
                              "--batch-size", "1", "--window", "1", "--eval-frames", "1")
    assert code == 0, err
    code, out, err = in_process(capsys, "mini", "assemble", tmp_path / "vae-run" / "vae", tmp_path / "init", "--audio-encoder", tmp_path / "audio" / "audio_encoder")
    assert code == 0, err
    trained = SoulAudioEncoder.from_pretrained(tmp_path / "audio" / "audio_encoder", torch_dtype=torch.float32)
    loaded = SoulPipeline.from_pretrained(Path(out.strip()), torch_dtype=torch.float32).audio_encoder
    for (name, p), q in zip(trained.model.named_parameters(), loaded.model.parameters()):
        assert torch.equal(p, q), name
    random = SoulAudioEncoder.build(load_preset("mini"), seed=0)
    assert not all(torch.equal(p, q) for p, q in zip(random.model.parameters(), loaded.model.parameters()))
    code, _, err = in_process(capsys, "mini", "assemble", tmp_path / "vae-run" / "vae", tmp_path / "init2", "--audio-encoder", tmp_path / "nowhere")
    assert code == 2 and "nowhere" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "init2").exists()
