"""Train a small `AutoencoderKLWan` on drawn talking clips: the miniature world's VAE.

Why this exists: a randomly initialised Wan VAE is not invertible, so the miniature world cannot
borrow it the way the 5B model borrows the official one. The mini VAE keeps the exact Wan2.2
layout (z_dim 48, patch 2, 16x spatial and 4x causal temporal compression) at a small width and
learns it here on drawn frames, so the transformer above it works in the same kind of latent space
as the real model: 4x16x16 compression, per-channel standardised latents.

Loss: L1 + MSE on pixels (the mouth box weighted up, because lip sync lives there and the mouth
is a few percent of the frame) + a small KL term. By default the decoder reads the posterior
mean, as generation does (`encode_frames` uses the mode): at the start the posterior's unit noise
swamps the small latent means, and a sampled-latent run here stayed at a trivial 13-16 dB for 400
steps; the KL term then acts as a light L2 on the latents. After training, per-channel `latents_mean`/`latents_std` of the posterior mean over
drawn frames are written into the VAE config, exactly where the official checkpoint keeps them,
so `soul.models.vae.encode_frames` standardises mini latents like 5B ones.

Clips are drawn on the fly into a fixed pool (faces by seed), windows are cut at random; held-out
clips come from a disjoint seed range, so PSNR is measured on people the VAE never saw.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLWan

from soul.miniature.clips import DrawnClip, draw_clip
from soul.miniature.group import draw_group_clip
from soul.miniature.portrait import HELD_OUT_SEED
from soul.miniature.speech_pool import SpeechPool
from soul.training.metrics import psnr  # the one PSNR (re-exported: benchmarks import it from here)


# The mini VAE's widths per spatial factor; the entries after the first are its downsampling stages.
MINI_DIM_MULT: dict[int, list[int]] = {16: [1, 2, 4, 4], 8: [1, 2, 2], 4: [1, 2, 2]}


@dataclass
class VAETrainConfig:
    """One VAE run. Sizes default to the `mini` preset's VAE."""

    base_dim: int = 16
    decoder_base_dim: int = 24
    dim_mult: list[int] = field(default_factory=lambda: [1, 2, 4, 4])
    # 16: Wan2.2's spatial factor (3 downsampling stages, the first spatial only, + patch 2): 4x4
    # latents for 64x64 frames. 8: 2 stages, both also temporal (`dim_mult` [1, 2, 2]): 8x8 latents,
    # whose mouths keep the drawn lip sync (docs/miniature.md, "Voices it never heard"). 4: the same
    # two stages without the patchify (16x16 latents): four times the cells for the eyes, at four
    # times the cost of a training step here (docs/miniature.md, "A 4x latent grid": not yet at
    # the 8x model's quality).
    spatial_factor: int = 16
    num_res_blocks: int = 1
    size: int = 64
    fps: float = 16.0
    window: int = 5  # frames per training window: 4k+1 (1 + one full latent frame)
    pool_clips: int = 256
    clip_seconds: float = 2.0
    batch_size: int = 4
    lr: float = 3e-4  # at 1e-3 the encoder's gradient fell 1000x within 20 steps and its output
    min_lr: float = 3e-5  # stopped depending on the input (measured); 2e-4..3e-4 keeps it alive
    kl_weight: float = 1e-6
    decode_from: str = "mean"  # "mean": deterministic AE + KL as a latent regulariser; "sample": classic VAE
    mouth_weight: float = 4.0
    # Weight of the frame-difference loss. Why: the Wan2.2 decoder's residual path duplicates a
    # latent frame over its 4 video frames, so a pixel loss alone settles on the temporal average
    # (every mouth in a latent frame drawn alike, measured: lip-sync ceiling r 0.37); matching the
    # frame-to-frame differences makes that average cost what it really loses.
    temporal_weight: float = 0.0
    max_steps: int = 4000
    max_minutes: float = 1e9
    eval_every: int = 250
    eval_clips: int = 8
    eval_frames: int = 17  # 1 measures the image path only (image pre-training)
    seed: int = 0
    init: str | None = None  # a trained VAE directory to continue from (e.g. image pre-training)
    inflate: bool = False  # `init` is image-trained: start video training from `inflate_image_vae`
    # "close-up": every face fills the frame (the one-person world); "mixed": groups of 1-3 people
    # side by side, faces at the group world's sizes in their 64 px slots (`soul.miniature.group`),
    # so people further back keep their mouths and neighbours' colours do not bleed (measured: the
    # close-up VAE reconstructs a 48 px face in a group at 16 dB and erased one person's mouth).
    framing: str = "close-up"
    # "all", or "decoder": the encoder (and so the latent space the transformer was trained in)
    # stays as it is, only the decoder learns to draw what the latents already hold.
    trainable: str = "all"
    # A media folder like ../shared/media: a `speech_fraction` of the pool's clips speak its training
    # recordings (and `speech_voices` espeak-ng voices) instead of babble. Why: babble's mouths move
    # slower than real speech (15 % of the opening's power above 3 Hz against 20-35 %), and the
    # fastest held-out voices lost the most in the VAE's round trip (docs/miniature.md).
    speech_media: str | None = None
    speech_voices: int = 0
    speech_fraction: float = 0.5
    # Residual blocks added to every stage of `init` before training (`deepen_vae`): more decoder
    # capacity for a decoder-only run, without moving the latent space.
    deepen: int = 0

    def __post_init__(self) -> None:
        stages = {factor: len(mult) - 1 for factor, mult in MINI_DIM_MULT.items()}
        if self.spatial_factor not in stages or len(self.dim_mult) - 1 != stages[self.spatial_factor]:
            raise ValueError(f"spatial_factor {self.spatial_factor} with dim_mult {self.dim_mult}: use 16 with 4 entries, or 8 or 4 with 3")

    def vae_kwargs(self) -> dict:
        """Constructor kwargs of `AutoencoderKLWan` in the Wan2.2 layout at this width (at 4x without
        Wan2.2's patchify, the 2x2 pixel shuffle that its 16x spends on the first factor of 2)."""
        patch = None if self.spatial_factor == 4 else 2
        channels = 3 * (patch or 1) ** 2
        return {
            "base_dim": self.base_dim,
            "decoder_base_dim": self.decoder_base_dim,
            "z_dim": 48,
            "dim_mult": list(self.dim_mult),
            "num_res_blocks": self.num_res_blocks,
            "attn_scales": [],
            "temperal_downsample": [False, True, True] if self.spatial_factor == 16 else [True, True],
            "is_residual": True,
            "in_channels": channels,
            "out_channels": channels,
            "patch_size": patch,
            "scale_factor_temporal": 4,
            "scale_factor_spatial": self.spatial_factor,
            "latents_mean": [0.0] * 48,
            "latents_std": [1.0] * 48,
        }


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 frames [T, H, W, 3] -> [3, T, H, W] in [-1, 1], the VAE's input range."""
    return torch.from_numpy(frames).float().div(127.5).sub(1.0).permute(3, 0, 1, 2)


