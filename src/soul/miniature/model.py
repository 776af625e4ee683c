"""The trained miniature model: assemble it for training, pack it for shipping, load it back.

Why a single flat file: the package ships `miniature/weights/*.safetensors` and `*.json` only (no
sub-directories, no tokenizer or YAML files), and a `save_pretrained` directory needs all of
those. The shipped weights are therefore one safetensors file whose keys are prefixed by component
(`transformer.`, `vae.`, `audio_encoder.`, `text_encoder.`), stored in float16 to stay well under
the project's 30 MB budget, plus a JSON with the VAE's latent statistics and how the weights were
made and measured. `load_mini_pipeline` rebuilds `SoulPipeline.from_preset("mini")` (which
recreates the tokenizer and every config) and loads the weights into it in float32.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from diffusers import AutoencoderKLWan
from safetensors.torch import load_file, save_file

from soul.errors import InputError
from soul.sampling.pipeline import SoulPipeline

WEIGHTS_DIR = Path(__file__).parent / "weights"
WEIGHTS_FILE = "mini.safetensors"
INFO_FILE = "mini.json"


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


def pack(checkpoint: str | Path, out_dir: str | Path = WEIGHTS_DIR, info: dict | None = None) -> Path:
    """Write a trained checkpoint directory as the shipped flat float16 file plus its JSON."""
    pipe = SoulPipeline.from_pretrained(checkpoint, torch_dtype=torch.float32)
    tensors: dict[str, torch.Tensor] = {}
    for name, module in _components(pipe).items():
        for key, value in module.state_dict().items():
            tensors[f"{name}.{key}"] = value.detach().to(torch.float16).contiguous()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out_dir / WEIGHTS_FILE), metadata={"format": "soul-mini", "preset": pipe.config.name})
    record = dict(info or {})
    record["preset"] = pipe.config.name
    record["latents_mean"] = [float(v) for v in pipe.vae.config.latents_mean]
    record["latents_std"] = [float(v) for v in pipe.vae.config.latents_std]
    record["parameters"] = {name: sum(p.numel() for p in m.parameters()) for name, m in _components(pipe).items()}
    (out_dir / INFO_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return out_dir / WEIGHTS_FILE


def has_shipped_weights(weights_dir: str | Path = WEIGHTS_DIR) -> bool:
    """True when the trained miniature weights are installed with the package."""
    return (Path(weights_dir) / WEIGHTS_FILE).is_file() and (Path(weights_dir) / INFO_FILE).is_file()


def load_mini_pipeline(weights_dir: str | Path = WEIGHTS_DIR, device: torch.device | str = "cpu") -> SoulPipeline:
    """The trained miniature model, ready to generate (float32)."""
    weights_dir = Path(weights_dir)
    if not has_shipped_weights(weights_dir):
        raise InputError(weights_dir / WEIGHTS_FILE, "the trained miniature weights are not installed", "train them (docs/miniature.md) or use --preset tiny")
    info = json.loads((weights_dir / INFO_FILE).read_text(encoding="utf-8"))
    pipe = SoulPipeline.from_preset(info.get("preset", "mini"), seed=0)
    pipe.vae.register_to_config(latents_mean=info["latents_mean"], latents_std=info["latents_std"])
    tensors = load_file(str(weights_dir / WEIGHTS_FILE))
    for name, module in _components(pipe).items():
        prefix = f"{name}."
        state = {k[len(prefix) :]: v.float() for k, v in tensors.items() if k.startswith(prefix)}
        missing, unexpected = module.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise InputError(weights_dir / WEIGHTS_FILE, f"{name}: missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]}", "re-pack the weights for the current mini preset")
    return pipe.to(device)


def main(argv: list[str] | None = None) -> None:
    """`python -m soul.miniature.model assemble VAE_DIR OUT` | `export INIT RUN OUT` | `pack CHECKPOINT [--info JSON]`."""
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
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.command == "assemble":
        print(assemble(args.vae_dir, args.out))
    elif args.command == "export":
        print(export_run(args.init_checkpoint, args.run_dir, args.out, args.step))
    else:
        info = json.loads(args.info.read_text()) if args.info else None
        print(pack(args.checkpoint, args.out, info))


if __name__ == "__main__":
    main()
