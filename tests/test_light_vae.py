"""The light decoder: Wan's frame-count and causality conventions, streaming, the taew2_2 layout,
the pipeline's vae="light" option and its distillation against the full decoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from soul.config import load_preset
from soul.errors import InputError
from soul.models.light_vae import LightDecoder, LightVAEConfig, light_vae_config_for
from soul.models.vae import build_vae, decode_latents


def _decoder(seed: int = 0, **kw: object) -> LightDecoder:
    torch.manual_seed(seed)
    return LightDecoder(LightVAEConfig(widths=(16, 8, 8, 8), **kw)).eval()  # type: ignore[arg-type]


@pytest.mark.parametrize("latent_frames", [1, 2, 5])
def test_frame_count_and_range_match_the_full_vae(latent_frames: int) -> None:
    cfg = load_preset("tiny")
    z = torch.randn(1, 48, latent_frames, 2, 3)
    with torch.no_grad():
        light = _decoder()(z)
        full = decode_latents(build_vae(cfg), z)
    assert light.shape == full.shape == (1, 3, 1 + 4 * (latent_frames - 1), 32, 48)
    assert light.min() >= -1 and light.max() <= 1


def test_an_8x_vae_gets_a_light_decoder_of_its_own_factor_with_the_same_layout() -> None:
    """The 8x miniature VAE (`mini`): two spatial upsamples instead of three, the first stage's
    upsample an identity at the same index, so the state-dict keys stay TAEHV's."""
    full_cfg = load_preset("mini")
    assert full_cfg.vae.scale_factor_spatial == 8
    light_cfg = light_vae_config_for(full_cfg.vae, widths=(16, 8, 8, 8))
    assert light_cfg.space_upscale == (False, True, True) and light_cfg.spatial_factor == 8
    z = torch.randn(1, 48, 3, 2, 3)
    with torch.no_grad():
        light = LightDecoder(light_cfg).eval()
        assert light(z).shape == decode_latents(build_vae(full_cfg), z).shape == (1, 3, 9, 16, 24)
    assert set(light.state_dict()) == set(_decoder().state_dict())
    with pytest.raises(InputError, match="space_upscale"):
        LightVAEConfig(space_upscale=(True, True))  # type: ignore[arg-type]


def test_an_unpatched_4x_vae_gets_a_light_decoder_without_a_pixel_shuffle(tmp_path: Path) -> None:
    """A preset whose VAE has no patchify (`patch_size: null`, the 4x mini VAE): the light decoder
    ends in 3 channels at full size instead of unshuffling patches that are not there."""
    preset = tmp_path / "mini4.yaml"
    preset.write_text("extends: mini\nvae:\n  in_channels: 3\n  out_channels: 3\n  patch_size: null\n  scale_factor_spatial: 4\n")
    full_cfg = load_preset(preset)
    light_cfg = light_vae_config_for(full_cfg.vae, widths=(16, 8, 8, 8))
    assert (light_cfg.patch_size, light_cfg.spatial_factor) == (1, 4)
    z = torch.randn(1, 48, 3, 4, 6)
    with torch.no_grad():
        assert LightDecoder(light_cfg).eval()(z).shape == decode_latents(build_vae(full_cfg), z).shape == (1, 3, 9, 16, 24)


def test_decoding_is_causal_in_time() -> None:
    dec = _decoder()
    z = torch.randn(1, 48, 4, 2, 2)
    z2 = z.clone()
    z2[:, :, 2] += 2.0  # latent 2 makes frames 5..8
    with torch.no_grad():
        a, b = dec(z), dec(z2)
    assert torch.equal(a[:, :, :5], b[:, :, :5])
    assert (a[:, :, 5:9] - b[:, :, 5:9]).abs().max() > 1e-4


def test_streaming_equals_one_call_for_any_split() -> None:
    dec = _decoder(1)
    z = torch.randn(1, 48, 6, 2, 2)
    with torch.no_grad():
        whole = dec(z)
    for cuts in ([1, 2, 3], [3, 3], [1, 1, 1, 1, 1, 1]):
        stream = dec.stream()
        parts, start = [], 0
        for n in cuts:
            parts.append(stream.push(z[:, :, start : start + n]))
            start += n
        assert torch.allclose(torch.cat(parts, 2), whole, atol=1e-6)


