"""Guidance and step distillation of Soul's transformer (DESIGN 5), on the trainer's own path.

The distillers subclass ``soul.training.trainer.Trainer``: same data (``ClipWindowDataset``),
same conditioning (anchor frame from the clip, random motion prefix, per-token timesteps, audio
frame mask), same checkpointing, metrics, resume and export. Only the loss differs, and a frozen
copy of the starting transformer (the teacher) is kept next to the student (DMD adds a trainable one).

- **CFG distillation** (``CFGDistiller``): the student's single conditional pass is regressed onto
  the teacher's three-pass guided velocity (text + audio guidance at the teacher's scales) at the
  same noised latents and random t, MSE on the noisy frames. No guidance embedding: the student
  then runs with ``guidance=False``.
- **Step distillation** (``StepDistiller``): trajectory distillation for the 4-step x0-renoise
  sampler. At a step ``k`` of the distilled schedule (t = 1000, 750, 500, 250), the student's x0
  prediction ``x - sigma_k v`` is regressed onto the *teacher's* ODE solution from the same
  ``x_{sigma_k}`` to 0 (Euler, ``teacher_steps`` steps, guided as configured, run by the inference
  loop ``soul.sampling.loop.denoise_chunk`` itself). That is exactly what
  the x0-renoise sampler needs at each of its levels: a one-jump estimate of where the teacher's
  trajectory ends. The state ``x_{sigma_k}`` for ``k > 0`` is the data latent re-noised to
  ``sigma_k``, as the sampler re-noises its own x0 estimate.
- **DMD step distillation** (``DMDDistiller``): distribution matching (DMD2, Yin et al. 2024) for
  the same x0-renoise sampler. The student's x0 at a level is re-noised to a random t, and the
  difference between a *fake* score (a trainable copy of the starting transformer, fitted online
  by flow matching to the student's own outputs) and the *real* score (the frozen teacher, guided
  as configured) is the gradient that moves the student's outputs towards the teacher's
  distribution. It needs the fake-score network (its weights and optimiser in every checkpoint)
  and more passes per step; the trajectory loss is directly the quantity the sampler consumes.
  Both are built so they can be compared at equal training time; the comparison lives in
  docs/speed.md.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from soul.errors import InputError
from soul.sampling.guidance import Conditions, Guidance, guided_velocity
from soul.sampling.layout import audio_frame_mask, token_timesteps
from soul.sampling.loop import as_velocity_model, denoise_chunk
from soul.sampling.schedules import DISTILLED_TIMESTEPS, NUM_TRAIN_TIMESTEPS, add_noise, distilled_sigmas, predict_x0, to_timestep, velocity_target
from soul.training.checkpointing import STATE_FILE, CheckpointManager
from soul.training.config import TrainConfig, load_yaml_config
from soul.training.data import TrainSample
from soul.training.trainer import Trainer, sample_generator, sample_sigma


@dataclass(frozen=True)
class DistillSample:
    """One training sample as both distillers see it, drawn exactly as the flow-matching trainer draws it.

    ``gen`` is the sample's own generator (seeded by run seed and global sample index): the
    distillers keep drawing from it (noise level, noise), so a sample's loss stays independent of
    batch layout and resume point.
    """

    gen: torch.Generator
    x0: torch.Tensor  # [1, C, F, h, w] clean latents, frame 0 = the anchor
    prefix: int  # clean latent frames given to the model (anchor + motion)
    conds: Conditions  # prompt, null prompt, audio, and the audio frame mask for ``prefix``
    weight: torch.Tensor  # [1, 1, F, h, w] loss weight: 0 on the prefix, mouth weighted up
    shape: tuple[int, int, int]  # (F, h, w)
    channels: int

    def noised(self, noise: torch.Tensor, sigma: float) -> torch.Tensor:
        """``x0`` at noise level ``sigma`` with the clean prefix kept, as training and sampling see it."""
        x = add_noise(self.x0, noise, sigma)
        x[:, :, : self.prefix] = self.x0[:, :, : self.prefix]
        return x

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Weighted squared error per latent channel, the trainer's per-sample loss."""
        return ((pred - target) ** 2 * self.weight).sum() / (self.weight.sum() * self.channels)


