"""SoulTransformer3DModel: equal to diffusers' TI2V when fresh; audio routed in time and space."""

from __future__ import annotations

import pytest
import torch
from diffusers import WanTransformer3DModel

from soul.config import load_preset
from soul.errors import InputError
from soul.models.audio_projector import AudioProjector
from soul.models.transformer import SOUL_PREFIXES, SoulTransformer3DModel, build_transformer, soul_kwargs

TINY = load_preset("tiny")
F_LAT = 5


def _audio_shape(streams: int, frames: int = F_LAT, batch: int = 1) -> tuple[int, ...]:
    return (batch, streams, frames, TINY.audio.window, TINY.audio_encoder.num_hidden_states, TINY.audio_encoder.hidden_size)


def _inputs(batch: int = 1, frames: int = F_LAT, side: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, 48, frames, side, side, generator=g)
    timestep = torch.full((batch,), 700.0)
    text = torch.randn(batch, 8, TINY.transformer.text_dim, generator=g)
    return latents, timestep, text


def _soul(**overrides: object) -> SoulTransformer3DModel:
    torch.manual_seed(0)
    kwargs = {**TINY.transformer.kwargs(), **soul_kwargs(TINY), **overrides}
    return SoulTransformer3DModel(**kwargs).eval()


def _plain_like(model: SoulTransformer3DModel) -> WanTransformer3DModel:
    plain = WanTransformer3DModel(**model.backbone_config()).eval()
    plain.load_state_dict(model.backbone_state_dict(), strict=True)
    return plain


@torch.no_grad()
def _wake(model: SoulTransformer3DModel, seed: int = 1) -> SoulTransformer3DModel:
    """Give the zero-initialised audio output projections weights, as training would."""
    g = torch.Generator().manual_seed(seed)
    for layer in model.audio_layers.values():
        out = layer.attn.to_out[0]
        out.weight.copy_(torch.randn(out.weight.shape, generator=g) * 0.5)
        out.bias.copy_(torch.randn(out.bias.shape, generator=g) * 0.1)
    return model


def _frame_changed(a: torch.Tensor, b: torch.Tensor) -> list[bool]:
    return [not torch.equal(a[:, :, f], b[:, :, f]) for f in range(a.shape[2])]


# --------------------------------------------------------------------------- equality with diffusers


def test_fresh_soul_equals_plain_ti2v_exactly() -> None:
    model = _soul()
    plain = _plain_like(model)
    latents, timestep, text = _inputs(batch=2)
    audio = torch.randn(_audio_shape(2, batch=2))
    masks = torch.zeros(2, 2, 4, 4)
    masks[:, 0, :, :2] = 1.0
    masks[:, 1, :2, 2:] = 1.0
    frame_mask = torch.tensor([[False, True, True, True, True]] * 2)
    with torch.no_grad():
        expected = plain(latents, timestep, text).sample
        assert torch.equal(model(latents, timestep, text).sample, expected)
        single = model(latents, timestep, text, audio_features=audio[:, :1]).sample
        assert torch.equal(single, expected)
        multi = model(latents, timestep, text, audio_features=audio, audio_masks=masks, audio_frame_mask=frame_mask).sample
        assert torch.equal(multi, expected)


def test_fresh_soul_equals_plain_with_per_token_timesteps() -> None:
    model = _soul()
    plain = _plain_like(model)
    latents, _, text = _inputs(batch=2)
    per_frame = 4  # 4x4 latent, patch 2x2
    timestep = torch.full((2, F_LAT * per_frame), 600.0)
    timestep[:, :per_frame] = 0.0  # the clean portrait frame, as TI2V does
    timestep[1] = 300.0
    audio = torch.randn(_audio_shape(1, batch=2))
    with torch.no_grad():
        expected = plain(latents, timestep, text).sample
        got = model(latents, timestep, text, audio_features=audio).sample
    assert torch.equal(got, expected)


def test_gradient_checkpointing_gives_same_gradients() -> None:
    model = _wake(_soul()).train()
    latents, timestep, text = _inputs()
    audio = torch.randn(_audio_shape(1))

    def grads() -> dict[str, torch.Tensor]:
        model.zero_grad()
        model(latents, timestep, text, audio_features=audio).sample.square().mean().backward()
        return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    plain_grads = grads()
    model.enable_gradient_checkpointing()
    ckpt_grads = grads()
    assert set(plain_grads) == set(ckpt_grads)
    assert any(k.startswith("audio_layers.") for k in ckpt_grads)
    for key, value in plain_grads.items():
        torch.testing.assert_close(ckpt_grads[key], value, rtol=1e-5, atol=1e-6)


