"""Presets, the VAE helpers built from them, and `soul info`'s numbers for the real 5B model."""

from __future__ import annotations

import io
import json
import time
from contextlib import redirect_stdout
from pathlib import Path

import pytest
import torch
import yaml

from soul.config import SoulConfig, VAEConfig, available_presets, load_preset
from soul.errors import InputError
from soul.models.info import model_info, parameter_counts, token_counts
from soul.models.vae import build_vae, decode_latents, denormalize_latents, encode_frames, normalize_latents

PRESET_DIR = Path(__file__).resolve().parents[1] / "src" / "soul" / "presets"


# ------------------------------------------------------------------------------------------- presets


def test_shipped_presets_load() -> None:
    assert {"tiny", "wan22-ti2v-5b"} <= set(available_presets())
    big = load_preset("wan22-ti2v-5b")
    assert big.transformer.inner_dim == 3072 and big.transformer.num_layers == 30
    assert big.vae.z_dim == 48 and len(big.vae.latents_mean) == 48
    assert big.text_encoder.max_length == 512 and big.text_encoder.hidden_size == 4096
    assert big.audio_encoder.hub_id == "facebook/wav2vec2-base-960h" and big.audio_encoder.num_hidden_states == 13
    assert big.audio.tokens_per_frame == 32 and big.audio.window == 8
    assert (big.sampling.fps, big.sampling.chunk_frames, big.sampling.steps) == (24, 121, 50)
    assert big.hub.backbone == "Wan-AI/Wan2.2-TI2V-5B-Diffusers"
    tiny = load_preset("tiny")
    assert tiny.transformer.in_channels == 48 and tiny.transformer.patch_size == (1, 2, 2)


def test_unknown_preset_lists_available() -> None:
    with pytest.raises(InputError, match="tiny, wan22-ti2v-5b"):
        load_preset("wan99")


def test_preset_from_yaml_path_and_validation_errors(tmp_path: Path) -> None:
    data = yaml.safe_load((PRESET_DIR / "tiny.yaml").read_text())
    data["name"] = "custom"
    data["audio"]["tokens_per_frame"] = 2
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_preset(path).audio.tokens_per_frame == 2

    broken = dict(data, transformer=dict(data["transformer"], text_dim=64))
    path.write_text(yaml.safe_dump(broken))
    with pytest.raises(InputError, match="text_dim"):
        load_preset(path)

    typo = dict(data, audio=dict(data["audio"], tokens_per_frme=3))
    path.write_text(yaml.safe_dump(typo))
    with pytest.raises(InputError, match="tokens_per_frme"):
        load_preset(path)

    odd_head = dict(data, transformer=dict(data["transformer"], attention_head_dim=15))
    path.write_text(yaml.safe_dump(odd_head))
    with pytest.raises(InputError, match="attention_head_dim"):
        load_preset(path)

    path.write_text("transformer: [unclosed")
    with pytest.raises(InputError, match="YAML"):
        load_preset(path)
    with pytest.raises(InputError, match="not found"):
        load_preset(tmp_path / "absent.yaml")


def test_tiny_preset_builds_the_real_classes() -> None:
    from transformers import UMT5Config, UMT5EncoderModel, Wav2Vec2Config, Wav2Vec2Model

    tiny = load_preset("tiny")
    wav = Wav2Vec2Model(Wav2Vec2Config(**tiny.audio_encoder.config)).eval()
    with torch.no_grad():
        out = wav(torch.randn(1, 16000), output_hidden_states=True)
    assert len(out.hidden_states) == tiny.audio_encoder.num_hidden_states
    assert out.hidden_states[0].shape[1] == 49  # 50 Hz: the real conv strides are kept
    text = UMT5EncoderModel(UMT5Config(**tiny.text_encoder.config)).eval()
    with torch.no_grad():
        emb = text(torch.randint(0, 100, (1, 7))).last_hidden_state
    assert emb.shape == (1, 7, tiny.transformer.text_dim)


# ------------------------------------------------------------------------------------------------ VAE


def _vae_with_stats() -> tuple[torch.nn.Module, SoulConfig]:
    tiny = load_preset("tiny")
    g = torch.Generator().manual_seed(0)
    mean = (torch.randn(48, generator=g) * 0.3).tolist()
    std = (torch.rand(48, generator=g) + 0.5).tolist()
    vae_cfg = VAEConfig(**{**tiny.vae.kwargs(), "latents_mean": mean, "latents_std": std})
    torch.manual_seed(0)
    return build_vae(vae_cfg), tiny