def test_final_memory_blocks_start_as_the_identity_then_mix_frames_causally_and_stream_exactly(tmp_path: Path) -> None:
    base = _decoder(2)
    z = torch.randn(1, 48, 5, 2, 2)
    grown = base.with_final_memory_blocks(1).eval()
    assert grown.config.final_memory_blocks == 1 and len(grown.decoder) == len(base.decoder) + 1
    with torch.no_grad():
        assert torch.equal(grown(z), base(z))  # new blocks change nothing until trained
        mix = grown.decoder[-1].conv[0]
        mix.weight.normal_(0, 0.1)
        trained = grown(z)
        assert (trained - base(z)).abs().max() > 1e-4
        z2 = z.clone()
        z2[:, :, 3] += 2.0  # latent 3 makes frames 9..12: nothing before may change
        assert torch.equal(grown(z2)[:, :, :9], trained[:, :, :9])
        stream = grown.stream()
        parts = torch.cat([stream.push(z[:, :, :2]), stream.push(z[:, :, 2:])], 2)
        assert torch.allclose(parts, trained, atol=1e-6)
    grown.save_pretrained(tmp_path / "grown")
    loaded = LightDecoder.from_pretrained(tmp_path / "grown")
    assert loaded.config.final_memory_blocks == 1
    with torch.no_grad():
        assert torch.equal(loaded(z), trained)
        assert torch.equal(loaded.with_final_memory_blocks(0)(z), base(z))  # the TAEHV layout again, other weights kept
    with pytest.raises(InputError, match="final_memory_blocks"):
        LightVAEConfig(final_memory_blocks=-1)


def test_latents_are_unnormalised_with_the_vae_statistics() -> None:
    mean, std = torch.randn(48).tolist(), (torch.rand(48) + 0.5).tolist()
    plain = _decoder(2)
    stats = LightDecoder(LightVAEConfig(widths=(16, 8, 8, 8), latents_mean=mean, latents_std=std)).eval()
    stats.load_state_dict(plain.state_dict())
    z = torch.randn(1, 48, 2, 2, 2)
    raw = z * torch.tensor(std).view(1, 48, 1, 1, 1) + torch.tensor(mean).view(1, 48, 1, 1, 1)
    with torch.no_grad():
        assert torch.allclose(stats(z), plain(raw), atol=1e-5)