def test_bf16_model_keeps_diffusers_fp32_modules_and_runs() -> None:
    model = build_transformer(TINY, dtype=torch.bfloat16).eval()
    assert model.patch_embedding.weight.dtype == torch.bfloat16
    assert model.audio_layers["0"].attn.to_q.weight.dtype == torch.bfloat16
    assert model.blocks[0].scale_shift_table.dtype == torch.float32
    assert model.condition_embedder.time_embedder.linear_1.weight.dtype == torch.float32
    latents, timestep, text = _inputs()
    with torch.no_grad():
        out = model(latents.bfloat16(), timestep, text.bfloat16(), audio_features=torch.randn(_audio_shape(1))).sample
    assert out.dtype == torch.bfloat16 and out.shape == latents.shape and torch.isfinite(out.float()).all()


# ------------------------------------------------------------------------------------- parameter names


def test_backbone_keys_are_exactly_diffusers_keys_tiny() -> None:
    model = _soul()
    plain = WanTransformer3DModel(**model.backbone_config())
    ours = {k: tuple(v.shape) for k, v in model.backbone_state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in plain.state_dict().items()}
    assert ours == theirs
    soul_keys = set(model.state_dict()) - set(theirs)
    assert soul_keys and all(k.startswith(SOUL_PREFIXES) for k in soul_keys)
    assert set(model.soul_state_dict()) == soul_keys


def test_backbone_keys_are_exactly_diffusers_keys_5b_on_meta() -> None:
    big = load_preset("wan22-ti2v-5b")
    soul = build_transformer(big, meta=True)
    with torch.device("meta"):
        plain = WanTransformer3DModel(**big.transformer.kwargs())
    ours = {k: tuple(v.shape) for k, v in soul.backbone_state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in plain.state_dict().items()}
    assert ours == theirs
    assert sum(v.numel() for v in plain.parameters()) == 4_999_787_712
    assert sorted(int(k) for k in soul.audio_layers) == list(range(30))


# ------------------------------------------------------------------------------------------ audio routing


def test_audio_of_frame_k_reaches_only_frame_k() -> None:
    # Audio only in the last block: after it come only token-wise layers (FFN, output head), so any
    # leak across frames would have to come from the audio attention itself.
    model = _wake(_soul(audio_block_indices=[TINY.transformer.num_layers - 1]))
    latents, timestep, text = _inputs()
    audio = torch.randn(_audio_shape(1))
    with torch.no_grad():
        base = model(latents, timestep, text, audio_features=audio).sample
        for k in range(F_LAT):
            changed = audio.clone()
            changed[:, :, k] = torch.randn(changed[:, :, k].shape)
            out = model(latents, timestep, text, audio_features=changed).sample
            assert _frame_changed(base, out) == [f == k for f in range(F_LAT)]


def test_precomputed_audio_tokens_match_features() -> None:
    model = _wake(_soul())
    latents, timestep, text = _inputs()
    audio = torch.randn(_audio_shape(2))
    masks = torch.zeros(1, 2, 4, 4)
    masks[:, 0, :, :2] = 1.0
    with torch.no_grad():
        tokens = model.project_audio(audio)
        assert tokens.shape == (1, 2, F_LAT, TINY.audio.tokens_per_frame, TINY.transformer.inner_dim)
        from_features = model(latents, timestep, text, audio_features=audio, audio_masks=masks).sample
        from_tokens = model(latents, timestep, text, audio_tokens=tokens, audio_masks=masks).sample
    assert torch.equal(from_features, from_tokens)
    with pytest.raises(InputError, match="audio_tokens"):
        model(latents, timestep, text, audio_features=audio, audio_tokens=tokens, audio_masks=masks)
    with pytest.raises(InputError, match="audio_tokens"):
        model(latents, timestep, text, audio_tokens=tokens[..., :-1], audio_masks=masks)


def test_woken_audio_changes_the_output_through_all_blocks() -> None:
    model = _wake(_soul())
    latents, timestep, text = _inputs()
    with torch.no_grad():
        silent = model(latents, timestep, text).sample
        voiced = model(latents, timestep, text, audio_features=torch.randn(_audio_shape(1))).sample
    assert (silent - voiced).abs().max() > 1e-3


