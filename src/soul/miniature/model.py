"""The trained miniature model: assemble it for training, pack it for shipping, load it back.

Why a single flat file: the package ships `miniature/weights/*.safetensors` and `*.json` only (no
sub-directories, no tokenizer or YAML files), and a `save_pretrained` directory needs all of
those. A set of shipped weights is therefore one safetensors file, `<name>.safetensors`, whose keys
are prefixed by component (`transformer.`, `vae.`, `audio_encoder.`, `text_encoder.` and, when the
pipeline has one, `light_vae.`), stored in float16 to stay well under the project's 30 MB budget,
plus `<name>.json` with the VAE's latent statistics, the light decoder's config and how the weights
were made and measured. Several sets live side by side (`mini`, the distilled `mini-fast`); a
preset names its set with `weights:`. `load_shipped_pipeline` rebuilds `SoulPipeline.from_preset`
(which recreates the tokenizer and every config) and loads the weights into it in float32.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import asdict
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan
from safetensors.torch import load_file, save_file

from soul.config import SoulConfig
from soul.errors import InputError
from soul.models.light_vae import LightDecoder, LightVAEConfig
from soul.sampling.pipeline import SoulPipeline

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_NAME = "mini"
LIGHT_VAE = "light_vae"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _components(pipe: SoulPipeline) -> dict[str, torch.nn.Module]:
    return {
        "transformer": pipe.transformer,
        "vae": pipe.vae,
        "audio_encoder": pipe.audio_encoder.model,
        "text_encoder": pipe.text_encoder.model,
    }


def assemble(vae_dir: str | Path, out: str | Path, preset: str = "mini", seed: int = 0) -> Path:
    """A `save_pretrained` directory: the preset's random transformer/encoders + the trained VAE.

    This is what `configs/train/mini.yaml` starts from (`init_checkpoint`): the trainer freezes
    the VAE and trains the transformer in the trained VAE's latent space.
    """
    pipe = SoulPipeline.from_preset(preset, seed=seed)
    pipe.vae = AutoencoderKLWan.from_pretrained(vae_dir, torch_dtype=torch.float32).eval()
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


def shipped_files(name: str = DEFAULT_NAME, weights_dir: str | Path = WEIGHTS_DIR) -> tuple[Path, Path]:
    """`<name>.safetensors` and `<name>.json` in `weights_dir`; the name must be a plain file stem."""
    if not _NAME.match(name):
        raise InputError(f"weights {name!r}", "is not a plain name", "use letters, digits, '.', '_' or '-', e.g. mini-fast")
    root = Path(weights_dir)
    return root / f"{name}.safetensors", root / f"{name}.json"


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
    components = _components(pipe)
    if pipe.light_vae is not None:
        components[LIGHT_VAE] = pipe.light_vae
    for component, module in components.items():
        for key, value in module.state_dict().items():
            tensors[f"{component}.{key}"] = value.detach().to(torch.float16).contiguous()
    if base is not None:  # ship only what differs from the base weights (e.g. mini-fast over mini)
        inherited = _shipped_tensors(base, Path(out_dir))
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
    from soul.config import available_presets

    record["preset"] = name if name in available_presets() else pipe.config.name
    record["latents_mean"] = [float(v) for v in pipe.vae.config.latents_mean]
    record["latents_std"] = [float(v) for v in pipe.vae.config.latents_std]
    if pipe.light_vae is not None:
        light = asdict(pipe.light_vae.config)
        record[LIGHT_VAE] = {**light, "widths": list(light["widths"]), "time_upscale": list(light["time_upscale"])}
    else:
        record.pop(LIGHT_VAE, None)
    record["parameters"] = {component: sum(p.numel() for p in m.parameters()) for component, m in components.items()}
    info_file.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return weights_file


def _shipped_tensors(name: str, weights_dir: Path, _seen: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """The tensors of shipped weights `name`, over those of its `base` (recorded by `pack`)."""
    weights_file, info_file = shipped_files(name, weights_dir)
    for path in (weights_file, info_file):
        if not path.is_file():
            raise InputError(path, f"the trained weights {name!r} are not installed", "train them (docs/miniature.md) or use --preset tiny")
    base = json.loads(info_file.read_text(encoding="utf-8")).get("base")
    if base in (*_seen, name):
        raise InputError(info_file, f"weights {name!r} name themselves as their own base", "re-pack them with another --base")
    tensors = _shipped_tensors(base, weights_dir, (*_seen, name)) if base else {}
    tensors.update(load_file(str(weights_file)))
    return tensors


def has_shipped_weights(name: str = DEFAULT_NAME, weights_dir: str | Path = WEIGHTS_DIR) -> bool:
    """True when the weights called `name` are installed (both files) in `weights_dir`."""
    return all(p.is_file() for p in shipped_files(name, weights_dir))


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
    for path in (weights_file, info_file):
        if not path.is_file():
            raise InputError(path, f"the trained weights {name!r} are not installed", "train them (docs/miniature.md) or use --preset tiny")
    info = json.loads(info_file.read_text(encoding="utf-8"))
    pipe = SoulPipeline.from_preset(preset if preset is not None else info.get("preset", DEFAULT_NAME), seed=0)
    pipe.vae.register_to_config(latents_mean=info["latents_mean"], latents_std=info["latents_std"])
    tensors = _shipped_tensors(name, Path(weights_dir))
    components = _components(pipe)
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


def load_mini_pipeline(weights_dir: str | Path = WEIGHTS_DIR, device: torch.device | str = "cpu") -> SoulPipeline:
    """The trained miniature model (`mini` weights), ready to generate (float32)."""
    return load_shipped_pipeline(DEFAULT_NAME, weights_dir, device)


def main(argv: list[str] | None = None) -> None:
    """`python -m soul.miniature.model assemble VAE_DIR OUT` | `export INIT RUN OUT` | `pack CHECKPOINT [--name N] [--info JSON]`."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("assemble")
    a.add_argument("vae_dir", type=Path)
    a.add_argument("out", type=Path)
    e = sub.add_parser("export")
    e.add_argument("init_checkpoint", type=Path)
    e.add_argument("run_dir", type=Path)
    e.add_argument("out", type=Path)
    e.add_argument("--step", type=int, default=None)
    p = sub.add_parser("pack")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    p.add_argument("--info", type=Path, default=None, help="JSON describing how the weights were made and measured")
    p.add_argument("--name", default=DEFAULT_NAME, help="weights name: writes NAME.safetensors + NAME.json (a preset's `weights:`)")
    p.add_argument("--base", default=None, help="shipped weights this one extends: only tensors that differ are written (e.g. --name mini-fast --base mini)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.command == "assemble":
        print(assemble(args.vae_dir, args.out))
    elif args.command == "export":
        print(export_run(args.init_checkpoint, args.run_dir, args.out, args.step))
    else:
        info = json.loads(args.info.read_text()) if args.info else None
        print(pack(args.checkpoint, args.out, info, name=args.name, base=args.base))


if __name__ == "__main__":
    main()
