"""The miniature model's parts: the mini preset builds the 5B classes, the VAE trainer learns and
records latent statistics, and packed weights load back into an identical pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLWan

from soul.config import load_preset
from soul.miniature.model import assemble, export_run, pack
from soul.models.shipped import has_shipped_weights
from soul.pipelines.shipped import load_shipped_pipeline
from soul.miniature.vae_trainer import VAETrainConfig, build_mini_vae, evaluate, inflate_image_vae, latent_statistics, train_vae
from soul.miniature.clips import draw_clip

torch.set_num_threads(1)


def test_mini_presets_keep_the_5b_layout_at_a_trainable_size() -> None:
    """`mini16` keeps Wan2.2's VAE layout exactly; `mini` differs in one thing, the spatial factor
    (8x: one downsampling stage fewer, both stages temporal, so time is still 4x)."""
    big = load_preset("wan22-ti2v-5b")
    for key in ("z_dim", "patch_size", "scale_factor_spatial", "scale_factor_temporal", "temperal_downsample", "in_channels"):
        assert getattr(load_preset("mini16").vae, key) == getattr(big.vae, key)
    mini = load_preset("mini")
    for key in ("z_dim", "patch_size", "scale_factor_temporal", "in_channels", "is_residual"):
        assert getattr(mini.vae, key) == getattr(big.vae, key)
    assert (mini.vae.scale_factor_spatial, mini.vae.temperal_downsample, len(mini.vae.dim_mult)) == (8, [True, True], 3)
    assert mini.transformer.patch_size == big.transformer.patch_size
    # a token must be wider than what it carries: a 2x2 patch of 48 channels
    assert mini.transformer.inner_dim > 48 * 2 * 2
    assert (mini.sampling.height, mini.sampling.width, mini.sampling.fps) == (64, 64, 16)


def _tiny_vae_cfg(**kw: object) -> VAETrainConfig:
    base = dict(base_dim=8, decoder_base_dim=8, dim_mult=[1, 1, 1, 1], pool_clips=4, clip_seconds=1.0, batch_size=2, eval_clips=2, eval_every=1000)
    base.update(kw)
    return VAETrainConfig(**base)  # type: ignore[arg-type]


def test_vae_trainer_improves_held_out_reconstruction_and_records_stats(tmp_path: Path) -> None:
    cfg = _tiny_vae_cfg(max_steps=40, lr=1e-3, min_lr=3e-4)
    held = [draw_clip(1_000_000 + i, 17 / 16, 16, 64) for i in range(2)]
    before = evaluate(build_mini_vae(cfg, cfg.seed), held)["psnr"]
    last = train_vae(cfg, tmp_path, log=False)
    assert last["step"] == 40
    assert last["psnr"] > before + 2.0  # learned something beyond its random start (measured +2.6 dB)
    vae = AutoencoderKLWan.from_pretrained(tmp_path / "vae")
    mean, std = np.array(vae.config.latents_mean), np.array(vae.config.latents_std)
    assert mean.shape == (48,) and np.all(std > 0) and not np.allclose(std, 1.0)
    # the recorded statistics standardise the latents they were measured on
    m2, s2 = latent_statistics(vae, held)
    np.testing.assert_allclose(m2, mean, rtol=1e-4, atol=1e-5)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 40


def test_decoder_only_training_on_groups_keeps_the_latent_space(tmp_path: Path) -> None:
    """`--trainable decoder --framing mixed`: a trained transformer stays valid because the encoder
    (and the recorded latent statistics) are untouched, while the decoder learns groups of people."""
    from soul.miniature.vae_trainer import DrawnPool

    pool = DrawnPool(list(range(6)), 1.0, 16, 64, framing="mixed")
    assert set(pool.widths) == {64, 128, 192}  # 1-3 people side by side
    x, m = pool.batch(np.random.default_rng(0), 3, 5)
    assert x.shape[0] == 3 and x.shape[-1] in (64, 128, 192) and m.shape[-1] == x.shape[-1]
    assert 0 < float(m.mean()) < 0.2  # every mouth box, a few percent of the frame
    cfg = _tiny_vae_cfg(max_steps=2, framing="mixed", pool_clips=6)
    start = build_mini_vae(cfg, cfg.seed)
    start.register_to_config(latents_mean=[0.5] * 48, latents_std=[3.0] * 48)
    start.save_pretrained(tmp_path / "start")
    train_vae(VAETrainConfig(**{**cfg.__dict__, "init": str(tmp_path / "start"), "trainable": "decoder"}), tmp_path / "run", log=False)
    after = AutoencoderKLWan.from_pretrained(tmp_path / "run" / "vae")
    before = start.state_dict()
    changed = {k.split(".")[0] for k, v in after.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and changed <= {"decoder", "post_quant_conv"}, changed
    assert after.config.latents_std == [3.0] * 48  # the encoder's statistics are kept, not re-measured


def test_a_deepened_vae_draws_what_it_drew_and_its_new_decoder_blocks_learn(tmp_path: Path) -> None:
    """`train-vae --deepen 1`: one more residual block per stage, starting as the identity, so the
    decoder gains capacity while encoder, latent statistics and every decoded frame stay as they were."""
    from soul.miniature.vae_trainer import deepen_vae

    cfg = _tiny_vae_cfg(spatial_factor=8, dim_mult=[1, 1, 1], max_steps=2)
    start = build_mini_vae(cfg, 1).eval()
    start.register_to_config(latents_mean=[0.5] * 48, latents_std=[3.0] * 48)
    deeper = deepen_vae(start, 1).eval()
    assert deeper.config.num_res_blocks == start.config.num_res_blocks + 1
    assert sum(p.numel() for p in deeper.decoder.parameters()) > sum(p.numel() for p in start.decoder.parameters())
    frames = torch.from_numpy(draw_clip(3, 9 / 16).frames).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
    with torch.no_grad():
        z = start.encode(frames).latent_dist.mode()
        assert torch.equal(deeper.encode(frames).latent_dist.mode(), z)
        assert torch.allclose(deeper.decode(z).sample, start.decode(z).sample, atol=1e-6)
        # the check can fail: a new block whose residual branch is not zeroed changes the picture
        deeper.decoder.up_blocks[0].resnets[-1].conv2.weight.normal_()
        assert not torch.allclose(deeper.decode(z).sample, start.decode(z).sample, atol=1e-3)
    start.save_pretrained(tmp_path / "start")
    train_vae(VAETrainConfig(**{**cfg.__dict__, "init": str(tmp_path / "start"), "trainable": "decoder", "deepen": 1}), tmp_path / "run", log=False)
    after = AutoencoderKLWan.from_pretrained(tmp_path / "run" / "vae")
    assert after.config.num_res_blocks == start.config.num_res_blocks + 1 and after.config.latents_std == [3.0] * 48
    new_conv = after.decoder.up_blocks[0].resnets[-1].conv2.weight
    assert float(new_conv.detach().abs().max()) > 0  # the zeroed convolution received a gradient


def test_the_both_framing_draws_close_ups_on_even_seeds_and_groups_on_odd_ones() -> None:
    """`--framing both` (the 8x mini's decoder): one decoder for close-ups and groups."""
    from soul.miniature.vae_trainer import DrawnPool, draw_training_clip

    seeds = list(range(8))
    pool = DrawnPool(seeds, 1.0, 16, 64, framing="both")
    assert set(pool.widths) == {64, 128, 192}
    for seed, clip in zip(seeds, pool.clips):
        want = draw_training_clip(seed, 1.0, 16, 64, "close-up" if seed % 2 == 0 else "mixed")
        assert np.array_equal(clip.frames, want.frames)
    with pytest.raises(ValueError, match="framing"):
        draw_training_clip(1, 1.0, 16, 64, "wide")


def test_a_pool_with_speech_draws_mouths_that_follow_it() -> None:
    """`train-vae --media`: a share of the pool's clips speak the pool's speech (faster mouths than
    babble), chosen by seed, the others stay the babble clips they were."""
    from soul.miniature.clips import draw_clip
    from soul.miniature.speech_pool import SpeechPool
    from soul.miniature.vae_trainer import DrawnPool

    fast = np.sin(2 * np.pi * 6.0 * np.arange(48_000) / 16_000) * np.sin(2 * np.pi * 700.0 * np.arange(48_000) / 16_000)
    speech = SpeechPool([fast.astype(np.float32)], ["six syllables a second"])
    seeds = list(range(8))
    babble, half, every = (DrawnPool(seeds, 1.0, 16, 64, speech=speech if f else None, speech_fraction=f) for f in (0.0, 0.5, 1.0))
    for k, seed in enumerate(seeds):
        assert np.array_equal(babble.clips[k].frames, draw_clip(seed, 1.0, 16, 64).frames)
        assert not np.array_equal(every.clips[k].frames, babble.clips[k].frames)
    spoken = [not np.array_equal(h.frames, b.frames) for h, b in zip(half.clips, babble.clips)]
    assert 0 < sum(spoken) < len(seeds)


@pytest.mark.parametrize(("factor", "patch", "cells"), [(8, 2, 8), (4, None, 16)])
def test_two_stage_vaes_give_their_latent_grid_and_inflate(factor: int, patch: int | None, cells: int) -> None:
    """--spatial-factor 8: two downsampling stages, both temporal too (4x in time as before), after
    Wan2.2's 2x2 patchify; --spatial-factor 4: the same stages without the patchify (3 channels in
    and out, four times the latent cells)."""
    cfg = _tiny_vae_cfg(spatial_factor=factor, dim_mult=[1, 1, 1])
    vae = build_mini_vae(cfg).eval()
    assert vae.config.patch_size == patch and vae.config.in_channels == vae.config.out_channels == 3 * (patch or 1) ** 2
    frames = torch.zeros(1, 3, 9, 64, 64)
    with torch.no_grad():
        inflate_image_vae(vae)
        z = vae.encode(frames).latent_dist.mode()
        assert z.shape == (1, 48, 3, cells, cells) and vae.decode(z).sample.shape == frames.shape
    with pytest.raises(ValueError, match=f"spatial_factor {factor}"):
        _tiny_vae_cfg(spatial_factor=factor)  # four dim_mult entries are three stages
    with pytest.raises(ValueError, match="spatial_factor 12"):
        _tiny_vae_cfg(spatial_factor=12)


def test_inflation_turns_an_image_vae_into_per_frame_encoding_and_duplicating_decoding() -> None:
    vae = build_mini_vae(_tiny_vae_cfg()).eval()
    frames = torch.from_numpy(draw_clip(3, 9 / 16).frames).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
    altered = frames.clone()
    altered[:, :, 1:5] = altered[:, :, 1:5].flip(2)  # the same frames in another order inside latent 1
    with torch.no_grad():
        z_random = vae.encode(frames).latent_dist.mode()
        z_altered_random = vae.encode(altered).latent_dist.mode()
        inflate_image_vae(vae)
        z = vae.encode(frames).latent_dist.mode()
        z_altered = vae.encode(altered).latent_dist.mode()
        decoded = vae.decode(z).sample
    # before: the order inside a latent frame leaks into it (random temporal taps); after: a latent
    # depends on its frames' set only (pairwise means), and the next latent frame not at all on it
    assert not torch.allclose(z_random[:, :, 1], z_altered_random[:, :, 1], atol=1e-4)
    assert torch.allclose(z[:, :, 2], z_altered[:, :, 2], atol=1e-5)
    assert torch.allclose(z[:, :, 0], z_altered[:, :, 0], atol=1e-6)
    # the decoder draws each latent frame's four video frames alike: the block average to refine
    for k in (1, 2):
        group = decoded[:, :, 4 * k - 3 : 4 * k + 1]
        assert torch.allclose(group, group[:, :, :1].expand_as(group), atol=1e-5)


def test_pack_and_load_round_trip(tmp_path: Path) -> None:
    cfg = _tiny_vae_cfg()
    mini = load_preset("mini")
    vae = AutoencoderKLWan(**mini.vae.kwargs())
    vae.register_to_config(latents_mean=[0.1] * 48, latents_std=[2.0] * 48)
    vae.save_pretrained(tmp_path / "vae")
    ckpt = assemble(tmp_path / "vae", tmp_path / "init")
    # a fake run: one checkpoint that changes one transformer weight
    from soul.pipelines.soul_pipeline import SoulPipeline
    from safetensors.torch import save_file

    pipe = SoulPipeline.from_pretrained(ckpt, torch_dtype=torch.float32)
    name, param = next(iter(pipe.transformer.named_parameters()))
    (tmp_path / "run/checkpoints/step-000000005").mkdir(parents=True)
    save_file({name: param.detach() + 1.0}, str(tmp_path / "run/checkpoints/step-000000005/trainable.safetensors"))
    exported = export_run(ckpt, tmp_path / "run", tmp_path / "export")
    weights = pack(exported, tmp_path / "weights", {"note": "test"})
    assert weights.stat().st_size < 30e6 and has_shipped_weights("mini", tmp_path / "weights")
    loaded = load_shipped_pipeline("mini", tmp_path / "weights")
    assert loaded.vae.config.latents_std[0] == 2.0
    assert loaded.light_vae is None  # assemble keeps no random light decoder, so none is shipped
    got = dict(loaded.transformer.named_parameters())[name]
    torch.testing.assert_close(got, (param.detach() + 1.0).half().float())
    info = json.loads((tmp_path / "weights/mini.json").read_text())
    assert info["note"] == "test" and info["preset"] == "mini"
    del cfg