def test_multi_person_streams_reach_only_their_masks() -> None:
    model = _wake(_soul(audio_block_indices=[TINY.transformer.num_layers - 1]))
    latents, timestep, text = _inputs(side=8)  # 8x8 latent -> 4x4 patch grid
    masks = torch.zeros(1, 2, 8, 8)
    masks[:, 0, :, :4] = 1.0  # person 0: left half
    masks[:, 1, :4, 4:] = 1.0  # person 1: top-right quadrant; bottom-right belongs to nobody
    region = {0: (slice(None), slice(0, 4)), 1: (slice(0, 4), slice(4, 8)), "none": (slice(4, 8), slice(4, 8))}
    audio = torch.randn(_audio_shape(2))

    def run(features: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(latents, timestep, text, audio_features=features, audio_masks=masks).sample

    base = run(audio)
    for stream in (0, 1):
        changed = audio.clone()
        changed[:, stream] = torch.randn(changed[:, stream].shape)
        diff = (run(changed) - base).abs()
        rows, cols = region[stream]
        assert diff[..., rows, cols].amax() > 1e-4
        outside = diff.clone()
        outside[..., rows, cols] = 0.0
        assert outside.amax() == 0.0, f"stream {stream} leaked outside its mask"
    rows, cols = region["none"]
    without_audio = model(latents, timestep, text).sample.detach()
    # Tokens outside every mask hear the learned null token: they differ from "no audio at all",
    # and neither stream can move them.
    assert (base - without_audio)[..., rows, cols].abs().amax() > 1e-4


def test_single_stream_with_mask_sends_outside_tokens_to_null() -> None:
    model = _wake(_soul(audio_block_indices=[TINY.transformer.num_layers - 1]))
    latents, timestep, text = _inputs(side=8)
    masks = torch.zeros(1, 1, 8, 8)
    masks[:, 0, 2:6, 2:6] = 1.0
    audio = torch.randn(_audio_shape(1))
    with torch.no_grad():
        base = model(latents, timestep, text, audio_features=audio, audio_masks=masks).sample
        other = model(latents, timestep, text, audio_features=torch.randn(_audio_shape(1)), audio_masks=masks).sample
    diff = (base - other).abs()
    assert diff[..., 2:6, 2:6].amax() > 1e-4
    diff[..., 2:6, 2:6] = 0.0
    assert diff.amax() == 0.0


def test_audio_frame_mask_leaves_masked_frames_untouched() -> None:
    model = _wake(_soul(audio_block_indices=[TINY.transformer.num_layers - 1]))
    latents, timestep, text = _inputs()
    frame_mask = torch.tensor([[False, True, False, True, True]])
    with torch.no_grad():
        silent = model(latents, timestep, text).sample
        a = model(latents, timestep, text, audio_features=torch.randn(_audio_shape(1)), audio_frame_mask=frame_mask).sample
        b = model(latents, timestep, text, audio_features=torch.randn(_audio_shape(1)), audio_frame_mask=frame_mask).sample
    assert _frame_changed(a, b) == frame_mask[0].tolist()
    assert _frame_changed(silent, a) == frame_mask[0].tolist()


# ------------------------------------------------------------------------------------------ projector


def test_projector_shapes_and_layer_weights() -> None:
    proj = AudioProjector(feature_dim=6, num_hidden_states=3, window=8, tokens_per_frame=4, token_dim=5, hidden_dim=16, out_dim=12)
    out = proj(torch.randn(2, 3, 7, 8, 3, 6))
    assert out.shape == (2, 3, 7, 4, 12)
    weights = proj.layer_weights()
    assert weights.shape == (3,) and torch.allclose(weights.sum(), torch.tensor(1.0))
    with torch.no_grad():
        proj.layer_logits.copy_(torch.tensor([0.0, -1e4, -1e4]))
    x = torch.randn(1, 1, 2, 8, 3, 6)
    y = x.clone()
    y[..., 1:, :] = torch.randn_like(y[..., 1:, :])  # layers with ~zero weight no longer matter
    torch.testing.assert_close(proj(x), proj(y))
    with pytest.raises(InputError):
        proj(torch.randn(1, 1, 2, 7, 3, 6))


# ---------------------------------------------------------------------------------------------- errors


def test_bad_audio_inputs_raise_input_error() -> None:
    model = _soul()
    latents, timestep, text = _inputs()
    with pytest.raises(InputError, match="audio_masks"):
        model(latents, timestep, text, audio_features=torch.randn(_audio_shape(2)))
    with pytest.raises(InputError, match="audio_features"):
        model(latents, timestep, text, audio_features=torch.randn(_audio_shape(1, frames=4)))
    with pytest.raises(InputError, match="audio_features"):
        model(latents, timestep, text, audio_features=torch.randn(_audio_shape(5)), audio_masks=torch.ones(1, 5, 4, 4))  # more than max_streams (4)
    with pytest.raises(InputError, match="audio_masks"):
        model(latents, timestep, text, audio_features=torch.randn(_audio_shape(2)), audio_masks=torch.ones(1, 2, 8, 8))
    with pytest.raises(InputError, match="audio_frame_mask"):
        model(latents, timestep, text, audio_features=torch.randn(_audio_shape(1)), audio_frame_mask=torch.ones(1, 4, dtype=torch.bool))
    with pytest.raises(InputError):
        _soul(audio_block_indices=[5])
