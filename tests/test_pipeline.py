"""SoulPipeline on the tiny preset: TI2V conditioning, guidance passes, determinism, checkpoints.

Every test runs the real classes (Wan transformer with Soul's audio layers, Wan VAE, umT5, wav2vec2)
at toy size with random weights: 64x64, 17 frames -> 5 latent frames of 4x4 -> 20 tokens.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from soul.errors import InputError
from soul.media.audio import Audio
from soul.sampling.guidance import Conditions, Guidance
from soul.sampling.layout import latent_layout, token_timesteps
from soul.pipelines.soul_pipeline import SoulPipeline
from soul.sampling.loop import denoise_chunk
from soul.sampling.schedules import distilled_sigmas, flow_sigmas

FRAMES, SIZE, FPS = 17, 64, 16


@pytest.fixture(scope="module")
def pipe() -> SoulPipeline:
    return SoulPipeline.from_preset("tiny", seed=0)


@pytest.fixture(scope="module")
def portrait() -> Image.Image:
    # not square and not 64 px, so fitting (resize + centre crop) is exercised
    y, x = np.mgrid[0:72, 0:90]
    rgb = np.stack([x * 2.8, y * 3.5, (x + y) * 1.5], axis=-1).clip(0, 255).astype(np.uint8)
    return Image.fromarray(rgb)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    t = np.arange(int(16000 * FRAMES / FPS)) / 16000
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def generate(pipe: SoulPipeline, portrait: Image.Image, speech, seed: int = 0, **kw):
    args = dict(
        prompt="a person talking",
        num_frames=FRAMES,
        height=SIZE,
        width=SIZE,
        fps=FPS,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(seed),
    )
    args.update(kw)
    return pipe(portrait, speech, **args)


class Recorder:
    """Wraps the transformer's forward: counts calls and keeps the last inputs."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.original = model.forward
        self.calls = 0
        self.inputs: list[dict] = []

    def __enter__(self) -> Recorder:
        def forward(*args, **kwargs):
            self.calls += 1
            self.inputs.append(kwargs)
            return self.original(*args, **kwargs)

        self.model.forward = forward
        return self

    def __exit__(self, *exc) -> None:
        del self.model.forward


def test_end_to_end_shapes_and_dtype(pipe, portrait, speech) -> None:
    steps = []
    out = generate(pipe, portrait, speech, callback=lambda i, n, x: steps.append((i, n, tuple(x.shape))))
    assert out.frames.shape == (FRAMES, SIZE, SIZE, 3)
    assert out.frames.dtype == np.uint8
    assert out.latents.shape == (1, 48, 5, 4, 4)
    assert out.fps == FPS
    assert steps == [(1, 2, (1, 48, 5, 4, 4)), (2, 2, (1, 48, 5, 4, 4))]
    assert out.info["passes_per_step"] == 3 and out.info["sigmas"][-1] == 0.0


def test_seed_determinism(pipe, portrait, speech) -> None:
    a = generate(pipe, portrait, speech, seed=1)
    b = generate(pipe, portrait, speech, seed=1)
    c = generate(pipe, portrait, speech, seed=2)
    assert np.array_equal(a.frames, b.frames)
    assert torch.equal(a.latents, b.latents)
    assert not torch.equal(a.latents, c.latents)


def test_frame_zero_is_the_portrait_latent(pipe, portrait, speech) -> None:
    out = generate(pipe, portrait, speech, output_type="latent")
    assert out.frames is None
    anchor = pipe.encode_image(portrait, SIZE, SIZE)
    assert torch.equal(out.latents[:, :, :1], anchor)
    assert not torch.equal(out.latents[:, :, 1:2], anchor)


