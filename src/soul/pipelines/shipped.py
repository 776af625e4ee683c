"""Load weights shipped inside the package (``soul.models.shipped``) into a ready SoulPipeline."""

from __future__ import annotations

from pathlib import Path

import torch

from soul.config import SoulConfig
from soul.errors import InputError
from soul.models.light_vae import LightDecoder, LightVAEConfig
from soul.models.shipped import LIGHT_VAE, WEIGHTS_DIR, shipped_files, shipped_info, shipped_tensors
from soul.pipelines.soul_pipeline import SoulPipeline

DEFAULT_NAME = "mini"


def pipeline_components(pipe: SoulPipeline) -> dict[str, torch.nn.Module]:
    """The modules whose weights a shipped set holds, by the key prefix they are stored under."""
    return {
        "transformer": pipe.transformer,
        "vae": pipe.vae,
        "audio_encoder": pipe.audio_encoder.model,
        "text_encoder": pipe.text_encoder.model,
    }


def load_shipped_pipeline(
    name: str,
    weights_dir: str | Path = WEIGHTS_DIR,
    device: torch.device | str = "cpu",
    preset: str | Path | SoulConfig | None = None,
) -> SoulPipeline:
    """The shipped weights called `name`, ready to generate (float32).

    The model is built from `preset` (default: the preset recorded when the weights were packed),
    so a variant such as `mini-fast` keeps its own sampling defaults on the pipeline. Without a
    packed light decoder `pipe.light_vae` is None: a random one would decode noise without saying so.
    """
    weights_file, info_file = shipped_files(name, weights_dir)
    info = shipped_info(name, weights_dir)
    pipe = SoulPipeline.from_preset(preset if preset is not None else info.get("preset", DEFAULT_NAME), seed=0)
    pipe.vae.register_to_config(latents_mean=info["latents_mean"], latents_std=info["latents_std"])
    tensors = shipped_tensors(name, weights_dir)
    components = pipeline_components(pipe)
    if LIGHT_VAE in info:
        light = info[LIGHT_VAE]
        try:
            pipe.light_vae = LightDecoder(LightVAEConfig(**light)).eval()
        except TypeError as err:
            raise InputError(info_file, f"{LIGHT_VAE}: {err}", "re-pack the weights with the current soul") from err
        components[LIGHT_VAE] = pipe.light_vae
    else:
        pipe.light_vae = None
    for component, module in components.items():
        prefix = f"{component}."
        state = {k[len(prefix) :]: v.float() for k, v in tensors.items() if k.startswith(prefix)}
        try:
            missing, unexpected = module.load_state_dict(state, strict=False)
        except RuntimeError as err:  # shape mismatch: packed for another size
            raise InputError(weights_file, f"{component}: {str(err).splitlines()[-1].strip()}", f"re-pack the weights for preset {pipe.config.name!r}") from err
        if missing or unexpected:
            raise InputError(weights_file, f"{component}: missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]}", f"re-pack the weights for preset {pipe.config.name!r}")
    return pipe.to(device)