def mouth_mask(clip: DrawnClip, size: int) -> torch.Tensor:
    """[H, W] 1 inside the clip's rest-pose mouth box grown by 2 px (covers the sway), else 0."""
    return boxes_mask([clip.mouth_box], size, size)


def boxes_mask(boxes: list[tuple[float, float, float, float]], height: int, width: int) -> torch.Tensor:
    """[H, W] 1 inside any of the normalised boxes grown by 2 px, else 0."""
    m = torch.zeros(height, width)
    for x0, y0, x1, y1 in boxes:
        m[max(0, int(y0 * height) - 2) : min(height, math.ceil(y1 * height) + 2), max(0, int(x0 * width) - 2) : min(width, math.ceil(x1 * width) + 2)] = 1.0
    return m


FRAMINGS = ("close-up", "mixed", "both")
TRAINABLE = ("all", "decoder")
MIXED_PEOPLE = (1, 2, 3)  # group widths the mixed framing draws


@dataclass
class TrainingClip:
    """What the VAE trains and is measured on: frames ``[T, H, W, 3]`` and where the mouths are."""

    frames: np.ndarray
    mouth: torch.Tensor  # [H, W] 1 in the mouth boxes


def as_training_clip(clip: DrawnClip | TrainingClip) -> TrainingClip:
    if isinstance(clip, TrainingClip):
        return clip
    return TrainingClip(clip.frames, mouth_mask(clip, clip.frames.shape[1]))