def test_per_token_timestep_and_audio_frame_mask(pipe, portrait, speech) -> None:
    with Recorder(pipe.transformer) as rec:
        out = generate(pipe, portrait, speech, output_type="latent", text_guidance_scale=1.0, audio_guidance_scale=1.0)
    assert rec.calls == 2
    tokens_per_frame = (4 // 2) * (4 // 2)
    for step, kw in enumerate(rec.inputs):
        t = kw["timestep"]
        assert t.shape == (1, 5 * tokens_per_frame)
        assert torch.all(t[:, :tokens_per_frame] == 0)
        assert torch.allclose(t[:, tokens_per_frame:], torch.tensor(out.info["sigmas"][step] * 1000))
        assert kw["audio_frame_mask"].tolist() == [[False, True, True, True, True]]
        assert kw["audio_features"].shape[:3] == (1, 1, 5)
        # the model sees the portrait latent in frame 0 at every step
        assert torch.equal(kw["hidden_states"][:, :, :1], out.latents[:, :, :1])


@pytest.mark.parametrize(
    ("kwargs", "per_step"),
    [
        (dict(text_guidance_scale=5.0, audio_guidance_scale=4.0), 3),
        (dict(text_guidance_scale=1.0, audio_guidance_scale=4.0), 2),
        (dict(text_guidance_scale=5.0, audio_guidance_scale=1.0), 2),
        (dict(text_guidance_scale=3.0, audio_guidance_scale=3.0), 2),
        (dict(text_guidance_scale=1.0, audio_guidance_scale=1.0), 1),
        (dict(text_guidance_scale=5.0, audio_guidance_scale=4.0, guidance=False), 1),
    ],
)
def test_transformer_calls_per_step(pipe, portrait, speech, kwargs, per_step) -> None:
    with Recorder(pipe.transformer) as rec:
        out = generate(pipe, portrait, speech, output_type="latent", **kwargs)
    assert rec.calls == 2 * per_step
    assert out.info["passes_per_step"] == per_step
    audio_null = [kw for kw in rec.inputs if not kw["audio_features"].any()]
    # the unconditional/text passes run on zeroed audio features (the audio null), except when audio
    # guidance is off (scale 1): then the audio stays on in every pass
    audio_off = kwargs.get("audio_guidance_scale") == 1.0
    expected_null = 0 if (per_step == 1 or audio_off) else 2 * (per_step - 1)
    assert len(audio_null) == expected_null


def test_batched_guidance_matches_sequential(pipe, portrait, speech) -> None:
    seq = generate(pipe, portrait, speech, output_type="latent", negative_prompt="blurry")
    with Recorder(pipe.transformer) as rec:
        bat = generate(pipe, portrait, speech, output_type="latent", negative_prompt="blurry", batched_guidance=True)
    assert rec.calls == 2 and rec.inputs[0]["hidden_states"].shape[0] == 3
    torch.testing.assert_close(bat.latents, seq.latents, rtol=1e-4, atol=1e-4)


def test_distilled_x0_sampler_one_pass(pipe, portrait, speech) -> None:
    with Recorder(pipe.transformer) as rec:
        out = generate(pipe, portrait, speech, output_type="latent", sampler="x0", sigmas=[1.0, 0.75, 0.5, 0.25], guidance=False, num_inference_steps=None)
    assert rec.calls == 4
    assert [kw["timestep"][0, -1].item() for kw in rec.inputs] == [1000.0, 750.0, 500.0, 250.0]
    again = generate(pipe, portrait, speech, output_type="latent", sampler="x0", sigmas=[1.0, 0.75, 0.5, 0.25], guidance=False, num_inference_steps=None)
    assert torch.equal(out.latents, again.latents)


def test_denoise_chunk_keeps_a_longer_clean_prefix(pipe) -> None:
    g = torch.Generator().manual_seed(0)
    prefix = torch.randn(1, 48, 2, 4, 4, generator=g)  # anchor + one motion frame
    noise = torch.randn(1, 48, 5, 4, 4, generator=g)
    text = torch.randn(1, 8, 32, generator=g)
    cfg = pipe.config
    audio = torch.randn(1, 1, 5, cfg.audio.window, cfg.audio_encoder.num_hidden_states, cfg.audio_encoder.hidden_size, generator=g)
    with Recorder(pipe.transformer) as rec:
        out = denoise_chunk(pipe.transformer, noise, prefix, Conditions(text=text, audio=audio), flow_sigmas(3, 3.0), guidance=Guidance(1.0, 2.0), sampler="unipc")
    assert torch.equal(out[:, :, :2], prefix)
    assert rec.calls == 6
    t = rec.inputs[0]["timestep"]
    assert torch.all(t[:, :8] == 0) and torch.all(t[:, 8:] == 1000.0)
    assert rec.inputs[0]["audio_frame_mask"].tolist() == [[False, False, True, True, True]]
    with pytest.raises(ValueError):
        denoise_chunk(pipe.transformer, noise, prefix[:, :, :0], Conditions(text=text), flow_sigmas(2))


def test_layout_helpers() -> None:
    layout = latent_layout(num_frames=121, height=704, width=1280, patch_size=(1, 2, 2), scale_spatial=16, scale_temporal=4)
    assert layout.latent_shape == (31, 44, 80)
    assert layout.num_tokens == 31 * 22 * 40
    t = token_timesteps(500.0, layout.latent_shape, layout.patch_size, clean_frames=1, batch=2)
    assert t.shape == (2, layout.num_tokens)
    assert torch.all(t[:, : 22 * 40] == 0) and torch.all(t[:, 22 * 40 :] == 500.0)
    # the token grid follows the model's patch size, temporal patches included
    t2 = token_timesteps(torch.tensor([100.0, 200.0]), (4, 4, 6), (2, 2, 3), clean_frames=2, batch=2)
    assert t2.tolist() == [[0.0] * 4 + [100.0] * 4, [0.0] * 4 + [200.0] * 4]
    with pytest.raises(ValueError):
        token_timesteps(1.0, (4, 4, 6), (2, 2, 3), clean_frames=1, batch=1)


def test_duration_sets_frame_count(pipe, portrait, speech) -> None:
    out = generate(pipe, portrait, Audio(speech, 16000), num_frames=None, duration=0.5, output_type="latent")
    assert out.info["num_frames"] == 9 and out.info["video_frames"] == 8 and out.latents.shape[2] == 3
    from_audio = generate(pipe, portrait, speech, num_frames=None, output_type="latent")
    assert from_audio.info["num_frames"] == FRAMES


@pytest.mark.parametrize(
    ("kwargs", "subject"),
    [
        (dict(height=48), "size"),
        (dict(width=100), "size"),
        (dict(num_frames=16), "num_frames"),
        (dict(sigmas=[0.5, 0.9], num_inference_steps=None), "sigmas"),
        (dict(sampler="heun"), "sampler"),
        (dict(height=64.0), "height"),
        (dict(fps=0), "fps"),
        (dict(text_guidance_scale=float("nan")), "text_guidance_scale"),
        (dict(num_inference_steps=0), "num_inference_steps"),
    ],
)
def test_bad_inputs_raise_input_error(pipe, portrait, speech, kwargs, subject) -> None:
    with pytest.raises(InputError) as err:
        generate(pipe, portrait, speech, **kwargs)
    assert subject in err.value.subject


def test_bad_audio_raises_input_error(pipe, portrait, speech) -> None:
    with pytest.raises(InputError, match="at most 4"):
        generate(pipe, portrait, [speech] * 5)
    with pytest.raises(InputError, match="audio"):
        generate(pipe, portrait, speech.reshape(2, -1))
    with pytest.raises(InputError, match="NaN"):
        generate(pipe, portrait, np.full(1000, np.nan, dtype=np.float32))
    with pytest.raises(InputError, match="16000 Hz"):
        generate(pipe, portrait, Audio(speech, 22050))
    with pytest.raises(InputError, match="person_masks"):
        generate(pipe, portrait, [speech, speech], person_masks=np.ones((3, 4, 4), dtype=np.float32))


def test_two_speakers_with_masks(pipe, portrait, speech) -> None:
    masks = np.zeros((2, SIZE, SIZE), dtype=np.float32)
    masks[0, :, : SIZE // 2] = 1
    masks[1, :, SIZE // 2 :] = 1
    with Recorder(pipe.transformer) as rec:
        generate(pipe, portrait, [speech, np.zeros_like(speech)], person_masks=masks, output_type="latent", text_guidance_scale=1.0, audio_guidance_scale=1.0)
    kw = rec.inputs[0]
    assert kw["audio_features"].shape[1] == 2
    assert kw["audio_masks"].shape == (1, 2, 4, 4)
    assert kw["audio_masks"][0, 0, :, :2].eq(1).all() and kw["audio_masks"][0, 0, :, 2:].eq(0).all()


@pytest.fixture(scope="module")
def saved(pipe, tmp_path_factory) -> Path:
    return pipe.save_pretrained(tmp_path_factory.mktemp("ckpt") / "soul-tiny")


def test_save_and_reload_reproduce_frames(pipe, portrait, speech, saved) -> None:
    for name in ("model_index.json", "transformer/config.json", "vae/config.json", "text_encoder/config.json", "soul/audio_layers.safetensors", "soul/preset.yaml", "scheduler/scheduler_config.json"):
        assert (saved / name).is_file(), name
    # give the audio layers non-zero weights so the round trip covers them
    before = {k: v.clone() for k, v in pipe.transformer.soul_state_dict().items()}
    with torch.no_grad():
        for p in pipe.transformer.audio_layers.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(3)))
    try:
        path = pipe.save_pretrained(saved.parent / "trained")
        reloaded = SoulPipeline.from_pretrained(path, torch_dtype=torch.float32)
        a = generate(pipe, portrait, speech, seed=5)
        b = generate(reloaded, portrait, speech, seed=5)
        assert np.array_equal(a.frames, b.frames)
        assert torch.equal(a.latents, b.latents)
    finally:
        pipe.transformer.load_soul_state_dict(before)


@pytest.mark.parametrize("missing", ["vae/config.json", "text_encoder/config.json", "transformer/config.json", "model_index.json"])
def test_missing_file_is_named(saved, tmp_path, missing) -> None:
    copy = tmp_path / "ckpt"
    shutil.copytree(saved, copy)
    (copy / missing).unlink()
    with pytest.raises(InputError) as err:
        SoulPipeline.from_pretrained(copy, torch_dtype=torch.float32)
    assert missing in err.value.subject
    with pytest.raises(InputError):
        SoulPipeline.from_pretrained(tmp_path / "nowhere")


def test_denoise_chunk_matches_diffusers_ti2v_pipeline() -> None:
    """With fresh (zero-output) audio layers and equal scales, Soul's loop is diffusers' TI2V loop."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline
    from diffusers.utils.torch_utils import randn_tensor

    from soul.config import load_preset
    from soul.models.transformer import build_transformer
    from soul.models.vae import build_vae, encode_frames
    from soul.sampling.schedules import check_sigmas

    cfg = load_preset("tiny")
    torch.manual_seed(0)
    transformer, vae = build_transformer(cfg).eval(), build_vae(cfg)
    g = torch.Generator().manual_seed(0)
    text, neg = torch.randn(1, 8, 32, generator=g), torch.randn(1, 8, 32, generator=g)
    audio = torch.randn(1, 1, 5, cfg.audio.window, cfg.audio_encoder.num_hidden_states, cfg.audio_encoder.hidden_size, generator=g)
    img = Image.fromarray((np.random.default_rng(0).random((SIZE, SIZE, 3)) * 255).astype(np.uint8))

    scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0)
    reference = WanImageToVideoPipeline(
        tokenizer=None, text_encoder=None, vae=vae, scheduler=scheduler, transformer=transformer, expand_timesteps=True
    )
    ref = reference(
        image=img, prompt_embeds=text, negative_prompt_embeds=neg, height=SIZE, width=SIZE, num_frames=FRAMES,
        num_inference_steps=3, guidance_scale=4.0, generator=torch.Generator().manual_seed(7), output_type="latent",
    ).frames

    pixels = torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)[None, :, None]
    with torch.no_grad():
        anchor = encode_frames(vae, pixels)
        noise = randn_tensor((1, 48, 5, 4, 4), generator=torch.Generator().manual_seed(7), dtype=torch.float32)
        out = denoise_chunk(
            transformer, noise, anchor, Conditions(text=text, null_text=neg, audio=audio),
            check_sigmas(scheduler.sigmas[:-1].double()), guidance=Guidance(4.0, 4.0), sampler="euler",
        )
    assert ref.abs().max() > 1.0
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_official_layout_without_soul_layers_is_plain_ti2v(pipe, portrait, speech, saved, tmp_path) -> None:
    copy = tmp_path / "official"
    shutil.copytree(saved, copy)
    (copy / "soul" / "audio_layers.safetensors").unlink()
    (copy / "soul" / "config.json").unlink()
    loaded = SoulPipeline.from_pretrained(copy, torch_dtype=torch.float32)
    assert all(p.abs().sum() == 0 for n, p in loaded.transformer.audio_layers.named_parameters() if "to_out" in n)
    a = generate(pipe, portrait, speech, seed=4, output_type="latent")
    b = generate(loaded, portrait, speech, seed=4, output_type="latent")
    assert torch.equal(a.latents, b.latents)


def test_preset_mismatch_and_uncached_preset(saved) -> None:
    with pytest.raises(InputError) as err:
        SoulPipeline.from_pretrained(saved, preset="wan22-ti2v-5b", torch_dtype=torch.float32)
    assert "transformer/config.json" in err.value.subject and "wan22-ti2v-5b" in err.value.problem
    with pytest.raises(InputError):
        SoulPipeline.from_pretrained("tiny")


def test_cpu_offload_and_vae_tiling_keep_results(portrait, speech) -> None:
    pipe = SoulPipeline.from_preset("tiny", seed=0)
    ref = generate(pipe, portrait, speech, seed=6)
    pipe.enable_model_cpu_offload("cpu")
    pipe.enable_vae_tiling()
    assert pipe.vae.use_tiling
    out = generate(pipe, portrait, speech, seed=6)
    assert np.array_equal(out.frames, ref.frames)
    assert pipe.device == torch.device("cpu")


def test_saved_directory_loads_in_diffusers(saved) -> None:
    from diffusers import UniPCMultistepScheduler, WanImageToVideoPipeline, WanTransformer3DModel

    loaded = WanImageToVideoPipeline.from_pretrained(saved)
    assert type(loaded.transformer) is WanTransformer3DModel
    assert isinstance(loaded.scheduler, UniPCMultistepScheduler) and loaded.config.expand_timesteps


def test_bfloat16_transformer_runs(portrait, speech) -> None:
    pipe = SoulPipeline.from_preset("tiny", seed=0, torch_dtype=torch.bfloat16)
    out = generate(pipe, portrait, speech, sampler="unipc")
    assert out.frames.shape == (FRAMES, SIZE, SIZE, 3)
    assert torch.isfinite(out.latents).all() and out.latents.dtype == torch.float32