class DistillCFGConfig(TrainConfig):
    """A CFG-distillation run: a training config plus the teacher's guidance scales."""

    trainable: Literal["audio", "all", "lora"] = "all"
    text_scale: float | None = None  # None = the preset's sampling.text_scale
    audio_scale: float | None = None  # None = the preset's sampling.audio_scale
    output: str = "runs/distill-cfg"


class DistillStepsConfig(TrainConfig):
    """A step-distillation run for the x0-renoise sampler at fixed timesteps."""

    trainable: Literal["audio", "all", "lora"] = "all"
    timesteps: list[float] = Field(default_factory=lambda: list(DISTILLED_TIMESTEPS))
    teacher_steps: int = Field(8, gt=0)  # Euler steps of the teacher's ODE from sigma_k to 0
    teacher_guidance: bool = True  # True: teacher = three-pass guided model; False: its conditional pass
    text_scale: float | None = None
    audio_scale: float | None = None
    output: str = "runs/distill-steps"

    @model_validator(mode="after")
    def _levels(self) -> DistillStepsConfig:
        ts = self.timesteps
        if not ts or any(not (0 < t <= NUM_TRAIN_TIMESTEPS) for t in ts) or any(b >= a for a, b in zip(ts, ts[1:])):
            raise ValueError("timesteps must be strictly decreasing values in (0, 1000]")
        return self


class DistillDMDConfig(DistillStepsConfig):
    """A DMD2 step-distillation run: the student's levels, the fake score's optimiser, the score noise range.

    ``teacher_steps`` is only used by the optional trajectory-regression term (``regression_weight > 0``);
    ``teacher_guidance`` switches the real score's guidance (the teacher's three passes) on or off.
    """

    fake_lr: float | None = Field(None, gt=0)  # the fake score's AdamW lr; None = optim.lr
    fake_updates: int = Field(1, ge=1)  # fake-score updates per training sample, before its generator loss
    regression_weight: float = Field(0.0, ge=0)  # + weight * trajectory-regression loss (0 = pure DMD)
    min_sigma: float = Field(0.02, gt=0, lt=1)  # noise levels t at which real and fake scores are compared
    max_sigma: float = Field(0.98, gt=0, le=1)
    output: str = "runs/distill-dmd"

    @model_validator(mode="after")
    def _score_range(self) -> DistillDMDConfig:
        if self.min_sigma >= self.max_sigma:
            raise ValueError("min_sigma must be below max_sigma")
        return self


