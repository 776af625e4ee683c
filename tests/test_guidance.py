"""Guidance: the fewest transformer calls that reproduce the three-pass formula exactly."""

from __future__ import annotations

import pytest
import torch

from soul.sampling.guidance import Conditions, Guidance, GuidancePass, guided_velocity


class FakeModel:
    """A velocity model whose output depends non-linearly on latents, text and audio; counts calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.batch_sizes: list[int] = []

    def __call__(self, *, hidden_states, timestep, encoder_hidden_states, audio_features=None, audio_masks=None):
        self.calls += 1
        self.batch_sizes.append(hidden_states.shape[0])
        b = hidden_states.shape[0]
        text = encoder_hidden_states.sum(dim=(1, 2)).view(b, 1, 1, 1, 1)
        out = torch.tanh(hidden_states * (1 + 0.1 * text)) + 0.01 * timestep.view(b, -1).mean(1).view(b, 1, 1, 1, 1)
        if audio_features is not None:
            a = audio_features.flatten(1).sum(1).view(b, 1, 1, 1, 1)
            out = out + torch.sin(a) * hidden_states.pow(2)
        if audio_masks is not None:
            out = out * (1 + audio_masks.flatten(1).mean(1).view(b, 1, 1, 1, 1))
        return out


def make_inputs(text_len: int = 5, null_len: int = 5):
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(2, 4, 3, 2, 2, generator=g)
    timestep = torch.full((2, 12), 500.0)
    conditions = Conditions(
        text=torch.randn(2, text_len, 8, generator=g),
        null_text=torch.randn(2, null_len, 8, generator=g),
        audio=torch.randn(2, 1, 3, 4, 2, 6, generator=g),
        extra={"audio_masks": torch.rand(2, 1, 2, 2, generator=g)},
    )
    return latents, timestep, conditions


def full_formula(model, latents, timestep, c: Conditions, s_t: float, s_a: float) -> torch.Tensor:
    kw = dict(hidden_states=latents, timestep=timestep, **c.extra)
    if s_a == 1.0 and s_t != 1.0:  # audio guidance off: plain text CFG with the audio on in both passes
        ua = model(encoder_hidden_states=c.null_text, audio_features=c.audio, **kw)
        ca = model(encoder_hidden_states=c.text, audio_features=c.audio, **kw)
        return ua + s_t * (ca - ua)
    u = model(encoder_hidden_states=c.null_text, audio_features=torch.zeros_like(c.audio), **kw)
    c0 = model(encoder_hidden_states=c.text, audio_features=torch.zeros_like(c.audio), **kw)
    ca = model(encoder_hidden_states=c.text, audio_features=c.audio, **kw)
    return u + s_t * (c0 - u) + s_a * (ca - c0)


CASES = [
    (5.0, 4.0, 3),  # both guided
    (1.0, 4.0, 2),  # text off: v(c,0) + s_a (v(c,a) - v(c,0))
    (3.0, 3.0, 2),  # equal scales: joint CFG v(0,0) + s (v(c,a) - v(0,0))
    (5.0, 0.0, 2),  # audio ignored: text CFG on null audio
    (5.0, 1.0, 2),  # audio guidance off: text CFG with audio on, v(0,a) + s_t (v(c,a) - v(0,a))
    (1.0, 1.0, 1),  # no guidance: v(c,a)
    (1.0, 0.0, 1),  # v(c,0)
]


@pytest.mark.parametrize(("s_t", "s_a", "calls"), CASES)
def test_call_count_and_exact_formula(s_t: float, s_a: float, calls: int) -> None:
    latents, timestep, cond = make_inputs()
    model = FakeModel()
    guidance = Guidance(s_t, s_a)
    assert guidance.num_passes() == calls
    v = guided_velocity(model, latents, timestep, cond, guidance)
    assert model.calls == calls
    expected = full_formula(FakeModel(), latents, timestep, cond, s_t, s_a)
    torch.testing.assert_close(v, expected, rtol=1e-5, atol=1e-5)


def test_disabled_guidance_is_one_conditional_pass() -> None:
    latents, timestep, cond = make_inputs()
    model = FakeModel()
    v = guided_velocity(model, latents, timestep, cond, Guidance(5.0, 4.0, enabled=False))
    assert model.calls == 1
    ref = FakeModel()(hidden_states=latents, timestep=timestep, encoder_hidden_states=cond.text, audio_features=cond.audio, **cond.extra)
    assert torch.equal(v, ref)


@pytest.mark.parametrize(("s_t", "s_a", "calls"), CASES[:4])
def test_batched_passes_match_sequential(s_t: float, s_a: float, calls: int) -> None:
    latents, timestep, cond = make_inputs(text_len=5, null_len=3)  # unequal prompt lengths get padded
    cond_padded = Conditions(
        text=cond.text,
        null_text=torch.nn.functional.pad(cond.null_text, (0, 0, 0, 2)),
        audio=cond.audio,
        extra=cond.extra,
    )
    model = FakeModel()
    batched = guided_velocity(model, latents, timestep, cond, Guidance(s_t, s_a), batched=True)
    assert model.calls == 1 and model.batch_sizes == [2 * calls]
    sequential = guided_velocity(FakeModel(), latents, timestep, cond_padded, Guidance(s_t, s_a))
    torch.testing.assert_close(batched, sequential, rtol=1e-5, atol=1e-5)


def test_without_audio_the_audio_pass_folds_into_the_text_pass() -> None:
    latents, timestep, cond = make_inputs()
    cond = Conditions(text=cond.text, null_text=cond.null_text, audio=None)
    model = FakeModel()
    v = guided_velocity(model, latents, timestep, cond, Guidance(5.0, 4.0))
    assert model.calls == 2
    kw = dict(hidden_states=latents, timestep=timestep)
    u = FakeModel()(encoder_hidden_states=cond.null_text, **kw)
    c = FakeModel()(encoder_hidden_states=cond.text, **kw)
    torch.testing.assert_close(v, u + 5.0 * (c - u), rtol=1e-5, atol=1e-5)
    assert Guidance(5.0, 4.0).weights(has_audio=False) == {GuidancePass.UNCOND: -4.0, GuidancePass.TEXT: 5.0}


def test_uncond_pass_needs_a_negative_prompt() -> None:
    latents, timestep, cond = make_inputs()
    cond = Conditions(text=cond.text, audio=cond.audio)
    with pytest.raises(ValueError, match="null_text"):
        guided_velocity(FakeModel(), latents, timestep, cond, Guidance(5.0, 4.0))
    # guidance with s_t = 1 never runs the unconditional pass, so no negative prompt is needed
    guided_velocity(FakeModel(), latents, timestep, cond, Guidance(1.0, 4.0))
