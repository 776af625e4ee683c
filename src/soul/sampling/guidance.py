"""Text and audio classifier-free guidance with the fewest transformer calls.

Soul guides text and audio separately (DESIGN 3.2):

    v = v(0,0) + s_t * (v(c,0) - v(0,0)) + s_a * (v(c,a) - v(c,0))

where ``v(0,0)`` uses the negative prompt and zeroed audio features, ``v(c,0)`` the prompt and
zeroed audio, ``v(c,a)`` the prompt and the audio. Rewritten as a weighted sum of the three passes,

    v = (1 - s_t) * v(0,0) + (s_t - s_a) * v(c,0) + s_a * v(c,a),

a pass whose weight is exactly zero need not run, and that is the only saving that keeps the
formula exact:

* ``s_t = 1``            -> ``v(c,0) + s_a (v(c,a) - v(c,0))``: 2 calls (1 if also s_a in {0, 1}).
* ``s_t = s_a = s``      -> ``v(0,0) + s (v(c,a) - v(0,0))``, plain joint CFG: 2 calls.
* ``s_a = 0``            -> text CFG without audio: 2 calls.
* ``s_a = 1, s_t != 1``  -> a scale of 1 means "this guidance is off", and a condition whose
  guidance is off is simply kept on in every pass: text CFG with the audio present,
  ``v(0,a) + s_t (v(c,a) - v(0,a))``: 2 calls. (Taken literally the three-pass formula would still
  need all three passes here, with the text direction measured without audio; users who switch
  audio guidance off expect the cost of plain CFG, and the speech still drives both passes.)
* both 1, or ``enabled=False`` (guidance-distilled students): 1 call, ``v(c,a)``.

Passes can run as one batched call (faster when memory allows) or one after another (less memory),
or on different processes (``soul.parallel``'s guidance parallelism, through ``predict_passes``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

import torch
import torch.nn.functional as F

VelocityModel = Callable[..., torch.Tensor]
"""``model(hidden_states=, timestep=, encoder_hidden_states=, audio_features=, **extra) -> v``."""


class GuidancePass(str, Enum):
    """The three conditionings the guidance formula combines."""

    UNCOND = "uncond"  # negative prompt, null audio
    TEXT = "text"  # prompt, null audio
    FULL = "full"  # prompt, audio
    AUDIO = "audio"  # negative prompt, audio (text CFG while audio guidance is off)


@dataclass(frozen=True)
class Guidance:
    """Guidance scales; ``enabled=False`` means one conditional pass whatever the scales."""

    text_scale: float = 1.0
    audio_scale: float = 1.0
    enabled: bool = True

    def weights(self, has_audio: bool = True) -> dict[GuidancePass, float]:
        """Non-zero weight of each pass; the keys are exactly the passes that must run.

        Without audio, v(c,a) = v(c,0), so the audio pass folds into the text pass.
        """
        if not self.enabled:
            return {GuidancePass.FULL if has_audio else GuidancePass.TEXT: 1.0}
        s_t, s_a = float(self.text_scale), float(self.audio_scale)
        if has_audio and s_a == 1.0 and s_t != 1.0:
            return {GuidancePass.AUDIO: 1.0 - s_t, GuidancePass.FULL: s_t}
        raw = {GuidancePass.UNCOND: 1.0 - s_t, GuidancePass.TEXT: s_t - s_a, GuidancePass.FULL: s_a}
        if not has_audio:
            raw = {GuidancePass.UNCOND: raw[GuidancePass.UNCOND], GuidancePass.TEXT: s_t}
        return {k: w for k, w in raw.items() if w != 0.0}

    def needs_negative_prompt(self) -> bool:
        """Whether any pass runs on the negative prompt (so it must be encoded)."""
        return bool({GuidancePass.UNCOND, GuidancePass.AUDIO} & set(self.weights(has_audio=True)))

    def num_passes(self, has_audio: bool = True) -> int:
        """Transformer evaluations per step (sequential mode)."""
        return len(self.weights(has_audio))


@dataclass
class Conditions:
    """Everything the transformer is conditioned on, for one batch of samples.

    ``extra`` holds per-sample tensors that are identical in every pass (audio masks, the audio frame
    mask); they are repeated along the batch when passes are batched.
    """

    text: torch.Tensor
    null_text: torch.Tensor | None = None
    audio: torch.Tensor | None = None
    extra: dict[str, torch.Tensor | None] = field(default_factory=dict)

    def inputs(self, kind: GuidancePass) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Text embeddings and audio features of one pass; the audio null is zeroed features."""
        if kind in (GuidancePass.UNCOND, GuidancePass.AUDIO):
            if self.null_text is None:
                raise ValueError("the unconditional pass needs null_text (the negative prompt's embedding)")
            text = self.null_text
        else:
            text = self.text
        if self.audio is None:
            return text, None
        audio = self.audio if kind in (GuidancePass.FULL, GuidancePass.AUDIO) else torch.zeros_like(self.audio)
        return text, audio