def load_distill_config(path: str | Path, kind: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read ``configs/distill/*.yaml`` for ``kind`` "cfg", "steps" or "dmd"; relative data paths stay as written."""
    model = {"cfg": DistillCFGConfig, "steps": DistillStepsConfig, "dmd": DistillDMDConfig}[kind]
    return load_yaml_config(path, model, overrides, example="configs/distill/tiny-cfg.yaml")


class _Distiller(Trainer):
    """Trainer with a frozen teacher copy of the starting transformer."""

    def __init__(self, cfg: TrainConfig, output: str | Path | None = None, resume: bool = False) -> None:
        if cfg.distributed == "fsdp" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # The teacher is a deep copy of the transformer made after it is wrapped: not done for FSDP shards.
            raise InputError("distributed: fsdp", "is not supported by the distillers", "use distributed: ddp")
        # The teacher must be the *starting* weights: copy before any resume loads student weights.
        super().__init__(cfg, output=output, resume=False)
        self.teacher = copy.deepcopy(self.transformer).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        sampling = self.model_config.sampling
        text_scale = getattr(cfg, "text_scale", None)
        audio_scale = getattr(cfg, "audio_scale", None)
        self.guidance = Guidance(
            sampling.text_scale if text_scale is None else float(text_scale),
            sampling.audio_scale if audio_scale is None else float(audio_scale),
        )
        if resume:
            self._resume()

    def _teacher_velocity(self) -> Any:
        return as_velocity_model(self.teacher)

    def _prepare(self, sample: TrainSample, index: int) -> DistillSample:
        """Latents, prefix, conditions and RNG for one sample, as the flow-matching trainer draws them."""
        gen = sample_generator(self.cfg.seed, index)
        with torch.no_grad():
            x0 = self._latents(sample.frames).clone()
            x0[:, :, :1] = self._latents(sample.reference[None])
            text = self._text([sample.caption])
            audio = self._audio(sample.audio, sample.frames.shape[0])
        _, c, f, h, w = x0.shape
        max_prefix = self.cfg.conditioning.max_prefix_latents
        prefix = 1 + int(torch.randint(0, min(max_prefix, f - 2) + 1, (), generator=gen)) if f > 2 else 1
        extra = {"audio_frame_mask": audio_frame_mask(f, prefix, 1, self.device)}
        conds = Conditions(text=text, null_text=self.null_text, audio=audio, extra=extra)
        weight = self.loss_weight(sample, (f, h, w), prefix)  # the student's loss weights the mouth like training
        return DistillSample(gen=gen, x0=x0, prefix=prefix, conds=conds, weight=weight, shape=(f, h, w), channels=c)

    def _student(self, xt: torch.Tensor, timestep: torch.Tensor, conds: Conditions) -> torch.Tensor:
        return self._run(self.model, xt, timestep, conds)

    def _run(self, model: torch.nn.Module, xt: torch.Tensor, timestep: torch.Tensor, conds: Conditions) -> torch.Tensor:
        """One conditional pass of a trained network (the student, or DMD's fake score), float32 out."""
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if (self.cfg.mixed_precision == "bf16" and self.device.type == "cuda") else nullcontext()
        with autocast:
            return model(
                hidden_states=xt,
                timestep=timestep,
                encoder_hidden_states=conds.text,
                audio_features=conds.audio,
                audio_frame_mask=conds.extra["audio_frame_mask"],
                return_dict=False,
            )[0].float()

    def _timesteps(self, sigma: float, s: DistillSample) -> torch.Tensor:
        patch = tuple(int(x) for x in self.transformer.config.patch_size)
        return token_timesteps(to_timestep(sigma), s.shape, patch, s.prefix, 1, self.device)


class CFGDistiller(_Distiller):
    """One student pass regressed onto the teacher's three-pass guided velocity."""

    def sample_losses(self, samples: list[TrainSample], indices: list[int]) -> torch.Tensor:
        losses = []
        teacher = self._teacher_velocity()
        for sample, index in zip(samples, indices):
            s = self._prepare(sample, index)
            sigma = sample_sigma(s.gen, self.cfg.timestep_sampling, self.cfg.flow_shift)
            noise = torch.randn(s.x0.shape, generator=s.gen).to(self.device)
            xt = s.noised(noise, sigma)
            t = self._timesteps(sigma, s)
            with torch.no_grad():
                target = guided_velocity(teacher, xt, t, s.conds, self.guidance)
            losses.append(s.loss(self._student(xt, t, s.conds), target))
        return torch.stack(losses)


class StepDistiller(_Distiller):
    """The student's x0 at each distilled level regressed onto the teacher's ODE endpoint."""

    def __init__(self, cfg: TrainConfig, output: str | Path | None = None, resume: bool = False) -> None:
        super().__init__(cfg, output=output, resume=resume)
        self.sigmas = distilled_sigmas(getattr(cfg, "timesteps", DISTILLED_TIMESTEPS)).tolist()[:-1]
        self.teacher_guidance = Guidance(self.guidance.text_scale, self.guidance.audio_scale, enabled=bool(getattr(cfg, "teacher_guidance", True)))
        self.teacher_steps = int(getattr(cfg, "teacher_steps", 8))

    def teacher_levels(self, sigma: float) -> torch.Tensor:
        """The teacher's schedule from ``sigma`` to 0: ``teacher_steps`` evenly spaced Euler steps."""
        return torch.linspace(sigma, 0.0, self.teacher_steps + 1, dtype=torch.float64)

    @torch.no_grad()
    def teacher_solution(self, x: torch.Tensor, sigma: float, s: DistillSample) -> torch.Tensor:
        """The teacher's Euler ODE solution from ``x`` at ``sigma`` to 0 (prefix frames held clean).

        Runs the inference loop itself (``denoise_chunk``), so the target is exactly what sampling
        with the teacher at these levels would produce: same per-token timesteps, audio frame mask,
        guidance passes and prefix handling.
        """
        prefix = s.x0[:, :, : s.prefix]
        return denoise_chunk(self.teacher, x, prefix, s.conds, self.teacher_levels(sigma), guidance=self.teacher_guidance, sampler="euler")

    def level_state(self, s: DistillSample) -> tuple[float, torch.Tensor]:
        """One of the student's levels at random and the data noised to it, drawn from the sample's generator."""
        sigma = self.sigmas[int(torch.randint(0, len(self.sigmas), (), generator=s.gen))]
        noise = torch.randn(s.x0.shape, generator=s.gen).to(self.device)
        return sigma, s.noised(noise, sigma)

    def sample_losses(self, samples: list[TrainSample], indices: list[int]) -> torch.Tensor:
        losses = []
        for sample, index in zip(samples, indices):
            s = self._prepare(sample, index)
            sigma, x = self.level_state(s)
            target = self.teacher_solution(x, sigma, s)
            pred_x0 = predict_x0(x, self._student(x, self._timesteps(sigma, s), s.conds), sigma)
            losses.append(s.loss(pred_x0, target))
        return torch.stack(losses)


FAKE_SCORE_KEY = "fake_score"


class _FakeScoreCheckpoints(CheckpointManager):
    """The trainer's checkpoints, with the fake score's weights and optimiser added to the state
    file: written in the same atomic rename as the student's, so a checkpoint never has one without the other."""

    def __init__(self, base: CheckpointManager, fake_state: Callable[[], dict[str, Any]]) -> None:
        super().__init__(base.directory, keep_last=base.keep_last)
        self.fake_state = fake_state

    def save(self, step: int, weights: dict[str, torch.Tensor], state: dict[str, Any], meta: dict[str, Any]) -> Path:
        return super().save(step, weights, {**state, FAKE_SCORE_KEY: self.fake_state()}, meta)


class DMDDistiller(StepDistiller):
    """DMD2 for the x0-renoise student: real score (teacher) minus fake score (trained online) moves its x0.

    Per sample: the student predicts x0 from the data re-noised to one of its levels (as the
    trajectory student does); the fake score takes ``fake_updates`` flow-matching steps on that
    (detached) x0; then both scores denoise the x0 re-noised to a random ``t`` and their x0
    difference, normalised by DMD's ``mean |x0 - real_x0|``, is the student's gradient through
    ``loss = |x0 - stopgrad(x0 - grad)|^2`` (weighted like the trainer's loss). The fake score
    only updates when gradients are enabled, so an evaluation under ``torch.no_grad()`` leaves it alone.
    """

    def __init__(self, cfg: TrainConfig, output: str | Path | None = None, resume: bool = False) -> None:
        super().__init__(cfg, output=output, resume=False)
        # The fake score starts as the starting weights (copied before any resume loads student
        # weights) and trains the same parameters the student does.
        self.fake = copy.deepcopy(self.transformer).train()
        self.fake_model: torch.nn.Module = self._wrap(self.fake)
        self.fake_names = [n for n, p in self.fake.named_parameters() if p.requires_grad]
        self.fake_params = [p for p in self.fake.parameters() if p.requires_grad]
        fake_lr = getattr(cfg, "fake_lr", None)
        self.fake_optimizer = torch.optim.AdamW(self.fake_params, lr=cfg.optim.lr if fake_lr is None else float(fake_lr), betas=cfg.optim.betas, weight_decay=cfg.optim.weight_decay)
        self.fake_updates = int(getattr(cfg, "fake_updates", 1))
        self.regression_weight = float(getattr(cfg, "regression_weight", 0.0))
        self.score_sigmas = (float(getattr(cfg, "min_sigma", 0.02)), float(getattr(cfg, "max_sigma", 0.98)))
        self.fake_losses: list[float] = []
        self.checkpoints = _FakeScoreCheckpoints(self.checkpoints, self.fake_state)
        if resume:
            self._resume()

    # ------------------------------------------------------------------ checkpoints

    def fake_state(self) -> dict[str, Any]:
        """The fake score's trained weights (CPU copies) and its optimiser state."""
        weights = {n: p.detach().cpu().clone() for n, p in self.fake.named_parameters() if p.requires_grad}
        return {"weights": weights, "optimizer": copy.deepcopy(self.fake_optimizer.state_dict())}

    def _resume(self) -> None:
        super()._resume()
        latest = self.checkpoints.latest()
        if latest is None:
            return
        fake = torch.load(latest / STATE_FILE, weights_only=False).get(FAKE_SCORE_KEY)
        if fake is None:
            raise InputError(latest, "has no fake-score state", "resume only runs written by `soul distill dmd`, or use a new --output")
        missing = sorted(set(self.fake_names) - set(fake["weights"]))
        if missing:
            raise InputError(latest, f"fake-score state lacks {len(missing)} trained tensors (e.g. {missing[0]})", "resume with the config that wrote it")
        self.fake.load_state_dict(fake["weights"], strict=False)
        self.fake_optimizer.load_state_dict(fake["optimizer"])

    # ------------------------------------------------------------------ one step

    def _score_point(self, x0: torch.Tensor, s: DistillSample) -> tuple[float, torch.Tensor, torch.Tensor]:
        """A noise level ``t`` in ``[min_sigma, max_sigma]``, fresh noise and ``x0`` noised to ``t`` (prefix clean)."""
        lo, hi = self.score_sigmas
        t = lo + (hi - lo) * float(torch.rand((), generator=s.gen))
        noise = torch.randn(x0.shape, generator=s.gen).to(self.device)
        xt = add_noise(x0, noise, t)
        xt[:, :, : s.prefix] = x0[:, :, : s.prefix]
        return t, noise, xt

    def fake_update(self, x0: torch.Tensor, s: DistillSample) -> float:
        """One flow-matching step of the fake score on the student's (detached) x0; its own optimiser only."""
        t, noise, xt = self._score_point(x0, s)
        with torch.enable_grad():
            loss = s.loss(self._run(self.fake_model, xt, self._timesteps(t, s), s.conds), velocity_target(x0, noise))
        self.fake_optimizer.zero_grad(set_to_none=True)
        if torch.isfinite(loss):
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.fake_params, self.cfg.optim.grad_clip)
            self.fake_optimizer.step()
        self.fake_optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    @torch.no_grad()
    def dmd_gradient(self, x0: torch.Tensor, s: DistillSample) -> torch.Tensor:
        """DMD's gradient on ``x0``: (fake x0 - real x0) at a random ``t``, over DMD's normaliser; 0 on the prefix."""
        t, _, xt = self._score_point(x0, s)
        timestep = self._timesteps(t, s)
        real = predict_x0(xt, guided_velocity(self._teacher_velocity(), xt, timestep, s.conds, self.teacher_guidance), t)
        fake = predict_x0(xt, self._run(self.fake_model, xt, timestep, s.conds), t)
        p = s.prefix
        grad = (fake - real) / (x0 - real)[:, :, p:].abs().mean().clamp_min(1e-6)
        grad[:, :, :p] = 0.0
        return grad

    def sample_losses(self, samples: list[TrainSample], indices: list[int]) -> torch.Tensor:
        losses = []
        for sample, index in zip(samples, indices):
            s = self._prepare(sample, index)
            sigma, x = self.level_state(s)
            pred = predict_x0(x, self._student(x, self._timesteps(sigma, s), s.conds), sigma)
            x0_hat = torch.cat([s.x0[:, :, : s.prefix], pred[:, :, s.prefix :]], dim=2)
            if torch.is_grad_enabled():
                for _ in range(self.fake_updates):
                    self.fake_losses.append(self.fake_update(x0_hat.detach(), s))
            grad = self.dmd_gradient(x0_hat.detach(), s)
            loss = s.loss(x0_hat, (x0_hat - grad).detach())
            if self.regression_weight > 0:
                loss = loss + self.regression_weight * s.loss(x0_hat, self.teacher_solution(x, sigma, s))
            losses.append(loss)
        return torch.stack(losses)

    def train_step(self) -> dict[str, float]:
        """The trainer's step for the student, plus the mean fake-score loss of the step's updates."""
        self.fake_losses = []
        record = super().train_step()
        record["fake_loss"] = sum(self.fake_losses) / len(self.fake_losses) if self.fake_losses else float("nan")
        return record


def describe(cfg: TrainConfig) -> str:
    """One line for logs: what the teacher is and what the student learns."""
    if isinstance(cfg, DistillDMDConfig):
        extra = f", + {cfg.regression_weight} x trajectory regression" if cfg.regression_weight > 0 else ""
        return (
            f"DMD step distillation to t={cfg.timesteps} (real score: teacher, guidance {'on' if cfg.teacher_guidance else 'off'}; "
            f"fake score: {cfg.fake_updates} update(s) per sample{extra})"
        )
    if isinstance(cfg, DistillStepsConfig):
        return f"step distillation to t={cfg.timesteps} (teacher: {cfg.teacher_steps} Euler steps, guidance {'on' if cfg.teacher_guidance else 'off'})"
    return "CFG distillation (student: 1 pass; teacher: 3-pass guided velocity)"
