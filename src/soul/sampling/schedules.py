"""Flow-matching noise schedules and the samplers that walk them.

Soul's backbone is trained with rectified flow (DESIGN 3.1): ``x_t = (1 - t) * x0 + t * eps`` and
the transformer predicts the velocity ``v = eps - x0``. Every sampler here consumes the same thing,
a decreasing list of noise levels ``sigmas`` that ends at 0, so that the base model (many shifted
steps), distilled students (a few fixed levels) and the long-video layer (which reuses the same
loop per chunk) all share one vocabulary. The transformer sees ``sigma * 1000`` as its timestep,
like Wan's training.

Three samplers:

* ``euler``: the first-order ODE step ``x' = x + (sigma' - sigma) * v``. Written by hand because
  it is one line and because diffusers' ``FlowMatchEulerDiscreteScheduler`` re-applies its own shift
  to explicit sigmas and draws its stochastic noise from the global RNG.
* ``unipc``: diffusers' ``UniPCMultistepScheduler`` in flow mode, the official Wan2.2 sampler.
  It accepts explicit sigmas (``set_timesteps(sigmas=...)``, as a numpy array) but shifts them with its
  ``flow_shift`` and appends the final 0 itself, so we hand it our already-shifted levels without the
  trailing 0 and ``flow_shift=1``.
* ``x0``: predict the clean sample and re-noise it with fresh noise at the next level, the sampler
  DMD-style few-step students are trained for (e.g. t = 1000, 750, 500, 250).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Literal

import torch
from diffusers import UniPCMultistepScheduler
from diffusers.utils.torch_utils import randn_tensor

from soul.errors import InputError

NUM_TRAIN_TIMESTEPS = 1000
"""The transformer's timestep is the noise level times this (Wan's training convention)."""

SamplerName = Literal["euler", "unipc", "x0"]
SAMPLERS: tuple[str, ...] = ("euler", "unipc", "x0")

DISTILLED_TIMESTEPS: tuple[float, ...] = (1000.0, 750.0, 500.0, 250.0)
"""The fixed 4-step schedule of the public DMD-distilled TI2V-5B students (REFERENCE)."""


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """Apply the flow shift ``s * sigma / (1 + (s - 1) * sigma)``.

    Larger shifts spend more steps at high noise, where large video latents decide their layout;
    the map fixes 0 and 1, so a schedule keeps its end points.
    """
    if shift <= 0:
        raise InputError("shift", f"must be positive, got {shift}", "use e.g. 5.0 for the 5B model, 1.0 for no shift")
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def shift_sigma(sigma: float, shift: float) -> float:
    """``shift_sigmas`` for one Python float (a training step's sampled level), bit-identical to it.

    Training and inference must shift noise levels by the same map, or a student trained at
    shifted levels would be sampled at others; routing scalars through the tensor function
    guarantees it.
    """
    return float(shift_sigmas(torch.tensor(float(sigma), dtype=torch.float64), shift))


def to_timestep(sigma: float | torch.Tensor) -> float | torch.Tensor:
    """The transformer timestep of a noise level: ``sigma * NUM_TRAIN_TIMESTEPS`` (Wan's convention).

    One place for the scale, so the trainer, the distillers and the samplers cannot disagree on it.
    """
    return sigma * NUM_TRAIN_TIMESTEPS


def flow_sigmas(num_steps: int, shift: float = 1.0) -> torch.Tensor:
    """The default schedule: ``num_steps`` evenly spaced levels from 1, shifted, then a final 0.

    Returns a float64 tensor of ``num_steps + 1`` values so the last step lands exactly on clean
    latents.
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise InputError("num_inference_steps", f"must be a positive integer, got {num_steps!r}", "use e.g. 50, or 4 for a distilled student")
    base = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)
    return shift_sigmas(base, shift)


def check_sigmas(sigmas: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Validate user sigmas (one noise level per step) and append the final 0.

    Levels must lie in (0, 1] and strictly decrease: a flat or rising level would make a step go
    backwards and a level above 1 has no meaning for rectified flow. A trailing 0 is accepted and
    not doubled, so a schedule printed by ``flow_sigmas`` can be passed back in.
    """
    values = [float(s) for s in (sigmas.tolist() if isinstance(sigmas, torch.Tensor) else sigmas)]
    if values and values[-1] == 0.0:
        values = values[:-1]
    if not values:
        raise InputError("sigmas", "needs at least one noise level", "give e.g. [1.0, 0.75, 0.5, 0.25]")
    bad = [s for s in values if not (0.0 < s <= 1.0) or s != s]
    if bad:
        raise InputError("sigmas", f"values {bad} are outside (0, 1]", "noise levels are fractions: 1 = pure noise")
    if any(b >= a for a, b in zip(values, values[1:])):
        raise InputError("sigmas", f"{values} is not strictly decreasing", "list noise levels from high to low")
    return torch.tensor([*values, 0.0], dtype=torch.float64)


def distilled_sigmas(timesteps: Sequence[float] = DISTILLED_TIMESTEPS) -> torch.Tensor:
    """Sigmas for a student trained at fixed transformer timesteps (0..1000), ending at 0."""
    return check_sigmas([float(t) / NUM_TRAIN_TIMESTEPS for t in timesteps])


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """The forward process ``x_t = (1 - t) x0 + t eps``; a tensor ``sigma`` of shape [B] is per sample."""
    if isinstance(sigma, torch.Tensor) and sigma.ndim == 1:
        sigma = sigma.view(-1, *([1] * (x0.ndim - 1)))
    return (1 - sigma) * x0 + sigma * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """What the transformer learns to predict: ``eps - x0``."""
    return noise - x0


def predict_x0(x_t: torch.Tensor, velocity: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """Invert ``x_t = x0 + t v``: the clean sample the velocity points to."""
    if isinstance(sigma, torch.Tensor) and sigma.ndim == 1:
        sigma = sigma.view(-1, *([1] * (x_t.ndim - 1)))
    return x_t - sigma * velocity


class FlowSampler(ABC):
    """Walks a schedule: ``step(v, i, x)`` moves ``x`` from ``sigmas[i]`` to ``sigmas[i + 1]``.

    Samplers are single-use: multistep ones keep history. Build a new one per chunk.
    """

    def __init__(self, sigmas: torch.Tensor) -> None:
        self.sigmas = sigmas.to(torch.float64)

    @property
    def num_steps(self) -> int:
        return len(self.sigmas) - 1

    def sigma(self, i: int) -> float:
        return float(self.sigmas[i])

    def timestep(self, i: int) -> float:
        """The transformer timestep of step ``i`` (noise level times 1000)."""
        return float(to_timestep(float(self.sigmas[i])))

    @abstractmethod
    def step(self, velocity: torch.Tensor, i: int, sample: torch.Tensor) -> torch.Tensor:
        """Return the sample at ``sigmas[i + 1]`` given the velocity predicted at ``sigmas[i]``."""


class EulerSampler(FlowSampler):
    """First-order ODE solver; deterministic, and identical to DDIM in flow form."""

    def step(self, velocity: torch.Tensor, i: int, sample: torch.Tensor) -> torch.Tensor:
        dt = float(self.sigmas[i + 1] - self.sigmas[i])
        return (sample.float() + dt * velocity.float()).to(sample.dtype)


class X0RenoiseSampler(FlowSampler):
    """Predict x0, then re-noise it with fresh noise at the next level (few-step students).

    The fresh noise comes from the caller's generator so a seed reproduces a video exactly.
    """

    def __init__(self, sigmas: torch.Tensor, generator: torch.Generator | None = None) -> None:
        super().__init__(sigmas)
        self.generator = generator

    def step(self, velocity: torch.Tensor, i: int, sample: torch.Tensor) -> torch.Tensor:
        x0 = predict_x0(sample.float(), velocity.float(), self.sigma(i))
        nxt = self.sigma(i + 1)
        if nxt == 0.0:
            return x0.to(sample.dtype)
        noise = randn_tensor(tuple(sample.shape), generator=self.generator, device=sample.device, dtype=torch.float32)
        return add_noise(x0, noise, nxt).to(sample.dtype)


class UniPCSampler(FlowSampler):
    """diffusers' UniPC multistep solver in flow-prediction mode, on our sigmas."""

    def __init__(self, sigmas: torch.Tensor, solver_order: int = 2) -> None:
        super().__init__(sigmas)
        if float(self.sigmas[-1]) != 0.0:
            raise InputError("sigmas", "the UniPC sampler needs a schedule that ends at 0", "let check_sigmas append the 0")
        # flow_shift=1: our sigmas are already shifted, and diffusers would shift explicit sigmas again.
        self.scheduler = UniPCMultistepScheduler(
            num_train_timesteps=NUM_TRAIN_TIMESTEPS,
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            flow_shift=1.0,
            solver_order=solver_order,
            final_sigmas_type="zero",
        )
        # A numpy array, not the list its signature names: diffusers does arithmetic on it.
        self.scheduler.set_timesteps(sigmas=self.sigmas[:-1].numpy())
        # Steps are addressed by index, never by looking the (rounded int) timestep up.
        self.scheduler.set_begin_index(0)
        self._next = 0

    def step(self, velocity: torch.Tensor, i: int, sample: torch.Tensor) -> torch.Tensor:
        if i != self._next:
            raise RuntimeError(f"UniPC is multistep: steps must run in order (expected {self._next}, got {i})")
        self._next += 1
        t = self.scheduler.timesteps[i]
        out = self.scheduler.step(velocity.float(), t, sample.float(), return_dict=False)[0]
        return out.to(sample.dtype)


def resolve_sigmas(
    *,
    num_steps: int | None = None,
    shift: float = 1.0,
    sigmas: Sequence[float] | torch.Tensor | None = None,
) -> torch.Tensor:
    """One schedule from either explicit sigmas (used as given, no shift) or a step count and shift."""
    if sigmas is not None:
        if num_steps is not None and num_steps != len(check_sigmas(sigmas)) - 1:
            raise InputError(
                "num_inference_steps",
                f"{num_steps} disagrees with the {len(check_sigmas(sigmas)) - 1} sigmas given",
                "give either sigmas or a step count, or make them agree",
            )
        return check_sigmas(sigmas)
    if num_steps is None:
        raise InputError("num_inference_steps", "neither a step count nor sigmas were given", "pass num_inference_steps or sigmas")
    return flow_sigmas(num_steps, shift)


def make_sampler(name: str, sigmas: torch.Tensor, generator: torch.Generator | None = None) -> FlowSampler:
    """Build a fresh sampler by name over a schedule that ends at 0."""
    if name == "euler":
        return EulerSampler(sigmas)
    if name == "unipc":
        return UniPCSampler(sigmas)
    if name == "x0":
        return X0RenoiseSampler(sigmas, generator)
    raise InputError("sampler", f"unknown sampler {name!r}", f"choose one of: {', '.join(SAMPLERS)}")
