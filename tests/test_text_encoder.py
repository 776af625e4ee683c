"""The umT5 prompt encoder: diffusers' Wan conventions, determinism, and a save/load round trip."""

from __future__ import annotations

import pytest
import torch
from diffusers.pipelines.wan.pipeline_wan_i2v import WanImageToVideoPipeline
from diffusers.pipelines.wan.pipeline_wan_i2v import prompt_clean as diffusers_prompt_clean

from soul.config import load_preset
from soul.errors import InputError
from soul.models.text_encoder import SoulTextEncoder

PROMPTS = ["A woman speaks to the camera, soft light.", "a man   sings &amp; smiles"]


@pytest.fixture(scope="module")
def encoder() -> SoulTextEncoder:
    return SoulTextEncoder.tiny(seed=0)


def test_shape_padding_zeroed_and_deterministic(encoder: SoulTextEncoder) -> None:
    emb = encoder.encode(PROMPTS, max_length=24)
    assert tuple(emb.shape) == (2, 24, 32) and emb.dtype == torch.float32
    lengths = encoder.tokenizer([diffusers_prompt_clean(p) for p in PROMPTS], add_special_tokens=True).input_ids
    for row, ids in zip(emb, lengths):
        n = len(ids)
        assert 1 < n < 24
        assert torch.all(row[n:] == 0)
        assert torch.all(row[:n].abs().sum(-1) > 0)
    assert torch.equal(encoder.encode(PROMPTS, max_length=24), emb)
    assert torch.equal(SoulTextEncoder.tiny(seed=0).encode(PROMPTS, max_length=24), emb)
    assert not torch.equal(SoulTextEncoder.tiny(seed=1).encode(PROMPTS, max_length=24), emb)
    # Each prompt is encoded on its own: batching does not change it.
    assert torch.allclose(encoder.encode(PROMPTS[1], max_length=24)[0], emb[1], atol=1e-6)
    assert encoder.encode(PROMPTS).shape[1] == encoder.max_length == 32


def test_matches_diffusers_wan_pipeline(encoder: SoulTextEncoder) -> None:
    # diffusers' own prompt path on the same model and tokenizer is the reference.
    pipe = WanImageToVideoPipeline.__new__(WanImageToVideoPipeline)
    pipe.text_encoder, pipe.tokenizer = encoder.model, encoder.tokenizer
    ref = pipe._get_t5_prompt_embeds(PROMPTS, max_sequence_length=20, device=torch.device("cpu"), dtype=torch.float32)
    assert torch.allclose(encoder.encode(PROMPTS, max_length=20), ref, atol=1e-6)


def test_cleaning_and_truncation(encoder: SoulTextEncoder) -> None:
    a = encoder.encode(["a man sings & smiles"], max_length=16)
    b = encoder.encode(["  a man   sings &amp; smiles\n"], max_length=16)
    assert torch.equal(a, b)
    long = encoder.encode(["the man talks " * 40], max_length=8)
    assert tuple(long.shape) == (1, 8, 32) and torch.all(long.abs().sum(-1) > 0)
    empty = encoder.encode([""], max_length=8)
    assert torch.all(empty[0, 1:] == 0) and empty[0, 0].abs().sum() > 0  # eos only
    with pytest.raises(InputError):
        encoder.encode([], max_length=8)
    with pytest.raises(InputError):
        encoder.encode([3], max_length=8)  # type: ignore[list-item]


def test_round_trip_official_layout(encoder: SoulTextEncoder, tmp_path) -> None:
    encoder.save_pretrained(tmp_path)
    assert (tmp_path / "text_encoder" / "config.json").is_file()
    assert (tmp_path / "tokenizer" / "tokenizer.json").is_file()
    loaded = SoulTextEncoder.from_pretrained(tmp_path, max_length=32)
    assert loaded.tokenizer(PROMPTS).input_ids == encoder.tokenizer(PROMPTS).input_ids
    assert torch.equal(loaded.encode(PROMPTS), encoder.encode(PROMPTS))
    with pytest.raises(InputError):
        SoulTextEncoder.from_pretrained(tmp_path / "nowhere")


def test_build_from_tiny_preset() -> None:
    config = load_preset("tiny")
    enc = SoulTextEncoder.build(config, seed=0)
    emb = enc.encode(["a person talks"])
    assert tuple(emb.shape) == (1, config.text_encoder.max_length, config.text_encoder.hidden_size)
    assert len(enc.tokenizer) <= config.text_encoder.config["vocab_size"]


def test_prompt_cleaning_matches_diffusers() -> None:
    from soul.models.text_encoder import prompt_clean

    for text in ["  a  man\n talking &amp;amp; smiling ", "caf\u00c3\u00a9 \t scene", "plain"]:
        assert prompt_clean(text) == diffusers_prompt_clean(text)