def draw_training_clip(
    seed: int, seconds: float, fps: float, size: int, framing: str = "close-up", speech: SpeechPool | None = None,
) -> TrainingClip:
    """The close-up of the one-person world, or (``mixed``) a group of 1-3 people side by side,
    faces at the group world's sizes: neighbours' colours meet at the slot borders as they do when
    several people are generated in one frame; ``both``: even seeds close-up, odd seeds mixed (a
    decoder trained on groups alone lost 0.8 dB on close-ups). With ``speech`` the mouths follow
    pieces of it instead of babble."""
    if framing == "both":
        framing = "close-up" if seed % 2 == 0 else "mixed"  # odd seeds still cycle the group widths (seed % 3)
    if framing == "close-up":
        audio = speech.segment(seconds, np.random.default_rng([seed, 31])) if speech is not None else None
        return as_training_clip(draw_clip(seed, seconds, fps, size, audio=audio))
    if framing != "mixed":
        raise ValueError(f"framing must be one of {FRAMINGS}, got {framing!r}")
    group = draw_group_clip(seed, MIXED_PEOPLE[seed % len(MIXED_PEOPLE)], seconds, fps, size, speech=speech)
    return TrainingClip(group.frames, boxes_mask(group.mouth_boxes, *group.frames.shape[1:3]))


