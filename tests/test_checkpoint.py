"""Soul checkpoints: official diffusers layout for the backbone, one file for Soul's layers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from diffusers import WanTransformer3DModel

from soul.config import load_preset
from soul.errors import InputError
from soul.models.checkpoint import check_transformer_files, load_transformer, save_checkpoint
from soul.models.transformer import SoulTransformer3DModel, build_transformer

TINY = load_preset("tiny")


def _trained_model(seed: int = 0) -> SoulTransformer3DModel:
    torch.manual_seed(seed)
    model = build_transformer(TINY).eval()
    with torch.no_grad():
        for value in model.soul_state_dict().values():
            value.add_(torch.randn_like(value) * 0.2)
    return model


def _run(model: SoulTransformer3DModel, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    latents = torch.randn(1, 48, 5, 4, 4, generator=g, dtype=dtype)
    text = torch.randn(1, 6, TINY.transformer.text_dim, generator=g, dtype=dtype)
    audio = torch.randn(1, 1, 5, TINY.audio.window, TINY.audio_encoder.num_hidden_states, TINY.audio_encoder.hidden_size, generator=g)
    with torch.no_grad():
        return model(latents, torch.tensor([400.0]), text, audio_features=audio).sample


def test_save_then_load_reproduces_outputs_exactly(tmp_path: Path) -> None:
    model = _trained_model()
    save_checkpoint(model, tmp_path / "ckpt")
    loaded = load_transformer(tmp_path / "ckpt", dtype=torch.float32)
    assert isinstance(loaded, SoulTransformer3DModel)
    assert torch.equal(_run(loaded), _run(model))
    assert loaded.soul_config() == model.soul_config()


def test_layout_is_official_diffusers_plus_soul_dir(tmp_path: Path) -> None:
    save_checkpoint(_trained_model(), tmp_path)
    config = json.loads((tmp_path / "transformer" / "config.json").read_text())
    assert config["_class_name"] == "WanTransformer3DModel"
    assert not any(k.startswith("audio_") for k in config)
    plain = WanTransformer3DModel.from_pretrained(tmp_path / "transformer")
    assert not any(k.startswith(("audio_projector", "audio_layers")) for k in plain.state_dict())
    soul_cfg = json.loads((tmp_path / "soul" / "config.json").read_text())
    assert soul_cfg["format"] == "soul-audio-layers"
    assert (tmp_path / "soul" / "audio_layers.safetensors").is_file()


def test_official_download_without_soul_dir_is_plain_ti2v(tmp_path: Path) -> None:
    model = _trained_model()
    save_checkpoint(model, tmp_path)
    shutil.rmtree(tmp_path / "soul")
    with pytest.raises(InputError, match="soul/config.json"):
        load_transformer(tmp_path, dtype=torch.float32)
    loaded = load_transformer(tmp_path, config=TINY, dtype=torch.float32)
    plain = WanTransformer3DModel.from_pretrained(tmp_path / "transformer").eval()
    for p in plain.parameters():  # owned storage, like the loader, so kernels see the same layout
        p.data = p.data.clone()
    g = torch.Generator().manual_seed(3)
    latents = torch.randn(1, 48, 5, 4, 4, generator=g)
    text = torch.randn(1, 6, TINY.transformer.text_dim, generator=g)
    audio = torch.randn(1, 1, 5, TINY.audio.window, TINY.audio_encoder.num_hidden_states, TINY.audio_encoder.hidden_size)
    with torch.no_grad():
        assert torch.equal(loaded(latents, torch.tensor([400.0]), text, audio_features=audio).sample, plain(latents, torch.tensor([400.0]), text).sample)


def test_sharded_backbone_loads_and_missing_shard_is_named(tmp_path: Path) -> None:
    model = _trained_model()
    save_checkpoint(model, tmp_path, max_shard_size="40KB")
    shards = check_transformer_files(tmp_path)
    assert len(shards) > 1 and (tmp_path / "transformer" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    assert torch.equal(_run(load_transformer(tmp_path, dtype=torch.float32)), _run(model))
    shards[-1].unlink()
    with pytest.raises(InputError, match=shards[-1].name):
        load_transformer(tmp_path)


@pytest.mark.parametrize(
    ("remove", "named"),
    [
        ("transformer/config.json", "config.json"),
        ("transformer/diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.safetensors"),
        ("soul/config.json", "soul/config.json"),
    ],
)
def test_missing_file_raises_input_error_naming_it(tmp_path: Path, remove: str, named: str) -> None:
    save_checkpoint(_trained_model(), tmp_path)
    (tmp_path / remove).unlink()
    with pytest.raises(InputError, match=named):
        load_transformer(tmp_path, config=TINY)


def test_missing_directory_raises_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_transformer(tmp_path / "nowhere", config=TINY)


def test_soul_layers_from_another_config_are_rejected(tmp_path: Path) -> None:
    save_checkpoint(_trained_model(), tmp_path)
    cfg_path = tmp_path / "soul" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["audio_tokens_per_frame"] = 8
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="audio_layers.safetensors"):
        load_transformer(tmp_path, dtype=torch.float32)


def test_bf16_load_keeps_fp32_modules(tmp_path: Path) -> None:
    model = _trained_model()
    save_checkpoint(model, tmp_path)
    loaded = load_transformer(tmp_path, dtype=torch.bfloat16)
    assert loaded.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16
    assert loaded.audio_layers["0"].attn.to_q.weight.dtype == torch.bfloat16
    assert loaded.blocks[0].scale_shift_table.dtype == torch.float32
    out = _run(loaded, torch.bfloat16)
    torch.testing.assert_close(out.float(), _run(model), atol=0.15, rtol=0.1)
