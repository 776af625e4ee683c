"""Guidance (CFG) parallelism: the 2 or 3 guidance passes of a step on different ranks.

Pass ``i`` of a step (in ``Guidance.weights`` order) runs on guidance rank ``i % C``; a rank with
fewer passes than the busiest sends zeros in the empty slot. One all-gather over the guidance group
gives every rank every prediction, which ``combine`` sums with the same weights and in the same
order as ``guided_velocity`` does in one process, so the velocity is the same to the bit.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist

from soul.errors import InputError
from soul.sampling.guidance import Conditions, Guidance, VelocityModel, combine, predict_passes


def pass_slots(num_passes: int, degree: int) -> int:
    """Passes the busiest guidance rank evaluates per step."""
    return math.ceil(num_passes / degree)


def check_guidance_degree(degree: int, num_passes: int) -> None:
    """A guidance degree above the passes per step would leave ranks with nothing to do."""
    if degree > num_passes:
        raise InputError(
            "--parallel",
            f"cfg={degree} but guidance runs {num_passes} pass(es) per step",
            f"use cfg={num_passes} or less (cfg=1 with --guidance off), and put the other processes into ulysses",
        )


class GuidanceParallel:
    """A drop-in for ``guided_velocity`` (``denoise_chunk(..., guide=...)``) over a process group."""

    def __init__(self, group: Any, degree: int, rank: int) -> None:
        self.group, self.degree, self.rank = group, degree, rank

    def __call__(
        self,
        model: VelocityModel,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        conditions: Conditions,
        guidance: Guidance,
        *,
        batched: bool = False,
    ) -> torch.Tensor:
        weights = guidance.weights(has_audio=conditions.audio is not None)
        kinds = list(weights)
        check_guidance_degree(self.degree, len(kinds))
        mine = kinds[self.rank :: self.degree]
        predictions = predict_passes(model, latents, timestep, conditions, mine, batched=batched)
        local = [predictions[k].float().contiguous() for k in mine]
        local += [torch.zeros_like(local[0])] * (pass_slots(len(kinds), self.degree) - len(mine))
        stacked = torch.stack(local)
        gathered = [torch.empty_like(stacked) for _ in range(self.degree)]
        dist.all_gather(gathered, stacked, group=self.group)
        return combine({kind: gathered[i % self.degree][i // self.degree] for i, kind in enumerate(kinds)}, weights)
