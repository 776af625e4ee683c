"""Guidance and step distillation of Soul's transformer (DESIGN 5), on the trainer's own path.

Both distillers subclass ``soul.training.trainer.Trainer``: same data (``ClipWindowDataset``),
same conditioning (anchor frame from the clip, random motion prefix, per-token timesteps, audio
frame mask), same checkpointing, metrics, resume and export. Only the loss differs, and a frozen
copy of the starting transformer (the teacher) is kept next to the student.

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
  ``sigma_k``, as the sampler re-noises its own x0 estimate. Chosen over DMD because it needs no
  fake-score network (half the memory and a third of the compute per step on this CPU) and its
  loss is directly the quantity the sampler consumes; DMD's extra sharpness is not measurable
  until miniature weights are trained (docs/speed.md).
"""

from __future__ import annotations

import copy
import os
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
from soul.sampling.schedules import DISTILLED_TIMESTEPS, NUM_TRAIN_TIMESTEPS, add_noise, distilled_sigmas, predict_x0, to_timestep
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


def load_distill_config(path: str | Path, kind: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read ``configs/distill/*.yaml`` for ``kind`` "cfg" or "steps"; relative data paths stay as written."""
    model = {"cfg": DistillCFGConfig, "steps": DistillStepsConfig}[kind]
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
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if (self.cfg.mixed_precision == "bf16" and self.device.type == "cuda") else nullcontext()
        with autocast:
            return self.model(
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

    def sample_losses(self, samples: list[TrainSample], indices: list[int]) -> torch.Tensor:
        losses = []
        for sample, index in zip(samples, indices):
            s = self._prepare(sample, index)
            k = int(torch.randint(0, len(self.sigmas), (), generator=s.gen))
            sigma = self.sigmas[k]
            noise = torch.randn(s.x0.shape, generator=s.gen).to(self.device)
            x = s.noised(noise, sigma)
            target = self.teacher_solution(x, sigma, s)
            pred_x0 = predict_x0(x, self._student(x, self._timesteps(sigma, s), s.conds), sigma)
            losses.append(s.loss(pred_x0, target))
        return torch.stack(losses)


def describe(cfg: TrainConfig) -> str:
    """One line for logs: what the teacher is and what the student learns."""
    if isinstance(cfg, DistillStepsConfig):
        return f"step distillation to t={cfg.timesteps} (teacher: {cfg.teacher_steps} Euler steps, guidance {'on' if cfg.teacher_guidance else 'off'})"
    return "CFG distillation (student: 1 pass; teacher: 3-pass guided velocity)"