class DrawnPool:
    """A fixed pool of drawn clips; `batch(rng)` cuts random windows from random clips of one width.

    With ``speech``, a ``speech_fraction`` of the clips (chosen by seed) speak pieces of it."""

    def __init__(
        self, seeds: list[int], seconds: float, fps: float, size: int, framing: str = "close-up",
        speech: SpeechPool | None = None, speech_fraction: float = 0.0,
    ) -> None:
        talks = [speech is not None and np.random.default_rng([s, 37]).random() < speech_fraction for s in seeds]
        self.clips = [draw_training_clip(s, seconds, fps, size, framing, speech if t else None) for s, t in zip(seeds, talks)]
        self.by_width: dict[int, list[int]] = {}
        for i, clip in enumerate(self.clips):
            self.by_width.setdefault(clip.frames.shape[2], []).append(i)
        self.widths = sorted(self.by_width)

    def batch(self, rng: np.random.Generator, batch_size: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Video [B, 3, window, H, W] in [-1, 1] and mouth masks [B, 1, 1, H, W]."""
        members = self.by_width[self.widths[int(rng.integers(len(self.widths)))]]
        xs, ms = [], []
        for _ in range(batch_size):
            clip = self.clips[members[int(rng.integers(len(members)))]]
            start = int(rng.integers(0, clip.frames.shape[0] - window + 1))
            xs.append(to_tensor(clip.frames[start : start + window]))
            ms.append(clip.mouth)
        return torch.stack(xs), torch.stack(ms)[:, None, None]


def build_mini_vae(cfg: VAETrainConfig, seed: int = 0) -> AutoencoderKLWan:
    """A fresh VAE of the run's size, seeded."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderKLWan(**cfg.vae_kwargs())


def inflate_image_vae(vae: AutoencoderKLWan) -> AutoencoderKLWan:
    """Make an image-trained Wan VAE a sensible video VAE before video training (in place).

    Why: trained on single frames, every causal conv only ever saw zero padding in its past taps,
    so those taps (and the temporal resampling convs, never run for a first frame) keep their
    random init; on video they mix random features across time and the network retreats to one
    average frame (measured: lip-sync ceiling r 0.07). Zeroing the past taps makes every frame go
    through the trained image path; the encoder's temporal downsampling then averages each pair
    of frames and the decoder's upsampling duplicates, so reconstruction starts as the block
    average of per-frame reconstructions (measured r 0.4-0.63 before any video step) and video
    training only has to add the detail within a latent frame (the "inflation" used to start
    video models from image ones).
    """
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d, WanResample

    resamplers = [m for m in vae.modules() if isinstance(m, WanResample) and hasattr(m, "time_conv")]
    time_convs = {id(m.time_conv) for m in resamplers}
    with torch.no_grad():
        for m in resamplers:
            weight = m.time_conv.weight  # [out, in, 3, 1, 1]; tap 2 is the newest frame
            weight.zero_()
            m.time_conv.bias.zero_()
            eye = torch.eye(weight.shape[1])
            if m.mode == "upsample3d":  # out = [frame a | frame b]: both copy the input frame
                weight[: eye.shape[0], :, 2, 0, 0] = eye
                weight[eye.shape[0] :, :, 2, 0, 0] = eye
            else:  # downsample3d, stride 2 over [previous, f1, f2]: the mean of f1 and f2
                weight[:, :, 1, 0, 0] = 0.5 * eye
                weight[:, :, 2, 0, 0] = 0.5 * eye
        for m in vae.modules():
            if isinstance(m, WanCausalConv3d) and id(m) not in time_convs and m.kernel_size[0] > 1:
                m.weight[:, :, :-1] = 0.0
    return vae


def deepen_vae(vae: AutoencoderKLWan, extra_blocks: int) -> AutoencoderKLWan:
    """A copy of ``vae`` with ``extra_blocks`` more residual blocks in every encoder and decoder
    stage, computing exactly what ``vae`` computed.

    Why: the Wan2.2 layout has one ``num_res_blocks`` for encoder and decoder, and a decoder with
    more capacity must keep the encoder (a transformer was trained in its latent space) and load as
    a plain `AutoencoderKLWan`. Each new block is appended after a stage's last block with its
    second convolution zeroed, so it starts as the identity (its residual branch adds nothing);
    the encoder's new blocks stay the identity when only the decoder trains, and the decoder's
    learn from the first step (the zeroed convolution still receives a gradient).
    """
    if extra_blocks < 1:
        raise ValueError(f"extra_blocks must be at least 1, got {extra_blocks}")
    config = {k: v for k, v in vae.config.items() if not k.startswith("_")}
    config["num_res_blocks"] = vae.config.num_res_blocks + extra_blocks
    deeper = AutoencoderKLWan.from_config(config)
    missing, unexpected = deeper.load_state_dict(vae.state_dict(), strict=False)
    if unexpected:
        raise ValueError(f"deepen_vae: weights with no place in the deeper VAE: {unexpected[:3]}")
    new_blocks = {name.split(".conv2.")[0] for name in missing if ".conv2." in name}
    if {name.rsplit(".", 2)[0] for name in missing} != new_blocks:  # "<block>.<layer>.<weight>"
        raise ValueError(f"deepen_vae: missing weights outside the new blocks: {missing[:3]}")
    with torch.no_grad():
        for name in new_blocks:
            conv2 = deeper.get_submodule(f"{name}.conv2")
            conv2.weight.zero_()
            conv2.bias.zero_()
    return deeper


def decode_unclamped(vae: AutoencoderKLWan, z: torch.Tensor) -> torch.Tensor:
    """`vae.decode` without its final clamp to [-1, 1], for training.

    diffusers clamps the decoded video; a clamped pixel passes no gradient, so a decoder that
    overshoots early stops learning there (a lr 2e-3 run here sat at loss 0.5 for 300 steps).
    Same computation otherwise: post-quant conv, causal frame-by-frame decoding with the
    feature cache, unpatchify.
    """
    from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

    vae.clear_cache()
    x = vae.post_quant_conv(z)
    outs = []
    for i in range(x.shape[2]):
        vae._conv_idx = [0]
        outs.append(vae.decoder(x[:, :, i : i + 1], feat_cache=vae._feat_map, feat_idx=vae._conv_idx, first_chunk=i == 0))
    out = torch.cat(outs, dim=2)
    vae.clear_cache()
    if vae.config.patch_size is not None:
        out = unpatchify(out, patch_size=vae.config.patch_size)
    return out


def reconstruct(vae: AutoencoderKLWan, video: torch.Tensor) -> torch.Tensor:
    """Encode (posterior mean) and decode [B, 3, T, H, W] in [-1, 1]: what generation would see."""
    with torch.no_grad():
        z = vae.encode(video).latent_dist.mode()
        return vae.decode(z).sample.clamp(-1, 1)


def evaluate(vae: AutoencoderKLWan, clips: Sequence[DrawnClip | TrainingClip], frames: int = 17) -> dict[str, float]:
    """PSNR over whole held-out windows and inside the mouth boxes (the part lip sync needs)."""
    vae.eval()
    full, mouth = [], []
    for clip in map(as_training_clip, clips):
        video = to_tensor(clip.frames[:frames])[None]
        rec = reconstruct(vae, video)
        full.append(psnr(rec, video))
        m = clip.mouth.bool()
        mouth.append(psnr(rec[..., m], video[..., m]))
    vae.train()
    return {"psnr": float(np.mean(full)), "psnr_mouth": float(np.mean(mouth))}


@torch.no_grad()
def latent_statistics(vae: AutoencoderKLWan, clips: Sequence[DrawnClip | TrainingClip], frames: int = 17) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the raw posterior mean over drawn windows.

    These are what `latents_mean`/`latents_std` mean in the official config: the transformer sees
    `(z - mean) / std`, so every channel arrives at unit scale whatever scale training left it at.
    """
    zs = []
    for clip in clips:
        z = vae.encode(to_tensor(clip.frames[:frames])[None]).latent_dist.mode()
        zs.append(z.permute(1, 0, 2, 3, 4).reshape(z.shape[1], -1))
    allz = torch.cat(zs, dim=1)
    std = allz.std(dim=1).clamp_min(1e-4)
    return [float(v) for v in allz.mean(dim=1)], [float(v) for v in std]


def save_vae(vae: AutoencoderKLWan, out: Path, stats_clips: Sequence[DrawnClip | TrainingClip] | None) -> None:
    """Write the VAE in diffusers layout with its latent statistics in the config (re-measured on
    ``stats_clips``; ``None`` keeps the recorded ones: an unchanged encoder keeps its latent space)."""
    if stats_clips is not None:
        mean, std = latent_statistics(vae, stats_clips)
        vae.register_to_config(latents_mean=mean, latents_std=std)
    vae.save_pretrained(out, safe_serialization=True)


def train_vae(cfg: VAETrainConfig, out: str | Path, log: bool = True) -> dict[str, float]:
    """Train to `max_steps` or `max_minutes`; writes `vae/` (best held-out PSNR) and `metrics.jsonl`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vae_train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    t0 = time.perf_counter()
    if cfg.trainable not in TRAINABLE:
        raise ValueError(f"trainable must be one of {TRAINABLE}, got {cfg.trainable!r}")
    speech = None
    if cfg.speech_media is not None:
        speech = SpeechPool.from_media(cfg.speech_media)
        if cfg.speech_voices:
            speech = speech.with_voices(cfg.speech_voices, cfg.seed)
    pool = DrawnPool(
        list(range(cfg.seed * 100_000, cfg.seed * 100_000 + cfg.pool_clips)), cfg.clip_seconds, cfg.fps, cfg.size, cfg.framing,
        speech=speech, speech_fraction=cfg.speech_fraction,
    )
    held = [draw_training_clip(HELD_OUT_SEED + i, 17 / cfg.fps, cfg.fps, cfg.size, cfg.framing) for i in range(cfg.eval_clips)]
    if log:
        print(f"drew {cfg.pool_clips} clips in {time.perf_counter() - t0:.0f}s", flush=True)
    vae = AutoencoderKLWan.from_pretrained(cfg.init) if cfg.init else build_mini_vae(cfg, cfg.seed)
    if cfg.inflate:
        inflate_image_vae(vae)
    if cfg.deepen:
        vae = deepen_vae(vae, cfg.deepen)
    vae.train()
    if cfg.trainable == "decoder":
        for module in (vae.encoder, vae.quant_conv):
            module.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in vae.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.0)
    rng = np.random.default_rng(cfg.seed)
    start = time.perf_counter()
    best = -1.0
    last: dict[str, float] = {}
    with open(out / "metrics.jsonl", "a") as metrics:
        for step in range(1, cfg.max_steps + 1):
            minutes = (time.perf_counter() - start) / 60
            progress = min(1.0, max(step / cfg.max_steps, minutes / cfg.max_minutes))
            lr = cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))
            for g in opt.param_groups:
                g["lr"] = lr
            x, m = pool.batch(rng, cfg.batch_size, cfg.window)
            with torch.set_grad_enabled(cfg.trainable == "all"):
                dist = vae.encode(x).latent_dist
            z = dist.mode() if cfg.decode_from == "mean" else dist.sample()
            y = decode_unclamped(vae, z)
            weight = 1.0 + (cfg.mouth_weight - 1.0) * m
            err = y - x
            rec = ((err.abs() + err**2) * weight).mean() / weight.mean()
            kl = dist.kl().mean()  # diffusers sums over all but the batch and last axis
            loss = rec + cfg.kl_weight * kl
            if cfg.temporal_weight > 0 and x.shape[2] > 1:
                d_err = err[:, :, 1:] - err[:, :, :-1]  # = (y_t - y_t-1) - (x_t - x_t-1)
                loss = loss + cfg.temporal_weight * ((d_err.abs() + d_err**2) * weight).mean() / weight.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for p in vae.parameters() if p.requires_grad], 1.0)
            opt.step()
            done = step == cfg.max_steps or minutes >= cfg.max_minutes
            if step % cfg.eval_every == 0 or done:
                last = {"step": step, "minutes": round(minutes, 2), "loss": float(loss.detach()), "kl": float(kl.detach()), "lr": lr, **evaluate(vae, held, cfg.eval_frames)}
                metrics.write(json.dumps(last) + "\n")
                metrics.flush()
                if log:
                    print(json.dumps(last), flush=True)
                if last["psnr"] > best:
                    best = last["psnr"]
                    save_vae(vae, out / "vae", held if cfg.trainable == "all" else None)
            if done:
                break
    return last