def _taew2_2_state(seed: int) -> dict[str, torch.Tensor]:
    """Random tensors under the published taew2_2 key names and shapes (decoder and encoder)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.05

    widths = (256, 128, 64, 64)
    sd = {"decoder.1.weight": r(256, 48, 3, 3), "decoder.1.bias": r(256)}
    for stage, first in enumerate((3, 9, 15)):
        n = widths[stage]
        for i in range(first, first + 3):
            sd |= {f"decoder.{i}.conv.0.weight": r(n, 2 * n, 3, 3), f"decoder.{i}.conv.0.bias": r(n),
                   f"decoder.{i}.conv.2.weight": r(n, n, 3, 3), f"decoder.{i}.conv.2.bias": r(n),
                   f"decoder.{i}.conv.4.weight": r(n, n, 3, 3), f"decoder.{i}.conv.4.bias": r(n)}
        # time-grow: stride 1 in the first stage, but stored with two frames' channels
        sd[f"decoder.{first + 4}.conv.weight"] = r(2 * n, n, 1, 1)
        sd[f"decoder.{first + 5}.weight"] = r(widths[stage + 1], n, 3, 3)
    sd |= {"decoder.22.weight": r(12, 64, 3, 3), "decoder.22.bias": r(12)}
    sd |= {"encoder.0.weight": r(64, 12, 3, 3), "encoder.0.bias": r(64)}
    return sd


def test_loads_the_taew2_2_layout_from_a_file(tmp_path: Path) -> None:
    sd = _taew2_2_state(3)
    path = tmp_path / "taew2_2.pth"
    torch.save(sd, path)
    mean, std = [0.1] * 48, [0.5] * 48
    dec = LightDecoder.from_taehv_checkpoint(path, mean, std)
    assert dec.config.widths == (256, 128, 64, 64) and dec.config.patch_size == 2
    assert torch.equal(dec.decoder[1].weight, sd["decoder.1.weight"])
    assert torch.equal(dec.decoder[7].conv.weight, sd["decoder.7.conv.weight"][256:])  # last frame's channels
    assert torch.equal(dec.decoder[13].conv.weight, sd["decoder.13.conv.weight"])
    with torch.no_grad():
        out = dec(torch.randn(1, 48, 2, 1, 1))
    assert out.shape == (1, 3, 5, 16, 16)
    broken = {k: v for k, v in sd.items() if k != "decoder.10.conv.2.weight"}
    with pytest.raises(InputError, match="missing"):
        LightDecoder.from_taehv_checkpoint(broken, mean, std)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    dec = _decoder(4, latents_mean=[0.3] * 48)
    dec.save_pretrained(tmp_path / "lv")
    back = LightDecoder.from_pretrained(tmp_path / "lv")
    z = torch.randn(1, 48, 2, 2, 2)
    with torch.no_grad():
        assert torch.equal(dec(z), back(z))
    with pytest.raises(InputError):
        LightDecoder.from_pretrained(tmp_path / "nothing")


def test_preset_sizing_keeps_the_light_decoder_small() -> None:
    real = light_vae_config_for(load_preset("wan22-ti2v-5b").vae)
    assert real.widths == (256, 128, 64, 64) and real.latents_std[0] == pytest.approx(0.4765)
    light = LightDecoder(light_vae_config_for(load_preset("mini").vae))
    full = build_vae(load_preset("mini"), meta=True)
    assert sum(p.numel() for p in light.parameters()) * 5 < sum(p.numel() for p in full.decoder.parameters())


def test_pipeline_light_vae_option(tmp_path: Path) -> None:
    import numpy as np

    from soul.pipelines.soul_pipeline import SoulPipeline

    pipe = SoulPipeline.from_preset("tiny", seed=0)
    args = dict(image=np.full((64, 64, 3), 128, np.uint8), audio=np.zeros(16000, np.float32), prompt="p", num_frames=9, num_inference_steps=2, sampler="euler")
    full = pipe(**args, generator=torch.Generator().manual_seed(0))
    light = pipe(**args, generator=torch.Generator().manual_seed(0), vae="light")
    assert light.frames.shape == full.frames.shape and light.info["vae"] == "light"
    assert torch.equal(light.latents, full.latents)
    with torch.no_grad():
        want = ((pipe.light_vae(full.latents)[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()
    assert np.array_equal(light.frames, want)
    pipe.save_pretrained(tmp_path / "ckpt")
    loaded = SoulPipeline.from_pretrained(tmp_path / "ckpt", torch_dtype=torch.float32)
    assert loaded.light_vae is not None
    assert all(torch.equal(a, b) for a, b in zip(loaded.light_vae.state_dict().values(), pipe.light_vae.state_dict().values()))
    pipe.light_vae = None
    with pytest.raises(InputError, match="light"):
        pipe(**args, vae="light")
    assert type(pipe.streaming_decoder("full")).__name__ == "StreamingDecoder"


def test_distilled_light_decoder_approaches_the_full_decoder(tmp_path: Path) -> None:
    from soul.miniature.clips import draw_clip
    from soul.training.distill_vae import DistillVAEConfig, VAEDistiller

    cfg = DistillVAEConfig(preset="tiny", num_clips=4, eval_clips=2, max_steps=30, checkpoint_every=15, lr=2e-3, output=str(tmp_path / "run"))
    drawn = lambda seed: draw_clip(seed, cfg.seconds, cfg.fps, cfg.size).frames  # noqa: E731
    distiller = VAEDistiller(cfg, drawn)
    before = distiller.evaluate()["eval_psnr_vs_full"]
    history = distiller.train()
    after = history[-1]["eval_psnr_vs_full"]
    assert after > before + 3.0
    assert sum(h["loss"] for h in history[-5:]) < 0.5 * sum(h["loss"] for h in history[:5])
    saved = LightDecoder.from_pretrained(tmp_path / "run" / "light_vae")
    with torch.no_grad():
        assert torch.equal(saved(distiller.eval_latents), distiller.student.eval()(distiller.eval_latents))
    resumed = VAEDistiller(cfg.model_copy(update={"max_steps": 32}), drawn, resume=True)
    assert resumed.step == 30


def test_continuing_with_the_temporal_loss_starts_from_the_given_decoder_and_reports_flicker(tmp_path: Path) -> None:
    from soul.miniature.clips import draw_clip
    from soul.training.distill_vae import DistillVAEConfig, VAEDistiller

    base = dict(preset="tiny", num_clips=2, eval_clips=2, max_steps=2, checkpoint_every=15, lr=1e-3)
    drawn = lambda seed: draw_clip(seed, 1.25, 16, 64).frames  # noqa: E731
    first = VAEDistiller(DistillVAEConfig(**base, output=str(tmp_path / "a")), drawn)  # type: ignore[arg-type]
    first.train()
    cont = DistillVAEConfig(**base, output=str(tmp_path / "b"), init_light_vae=str(tmp_path / "a" / "light_vae"), temporal_weight=2.0)  # type: ignore[arg-type]
    second = VAEDistiller(cont, drawn)
    with torch.no_grad():  # starts from the first run's decoder, not from random weights
        assert torch.equal(second.student.eval()(second.eval_latents), first.student.eval()(first.eval_latents))
    report = second.evaluate()
    assert report["eval_flicker"] >= 0 and report["eval_flicker_full"] >= 0
    # the frame-difference term is in the loss: same batch, same weights, larger loss than without it
    torch.manual_seed(0)
    z, target = second.batch()
    pred = second.student.decode_unclamped(z)
    plain = torch.nn.functional.l1_loss(pred, target) + torch.nn.functional.mse_loss(pred, target)
    second.batch = lambda: (z, target)  # type: ignore[method-assign]
    assert second.train_step()["loss"] > float(plain.detach()) + 1e-6


def test_sampled_latents_join_the_pool_as_aligned_windows_and_the_low_frequency_loss_sees_brightness(tmp_path: Path) -> None:
    """Windows cut from sampled sequences get the full decoder's frames of the same latents; a
    brightness offset that alternates from frame to frame is what the low-frequency term charges."""
    from soul.miniature.clips import draw_clip
    from soul.training.distill_vae import DistillVAEConfig, VAEDistiller

    calls: list[int] = []

    def sampled(seed: int) -> torch.Tensor:
        calls.append(seed)
        return torch.randn(1, 48, 5, 4, 4, generator=torch.Generator().manual_seed(seed))

    cfg = DistillVAEConfig(preset="tiny", num_clips=2, eval_clips=1, num_frames=9, sampled_frames=17, sampled_clips=3, sampled_eval_clips=2,
                           sampled_fraction=0.5, lowfreq_weight=1.0, batch_size=4, max_steps=2, checkpoint_every=10, output=str(tmp_path / "run"))
    drawn = lambda seed: draw_clip(seed, cfg.seconds, cfg.fps, cfg.size).frames  # noqa: E731
    distiller = VAEDistiller(cfg, drawn, sampled=sampled)
    assert calls == [2_000, 2_001, 2_002, 7_000, 7_001]  # training and held-out seeds apart from the clip pools
    assert distiller.sampled is not None and distiller.sampled[1].shape[2] == 17
    # windows: 3 latents = 9 frames; latent 0 -> frame 0, latent k >= 1 -> frames 4k-3 .. 4k, a window
    # from latent s >= 1 starts at the last of latent s's frames
    index_frames = torch.arange(17.0).view(1, 1, 17, 1, 1).expand(3, 3, 17, 2, 2)
    latents = torch.arange(5.0).view(1, 1, 5, 1, 1).expand(3, 48, 5, 4, 4)
    starts: set[int] = set()
    for _ in range(40):
        z, frames = distiller._window(latents, index_frames, 1)
        s = int(z[0, 0, 0, 0, 0])
        starts.add(s)
        assert z.shape[2] == 3 and frames.shape[2] == 9
        assert int(frames[0, 0, 0, 0, 0]) == (0 if s == 0 else 4 * s) and int(frames[0, 0, -1, 0, 0]) == 4 * (s + 2)
    assert starts == {0, 1, 2}
    z, target = distiller.batch()
    assert z.shape[0] == 4 and z.shape[2] == 3 and target.shape[2] == 9
    steady = torch.zeros(1, 3, 9, 16, 16)
    alternating = steady + 0.02 * (torch.arange(9) % 2).view(1, 1, 9, 1, 1)
    assert float(distiller._lowfreq(steady, steady)) == 0.0
    assert float(distiller._lowfreq(alternating, steady)) > 0.02  # offset and its frame-to-frame change
    report = distiller.evaluate()
    assert {"eval_sampled_psnr_vs_full", "eval_sampled_flicker", "eval_sampled_flicker_full"} <= set(report)
    with pytest.raises(ValueError, match="LatentSource"):
        VAEDistiller(cfg, drawn)


def test_one_psnr_for_the_light_decoder_and_the_miniature_vae() -> None:
    import math

    import torch.nn.functional as F

    from soul.miniature import vae_trainer
    from soul.training import distill_vae
    from soul.training.metrics import psnr

    assert vae_trainer.psnr is psnr and distill_vae.psnr is psnr
    g = torch.Generator().manual_seed(0)
    a = torch.rand(1, 3, 5, 16, 16, generator=g) * 2 - 1
    b = (a + 0.1 * torch.randn(a.shape, generator=g)).clamp(-1, 1)
    # the miniature trainer's formula (inputs in range) and the distiller's (clamped), unchanged
    assert psnr(a, b) == 10 * math.log10(4.0 / max(float(((a - b) ** 2).mean()), 1e-12))
    wide = b * 1.5
    assert psnr(a, wide) == 10 * math.log10(4.0 / max(float(F.mse_loss(a.clamp(-1, 1), wide.clamp(-1, 1))), 1e-12))
    assert psnr(a, a) == pytest.approx(10 * math.log10(4e12))
