"""`soul distill vae`: train the light decoder to reproduce the full Wan decoder's frames.

The light decoder (``soul.models.light_vae``) replaces the full decoder only at decode time, so
what it must match is the full decoder's output on the latents the pipeline produces, not the
original pixels: targets are ``decode_latents(full_vae, z)`` for the same ``z``. Latents come from
encoding clips given by a ``ClipSource`` (``soul distill vae`` passes the miniature world's drawn
talking clips) with the preset's (or checkpoint's) VAE; the pool is encoded and decoded once up front because the full VAE is frozen.
With ``sampled_from``, latents the sampler itself made (a ``LatentSource``: the fast student
generating drawn faces from training seeds) join the pool: a decoder trained only on encoder
latents met sampled ones off its training distribution and pumped their brightness (flicker
0.54 against the full decoder's 0.29 on the same 2-step latents, benchmarks/speed.py --quality).
Windows of ``num_frames`` are cut from those longer sequences at random latent offsets.
A small Gaussian perturbation of the latents (``latent_noise``) can be enabled so the decoder also
sees latents off the encoder's manifold, as sampled latents are; the full decoder is then re-run
on the perturbed latents for the targets.

Checkpoints and metrics use the trainer's ``CheckpointManager`` / ``MetricsLogger``; the result is
written with ``LightDecoder.save_pretrained`` to ``OUTPUT/light_vae`` and, when a checkpoint
directory is given as ``init_checkpoint``, can be copied to ``CHECKPOINT/soul/light_vae`` where
``SoulPipeline.from_pretrained`` looks for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

from soul.models.light_vae import LightDecoder, light_vae_config_for
from soul.training.checkpointing import CheckpointManager, rng_state, set_rng_state
from soul.training.loop import LoopPlan, run_steps
from soul.training.metrics import psnr

LIGHT_VAE_OUTPUT = "light_vae"

ClipSource = Callable[[int], np.ndarray]
"""Frames ``[T, H, W, 3]`` uint8 of the clip with a given seed (at the config's size and fps)."""

LatentSource = Callable[[int], torch.Tensor]
"""Normalised latents ``[1, C, F, h, w]`` a pipeline sampled for a given seed (``sampled_frames`` frames)."""


class DistillVAEConfig(BaseModel):
    """One light-decoder distillation run (configs/distill/*vae*.yaml)."""

    model_config = ConfigDict(extra="forbid")

    preset: str = "tiny"
    init_checkpoint: str | None = None  # a Soul checkpoint whose vae/ is the teacher; None = preset's VAE (random for tiny)
    widths: tuple[int, int, int, int] | None = None  # light decoder stage widths; None = scaled like the full decoder
    num_clips: int = Field(16, gt=0)
    eval_clips: int = Field(4, ge=0)
    seconds: float = Field(1.25, gt=0)
    fps: float = Field(16.0, gt=0)
    num_frames: int = Field(17, gt=0)
    size: int = Field(64, gt=0)
    latent_noise: float = Field(0.0, ge=0)
    # Weight of the frame-difference loss: the light decoder's frame-to-frame changes must be the
    # full decoder's. Why: per-frame L1 + MSE at 31.6 dB still left the light decoder's overall
    # brightness pumping from frame to frame (flicker +24 % over the base, measured by
    # benchmarks/speed.py --quality), which is what kept the fast path from equal quality.
    temporal_weight: float = Field(0.0, ge=0)
    # Weight of the low-frequency loss: per-frame averages over cells of `lowfreq_cell` px and their
    # frame-to-frame changes must be the full decoder's. Why: the pixel losses barely see a uniform
    # brightness offset of a fraction of a level, yet that offset changing between frames is flicker.
    lowfreq_weight: float = Field(0.0, ge=0)
    lowfreq_cell: int = Field(8, gt=0)
    # Latents the sampler made (see the module docstring): a Soul pipeline directory whose preset
    # sampling generates them (e.g. a `soul distill steps` export), how many sequences, how long.
    sampled_from: str | None = None
    sampled_preset: str | None = None  # the preset to sample with (default: `preset`), e.g. mini-fast
    sampled_clips: int = Field(0, ge=0)
    sampled_eval_clips: int = Field(0, ge=0)
    sampled_frames: int = Field(81, gt=0)
    sampled_fraction: float = Field(0.5, ge=0, le=1)  # share of each batch cut from sampled latents
    init_light_vae: str | None = None  # a trained light decoder directory to continue from (same widths)
    final_memory_blocks: int | None = Field(None, ge=0)  # memory blocks after the last time-grow (None: the init's, else 0)
    batch_size: int = Field(2, gt=0)
    lr: float = Field(1e-3, gt=0)
    max_steps: int = Field(200, gt=0)
    checkpoint_every: int = Field(100, gt=0)
    keep_last: int = Field(2, gt=0)
    log_every: int = Field(1, gt=0)
    seed: int = 0
    output: str = "runs/distill-vae"

    @model_validator(mode="after")
    def _shapes(self) -> DistillVAEConfig:
        if (self.num_frames - 1) % 4:
            raise ValueError("num_frames must be 4k+1 (the VAE is causal, 4x in time)")
        if self.size % 16:
            raise ValueError("size must be a multiple of 16")
        if self.seconds * self.fps < self.num_frames:
            raise ValueError(f"seconds * fps must give at least num_frames={self.num_frames} frames")
        if (self.sampled_frames - 1) % 4 or self.sampled_frames < self.num_frames:
            raise ValueError(f"sampled_frames must be 4k+1 and at least num_frames={self.num_frames}")
        if self.sampled_from and not self.sampled_clips:
            raise ValueError("sampled_from needs sampled_clips > 0")
        return self


class VAEDistiller:
    """Builds teacher (full VAE), student (light decoder) and the latent pool; ``train()`` runs."""

    def __init__(self, cfg: DistillVAEConfig, clips: ClipSource, resume: bool = False, sampled: LatentSource | None = None) -> None:
        from soul.models.vae import decode_latents, encode_frames
        from soul.pipelines.soul_pipeline import SoulPipeline

        self.cfg = cfg
        self.output = Path(cfg.output)
        torch.manual_seed(cfg.seed)
        if cfg.init_checkpoint:
            from soul.config import load_preset
            from soul.models.vae import load_vae

            self.vae = load_vae(cfg.init_checkpoint)
            self.config = load_preset(cfg.preset)
        else:
            pipe = SoulPipeline.from_preset(cfg.preset, seed=cfg.seed)
            self.vae, self.config = pipe.vae, pipe.config
        for p in self.vae.parameters():
            p.requires_grad_(False)
        self._decode = decode_latents
        if cfg.init_light_vae:
            self.student = LightDecoder.from_pretrained(cfg.init_light_vae)
            if cfg.final_memory_blocks is not None and cfg.final_memory_blocks != self.student.config.final_memory_blocks:
                self.student = self.student.with_final_memory_blocks(cfg.final_memory_blocks)
        else:
            light = light_vae_config_for(self.vae.config, widths=cfg.widths)
            light.final_memory_blocks = cfg.final_memory_blocks or 0
            self.student = LightDecoder(light)
        self.student.train()
        self.optimizer = torch.optim.AdamW(self.student.parameters(), lr=cfg.lr, weight_decay=0.0)

        def pool(seed0: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
            zs, targets = [], []
            with torch.no_grad():
                for k in range(count):
                    video = torch.from_numpy(clips(seed0 + k)[: cfg.num_frames]).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
                    z = encode_frames(self.vae, video)
                    zs.append(z)
                    targets.append(decode_latents(self.vae, z))
            return torch.cat(zs), torch.cat(targets)

        def sampled_pool(seed0: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
            assert sampled is not None
            zs, targets = [], []
            with torch.no_grad():
                for k in range(count):
                    z = sampled(seed0 + k).float()
                    zs.append(z)
                    targets.append(decode_latents(self.vae, z))
            return torch.cat(zs), torch.cat(targets)

        self.latents, self.targets = pool(cfg.seed * 10_000, cfg.num_clips)
        self.eval_latents, self.eval_targets = pool(cfg.seed * 10_000 + 5_000, cfg.eval_clips) if cfg.eval_clips else (None, None)
        self.sampled: tuple[torch.Tensor, torch.Tensor] | None = None
        self.sampled_eval: tuple[torch.Tensor, torch.Tensor] | None = None
        if cfg.sampled_clips:
            if sampled is None:
                raise ValueError("sampled_clips > 0 needs a LatentSource (soul distill vae builds one from sampled_from)")
            # seeds apart from the clip pools above (seed * 10_000 + 0.. / + 5_000..)
            self.sampled = sampled_pool(cfg.seed * 10_000 + 2_000, cfg.sampled_clips)
            if cfg.sampled_eval_clips:
                self.sampled_eval = sampled_pool(cfg.seed * 10_000 + 7_000, cfg.sampled_eval_clips)
        self.rng = np.random.default_rng(cfg.seed)
        self.checkpoints = CheckpointManager(self.output / "checkpoints", keep_last=cfg.keep_last)
        self.step = 0
        if resume and self.checkpoints.latest() is not None:
            weights, state, _ = self.checkpoints.load(self.checkpoints.latest())  # type: ignore[arg-type]
            self.student.load_state_dict(weights)
            self.optimizer.load_state_dict(state["optimizer"])
            self.rng.bit_generator.state = state["numpy_rng"]
            set_rng_state(state["rng"])
            self.step = int(state["step"])

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A random batch of (latents, full-decoder frames): clip latents (perturbed when
        ``latent_noise`` > 0) and, with a sampled pool, windows of sampled latents."""
        n_sampled = int(round(self.cfg.batch_size * self.cfg.sampled_fraction)) if self.sampled is not None else 0
        n_clips = self.cfg.batch_size - n_sampled
        zs, targets = [], []
        if n_clips:
            idx = torch.from_numpy(self.rng.integers(0, self.latents.shape[0], n_clips))
            z, target = self.latents[idx], self.targets[idx]
            if self.cfg.latent_noise > 0:
                z = z + self.cfg.latent_noise * torch.randn_like(z)
                with torch.no_grad():
                    target = self._decode(self.vae, z)
            zs.append(z)
            targets.append(target)
        for _ in range(n_sampled):
            assert self.sampled is not None
            z, target = self._window(*self.sampled, int(self.rng.integers(0, self.sampled[0].shape[0])))
            zs.append(z)
            targets.append(target)
        return torch.cat(zs), torch.cat(targets)

    def _window(self, latents: torch.Tensor, frames: torch.Tensor, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``num_frames`` worth of latents from sequence ``index`` at a random latent offset, with
        the full decoder's frames for them. Latent 0 decodes to one frame and latent ``k >= 1`` to
        frames ``1 + 4 (k - 1) .. 4 k``; a window starting at ``s >= 1`` is decoded fresh (its first
        latent gives one frame), so it is matched to the last of latent ``s``'s four frames onward."""
        length = (self.cfg.num_frames - 1) // 4 + 1
        start = int(self.rng.integers(0, latents.shape[2] - length + 1))
        z = latents[index : index + 1, :, start : start + length]
        first = 0 if start == 0 else 4 * start
        return z, frames[index : index + 1, :, first : first + self.cfg.num_frames]

    def _lowfreq(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """L1 of cell averages and of their frame-to-frame changes (see ``lowfreq_weight``)."""
        cell = min(self.cfg.lowfreq_cell, pred.shape[-1], pred.shape[-2])
        pool = lambda v: F.avg_pool3d(v, kernel_size=(1, cell, cell))  # noqa: E731
        p, t = pool(pred), pool(target)
        loss = (p - t).abs().mean()
        if p.shape[2] > 1:
            loss = loss + ((p[:, :, 1:] - p[:, :, :-1]) - (t[:, :, 1:] - t[:, :, :-1])).abs().mean()
        return loss

    def train_step(self) -> dict[str, float]:
        """One AdamW step on L1 + MSE between light and full frames (+ their frame differences)."""
        start = time.perf_counter()
        z, target = self.batch()
        pred = self.student.decode_unclamped(z)
        loss = F.l1_loss(pred, target) + F.mse_loss(pred, target)
        if self.cfg.temporal_weight > 0 and pred.shape[2] > 1:
            d_err = (pred[:, :, 1:] - pred[:, :, :-1]) - (target[:, :, 1:] - target[:, :, :-1])
            loss = loss + self.cfg.temporal_weight * (d_err.abs().mean() + d_err.pow(2).mean())
        if self.cfg.lowfreq_weight > 0:
            loss = loss + self.cfg.lowfreq_weight * self._lowfreq(pred, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad = float(torch.nn.utils.clip_grad_norm_(self.student.parameters(), 1.0))
        self.optimizer.step()
        self.step += 1
        return {"loss": float(loss.detach()), "grad_norm": grad, "seconds": time.perf_counter() - start}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """PSNR (dB) of the light decoder against the full decoder on held-out clips' latents."""
        out: dict[str, float] = {}
        for prefix, pair in (("eval", (self.eval_latents, self.eval_targets)), ("eval_sampled", self.sampled_eval or (None, None))):
            latents, targets = pair
            if latents is None or targets is None:
                continue
            self.student.eval()
            pred = self.student(latents)
            self.student.train()
            luma_steps = lambda v: (v.mean(dim=(1, 3, 4))[:, 1:] - v.mean(dim=(1, 3, 4))[:, :-1]).abs()  # noqa: E731  [B, T-1]
            out |= {
                f"{prefix}_psnr_vs_full": psnr(pred, targets),
                f"{prefix}_mae_vs_full": float((pred - targets).abs().mean()),
                # flicker as benchmarks/speed.py measures it (mean |change of mean brightness| between
                # frames), on the [-1, 1] scale, beside the full decoder's own on the same latents
                f"{prefix}_flicker": float(luma_steps(pred).mean()),
                f"{prefix}_flicker_full": float(luma_steps(targets).mean()),
            }
        return out

    def save_checkpoint(self) -> Path:
        state = {"optimizer": self.optimizer.state_dict(), "rng": rng_state(), "numpy_rng": self.rng.bit_generator.state, "step": self.step}
        return self.checkpoints.save(self.step, self.student.state_dict(), state, {"kind": "light_vae", "preset": self.cfg.preset})

    def train(self, max_steps: int | None = None, progress: Any = None) -> list[dict[str, float]]:
        """Run to ``max_steps``; log, checkpoint, evaluate at the end and export the decoder."""
        target = max_steps or self.cfg.max_steps
        plan = LoopPlan(target=target, log_every=self.cfg.log_every, checkpoint_every=self.cfg.checkpoint_every, metrics_dir=self.output)
        history = run_steps(self, plan, progress, final_metrics=self.evaluate)
        self.student.eval().save_pretrained(self.output / LIGHT_VAE_OUTPUT)
        return history