def _pad_tokens(embeds: list[torch.Tensor]) -> list[torch.Tensor]:
    # Wan pads prompt embeddings with zero vectors to a fixed length, so zero-padding the shorter
    # of two prompts to batch them changes nothing the model was not trained on.
    longest = max(e.shape[1] for e in embeds)
    return [F.pad(e, (0, 0, 0, longest - e.shape[1])) for e in embeds]


def combine(predictions: Mapping[GuidancePass, torch.Tensor], weights: Mapping[GuidancePass, float]) -> torch.Tensor:
    """Weighted sum of pass predictions, in float32 so bf16 models keep the small differences."""
    out: torch.Tensor | None = None
    for kind, w in weights.items():
        term = predictions[kind].float() * w if w != 1.0 else predictions[kind].float()
        out = term if out is None else out + term
    if out is None:
        raise ValueError("no guidance pass has a non-zero weight")
    return out


def predict_passes(
    model: VelocityModel,
    latents: torch.Tensor,
    timestep: torch.Tensor,
    conditions: Conditions,
    kinds: Sequence[GuidancePass],
    *,
    batched: bool = False,
) -> dict[GuidancePass, torch.Tensor]:
    """The model's prediction for each pass in ``kinds`` (the evaluations ``guided_velocity`` combines).

    ``batched=True`` stacks the passes along the batch dimension into one call; the result is the
    same up to float rounding, at the cost of k times the activation memory. Guidance parallelism
    (``soul.parallel``) calls this with each rank's share of the passes.
    """
    kinds = list(kinds)
    if batched and len(kinds) > 1:
        texts, audios = zip(*(conditions.inputs(k) for k in kinds))
        k = len(kinds)
        extra = {
            name: (None if t is None else torch.cat([t] * k, dim=0)) for name, t in conditions.extra.items()
        }
        out = model(
            hidden_states=torch.cat([latents] * k, dim=0),
            timestep=torch.cat([timestep] * k, dim=0),
            encoder_hidden_states=torch.cat(_pad_tokens(list(texts)), dim=0),
            audio_features=None if audios[0] is None else torch.cat(list(audios), dim=0),
            **extra,
        )
        return dict(zip(kinds, out.chunk(k, dim=0)))
    predictions = {}
    for kind in kinds:
        text, audio = conditions.inputs(kind)
        predictions[kind] = model(
            hidden_states=latents,
            timestep=timestep,
            encoder_hidden_states=text,
            audio_features=audio,
            **conditions.extra,
        )
    return predictions


GuideFn = Callable[..., torch.Tensor]
"""``guide(model, latents, timestep, conditions, guidance, *, batched) -> v``: ``guided_velocity``
or a drop-in replacement with the same result (``soul.parallel``'s guidance-parallel one)."""


def guided_velocity(
    model: VelocityModel,
    latents: torch.Tensor,
    timestep: torch.Tensor,
    conditions: Conditions,
    guidance: Guidance,
    *,
    batched: bool = False,
) -> torch.Tensor:
    """The guided velocity for one step, calling ``model`` only for passes with non-zero weight.

    ``batched=True`` stacks the passes along the batch dimension into one call; the result is the
    same up to float rounding, at the cost of k times the activation memory.
    """
    weights = guidance.weights(has_audio=conditions.audio is not None)
    return combine(predict_passes(model, latents, timestep, conditions, list(weights), batched=batched), weights)
