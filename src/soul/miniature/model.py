"""The trained miniature model: assemble it for training, export a run, pack it for shipping.

The shipped format (one flat float16 safetensors file plus JSON per set) is described in
``soul.models.shipped``; ``soul.pipelines.shipped.load_shipped_pipeline`` loads a set back.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan
from safetensors.torch import load_file, save_file

from soul.config import available_presets
from soul.errors import InputError
from soul.models.shipped import LIGHT_VAE, WEIGHTS_DIR, shipped_files, shipped_tensors
from soul.pipelines.shipped import DEFAULT_NAME, pipeline_components
from soul.pipelines.soul_pipeline import SoulPipeline


def assemble(vae_dir: str | Path, out: str | Path, preset: str = "mini", seed: int = 0, audio_encoder: str | Path | None = None) -> Path:
    """A `save_pretrained` directory: the preset's random transformer/encoders + the trained VAE
    (and a pretrained audio encoder, `soul mini train-audio`, when given).

    This is what `configs/train/mini.yaml` starts from (`init_checkpoint`): the trainer freezes
    the VAE and the audio encoder and trains the transformer on their latents and features.
    """
    pipe = SoulPipeline.from_preset(preset, seed=seed)
    pipe.vae = AutoencoderKLWan.from_pretrained(vae_dir, torch_dtype=torch.float32).eval()
    if audio_encoder is not None:
        from soul.models.audio_encoder import SoulAudioEncoder

        pipe.audio_encoder = SoulAudioEncoder.from_pretrained(audio_encoder, pipe.config, torch_dtype=torch.float32)
    # No light decoder: from_preset's is random, and `pack` ships whatever the checkpoint holds. A
    # trained one (soul distill vae) is copied to soul/light_vae/ of the export before packing.
    pipe.light_vae = None
    return pipe.save_pretrained(out)


def export_run(init_checkpoint: str | Path, run_dir: str | Path, out: str | Path, step: int | None = None) -> Path:
    """A generation-ready directory from a training run's checkpoint (newest unless `step`).

    The trainer exports only when it reaches its configured `max_steps`; runs stopped earlier
    (time-boxed here) keep their transformer weights in `checkpoints/step-*/trainable.safetensors`,
    which this loads over the run's starting checkpoint.
    """
    ckpts = sorted(Path(run_dir).glob("checkpoints/step-*/trainable.safetensors"))
    if step is not None:
        ckpts = [c for c in ckpts if c.parent.name == f"step-{step:09d}"]
    if not ckpts:
        raise InputError(Path(run_dir) / "checkpoints", "no checkpoint found", "train first, or check --step")
    pipe = SoulPipeline.from_pretrained(init_checkpoint, torch_dtype=torch.float32)
    weights = load_file(str(ckpts[-1]))
    params = dict(pipe.transformer.named_parameters())
    unknown = sorted(set(weights) - set(params))
    if unknown:
        raise InputError(ckpts[-1], f"holds weights the preset's transformer lacks: {unknown[:3]}", "export with the run's own init checkpoint")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value.float())
    return pipe.save_pretrained(out)


def pack(checkpoint: str | Path, out_dir: str | Path = WEIGHTS_DIR, info: dict | None = None, name: str = DEFAULT_NAME,
         base: str | None = None) -> Path:
    """Write a trained checkpoint directory as the shipped flat float16 file plus its JSON.

    With `base` (shipped weights in the same `out_dir`), only tensors that differ from the base's
    are written and loading reads the base first: a distilled student then ships its transformer
    and light decoder, not a second copy of the VAE and encoders (the package stays small).

    The light decoder (`soul/light_vae/` of the checkpoint) is included when the checkpoint has
    one, with its config in the JSON, so a fast preset's `vae: light` works from shipped weights.
    """
    weights_file, info_file = shipped_files(name, out_dir)
    pipe = SoulPipeline.from_pretrained(checkpoint, torch_dtype=torch.float32)
    tensors: dict[str, torch.Tensor] = {}
    components = pipeline_components(pipe)
    if pipe.light_vae is not None:
        components[LIGHT_VAE] = pipe.light_vae
    for component, module in components.items():
        for key, value in module.state_dict().items():
            tensors[f"{component}.{key}"] = value.detach().to(torch.float16).contiguous()
    if base is not None:  # ship only what differs from the base weights (e.g. mini-fast over mini)
        inherited = shipped_tensors(base, out_dir)
        tensors = {k: v for k, v in tensors.items() if k not in inherited or not torch.equal(inherited[k], v)}
    weights_file.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(weights_file), metadata={"format": "soul-shipped", "name": name, "preset": pipe.config.name})
    record = dict(info or {})
    record["name"] = name
    if base is not None:
        record["base"] = base
    else:
        record.pop("base", None)
    # The preset the weights load into by default: the shipped preset of the same name when there
    # is one (mini-fast carries its own sampling), else the checkpoint's.
    record["preset"] = name if name in available_presets() else pipe.config.name
    record["latents_mean"] = [float(v) for v in pipe.vae.config.latents_mean]
    record["latents_std"] = [float(v) for v in pipe.vae.config.latents_std]
    if pipe.light_vae is not None:
        light = asdict(pipe.light_vae.config)
        record[LIGHT_VAE] = {**light, **{key: list(light[key]) for key in ("widths", "time_upscale", "space_upscale")}}
    else:
        record.pop(LIGHT_VAE, None)
    record["parameters"] = {component: sum(p.numel() for p in m.parameters()) for component, m in components.items()}
    info_file.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return weights_file
