"""The denoising loop of one chunk: a schedule walked over ``[clean prefix | noisy]`` latents.

Free of pixels, encoders and files, so the pipeline, the long-video driver and the distillation
trainers (whose teacher runs exactly this loop) share one implementation. The TI2V mechanics follow
diffusers' ``expand_timesteps=True`` path: the clean prefix is re-imposed before every step and
after the loop, and its tokens carry timestep 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from soul.sampling.guidance import Conditions, GuideFn, Guidance, VelocityModel, guided_velocity
from soul.sampling.layout import audio_frame_mask, token_timesteps
from soul.sampling.schedules import make_sampler

StepCallback = Callable[[int, int, torch.Tensor], None]
"""``callback(step, total, latents)`` after every sampler step (step counts from 1)."""

def as_velocity_model(transformer: torch.nn.Module) -> VelocityModel:
    """Adapt the transformer to the guidance interface: inputs cast to its dtype, float32 out.

    The compute dtype is the patch embedding's: Wan keeps some tables in float32 even in a bf16
    model, so "the first parameter" can be the wrong answer.
    """
    embed = getattr(transformer, "patch_embedding", None)
    param = embed.weight if isinstance(embed, torch.nn.Module) else next(transformer.parameters())

    def velocity(
        *,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        audio_features: torch.Tensor | None = None,
        **extra: Any,
    ) -> torch.Tensor:
        out = transformer(
            hidden_states=hidden_states.to(param.device, param.dtype),
            timestep=timestep.to(param.device),
            encoder_hidden_states=encoder_hidden_states.to(param.device, param.dtype),
            audio_features=None if audio_features is None else audio_features.to(param.device, param.dtype),
            return_dict=False,
            **{k: (v.to(param.device) if isinstance(v, torch.Tensor) else v) for k, v in extra.items()},
        )
        return out[0].float()

    return velocity


def denoise_chunk(
    transformer: torch.nn.Module,
    latents: torch.Tensor,
    prefix: torch.Tensor,
    conditions: Conditions,
    sigmas: torch.Tensor,
    *,
    guidance: Guidance | None = None,
    sampler: str = "euler",
    generator: torch.Generator | None = None,
    batched_guidance: bool = False,
    callback: StepCallback | None = None,
    guide: GuideFn | None = None,
) -> torch.Tensor:
    """Denoise one chunk whose first ``P`` latent frames are clean and given.

    - ``latents``: ``[B, C, F, h, w]`` starting latents for the whole chunk (noise at ``sigmas[0]``);
      the first ``P`` frames are overwritten by ``prefix``.
    - ``prefix``: ``[B, C, P, h, w]`` clean normalised latents, ``P >= 1``: the anchor (portrait)
      then any motion frames. They get timestep 0 and no audio, and are re-imposed before every
      step and after the loop, so the result starts with exactly ``prefix``.
    - ``conditions``: text / negative-text embeddings, audio features ``[B, N, F, W, L, D]`` for
      the whole chunk (or None) and ``extra={"audio_masks": [B, N, h, w]}`` when needed; the
      audio frame mask is added here from ``P``.
    - ``sigmas``: the schedule, ending at 0 (``schedules.resolve_sigmas``).
    - ``guide``: what combines the guidance passes of a step, ``guided_velocity`` by default; the
      guidance-parallel replacement of ``soul.parallel`` spreads the passes over processes.

    Returns the denoised chunk ``[B, C, F, h, w]`` (float32, normalised latents). Runs under the
    caller's grad mode, so trainers (e.g. distillation) can backpropagate through it.
    """
    guidance = guidance or Guidance()
    if latents.ndim != 5 or prefix.ndim != 5:
        raise ValueError(f"latents {tuple(latents.shape)} and prefix {tuple(prefix.shape)} must be [B, C, F, h, w]")
    b, c, f, h, w = latents.shape
    p = prefix.shape[2]
    if (prefix.shape[0], prefix.shape[1], prefix.shape[3], prefix.shape[4]) != (b, c, h, w) or not 1 <= p <= f:
        raise ValueError(f"prefix {tuple(prefix.shape)} does not fit latents {tuple(latents.shape)} (need 1 <= P <= F)")
    if conditions.audio is not None and (conditions.audio.shape[0], conditions.audio.shape[2]) != (b, f):
        raise ValueError(f"audio features {tuple(conditions.audio.shape)} must be [B={b}, N, F={f}, ...]")
    patch = tuple(int(x) for x in transformer.config.patch_size)

    device = latents.device
    extra = dict(conditions.extra)
    extra["audio_frame_mask"] = audio_frame_mask(f, p, b, device) if conditions.audio is not None else None
    conds = Conditions(text=conditions.text, null_text=conditions.null_text, audio=conditions.audio, extra=extra)
    model = as_velocity_model(transformer)
    prefix = prefix.to(device=device, dtype=torch.float32)
    run = make_sampler(sampler, sigmas, generator)
    guide = guide or guided_velocity

    x = latents.float().clone()
    x[:, :, :p] = prefix
    for i in range(run.num_steps):
        t = token_timesteps(run.timestep(i), (f, h, w), patch, p, b, device)
        v = guide(model, x, t, conds, guidance, batched=batched_guidance)
        x = run.step(v, i, x)
        x[:, :, :p] = prefix
        if callback is not None:
            callback(i + 1, run.num_steps, x)
    return x