def test_latent_normalisation_uses_the_vae_config() -> None:
    vae, _ = _vae_with_stats()
    z = torch.randn(2, 48, 3, 4, 4)
    normed = normalize_latents(z, vae)
    mean = torch.tensor(vae.config.latents_mean).view(1, 48, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, 48, 1, 1, 1)
    torch.testing.assert_close(normed, (z - mean) / std)
    torch.testing.assert_close(denormalize_latents(normed, vae), z)
    with pytest.raises(InputError):
        normalize_latents(torch.randn(1, 16, 3, 4, 4), vae)


def test_encode_decode_shapes_and_range() -> None:
    vae, _ = _vae_with_stats()
    video = torch.rand(1, 3, 9, 64, 32) * 2 - 1
    with torch.no_grad():
        z = encode_frames(vae, video)
        raw = vae.encode(video).latent_dist.mode()
        assert z.shape == (1, 48, 3, 4, 2)
        torch.testing.assert_close(z, normalize_latents(raw, vae))
        out = decode_latents(vae, z)
    assert out.shape == video.shape and out.min() >= -1 and out.max() <= 1
    with pytest.raises(InputError, match="4k\\+1"):
        encode_frames(vae, torch.zeros(1, 3, 8, 64, 64))
    with pytest.raises(InputError, match="multiples of 16"):
        encode_frames(vae, torch.zeros(1, 3, 5, 60, 64))


# ----------------------------------------------------------------------------------------------- info


def test_5b_parameter_counts_match_the_official_model() -> None:
    counts = parameter_counts(load_preset("wan22-ti2v-5b"))
    assert abs(counts["backbone"] - 5.0e9) / 5.0e9 < 0.005
    assert abs(counts["vae"] - 0.70e9) / 0.70e9 < 0.02
    assert abs(counts["vae_encoder"] - 149.6e6) / 149.6e6 < 0.01
    assert abs(counts["text_encoder"] - 5.68e9) / 5.68e9 < 0.01
    assert abs(counts["audio_encoder"] - 94.4e6) / 94.4e6 < 0.01
    assert 0 < counts["soul_audio_layers"] < counts["backbone"]


def test_token_counts_for_official_size() -> None:
    big = load_preset("wan22-ti2v-5b")
    tokens = token_counts(big, 704, 1280, 121)
    assert (tokens["latent_frames"], tokens["latent_height"], tokens["latent_width"]) == (31, 44, 80)
    assert tokens["video_tokens"] == 31 * 22 * 40
    assert token_counts(big, 480, 832, 81)["video_tokens"] == 21 * 15 * 26
    with pytest.raises(InputError, match="4k\\+1"):
        token_counts(big, 704, 1280, 120)
    with pytest.raises(InputError, match="multiples of 32"):
        token_counts(big, 700, 1280, 121)


def test_info_memory_is_consistent() -> None:
    report = model_info(load_preset("tiny"), 128, 64, 9)
    weights = report["memory_bytes"]["weights"]
    assert weights["fp32"]["backbone"] == 2 * weights["bf16"]["backbone"] == 4 * report["parameters"]["backbone"]
    act = report["memory_bytes"]["activations_per_pass"]["bf16"]
    assert act["block_peak_fused_attention"] > act["residual_stream"] > 0
    assert set(report["memory_notes"]) >= {"weights", "activations_per_pass"}


def test_soul_info_cli_json_for_5b_is_fast() -> None:
    from soul.cli import main

    buffer = io.StringIO()
    start = time.perf_counter()
    with redirect_stdout(buffer):
        main(["info", "--preset", "wan22-ti2v-5b", "--json"])
    assert time.perf_counter() - start < 30
    report = json.loads(buffer.getvalue())
    assert report["parameters_billions"]["backbone"] == pytest.approx(5.0, rel=0.005)
    assert report["parameters_billions"]["vae"] == pytest.approx(0.70, rel=0.02)
    assert report["tokens"]["video_tokens"] == 27280


def test_soul_info_cli_bad_size_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    from soul.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["info", "--preset", "tiny", "--frames", "10"])
    assert exit_info.value.code == 2
    assert "4k+1" in capsys.readouterr().err
