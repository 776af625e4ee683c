"""Soul checkpoints: the official diffusers backbone files plus one small file of Soul's layers.

Layout of a checkpoint directory (a superset of "Wan2.2-TI2V-5B-Diffusers"):

    transformer/config.json                                  diffusers WanTransformer3DModel config
    transformer/diffusion_pytorch_model.safetensors          or sharded: -0000i-of-0000n + .index.json
    soul/config.json                                         Soul's audio_* settings (+ format tag)
    soul/audio_layers.safetensors                            Soul's layers only

Keeping the backbone in diffusers' own layout means a user can point Soul at the untouched official
download (no `soul/` directory: the audio layers start at zero, i.e. plain TI2V), and a fine-tuned
backbone stays loadable by any diffusers tool. The backbone is read and written by diffusers; only
the small Soul file is handled here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from diffusers import WanTransformer3DModel
from safetensors.torch import load_file, save_file

from soul.config import SoulConfig
from soul.errors import InputError
from soul.models.transformer import SoulTransformer3DModel, soul_kwargs

TRANSFORMER_DIR = "transformer"
SOUL_DIR = "soul"
SOUL_WEIGHTS = "audio_layers.safetensors"
SOUL_CONFIG = "config.json"
FORMAT = "soul-audio-layers"
FORMAT_VERSION = 1
_SINGLE = "diffusion_pytorch_model.safetensors"
_INDEX = "diffusion_pytorch_model.safetensors.index.json"
_FIX = "re-download with `soul download` or point at a complete checkpoint directory"


def check_transformer_files(checkpoint: str | Path) -> list[Path]:
    """The backbone weight files of a checkpoint; InputError naming the first missing file."""
    root = Path(checkpoint)
    if not root.is_dir():
        raise InputError(root, "checkpoint directory not found", _FIX)
    folder = root / TRANSFORMER_DIR
    if not (folder / "config.json").is_file():
        raise InputError(folder / "config.json", "missing from the checkpoint", _FIX)
    index = folder / _INDEX
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise InputError(index, f"not a safetensors index ({err})", _FIX) from err
        shards = [folder / name for name in sorted(set(weight_map.values()))]
        for shard in shards:
            if not shard.is_file():
                raise InputError(shard, "missing from the checkpoint (listed in the index)", _FIX)
        return shards
    if (folder / _SINGLE).is_file():
        return [folder / _SINGLE]
    raise InputError(folder / _SINGLE, f"missing from the checkpoint (and no {_INDEX})", _FIX)


def read_soul_config(checkpoint: str | Path) -> dict[str, Any] | None:
    """The `audio_*` kwargs saved in `soul/config.json`, or None when the file is absent."""
    path = Path(checkpoint) / SOUL_DIR / SOUL_CONFIG
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON ({err})", _FIX) from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(path, f"not a Soul layer config (format must be {FORMAT!r})", _FIX)
    return {k: v for k, v in data.items() if k.startswith("audio_")}


def load_transformer(
    checkpoint: str | Path,
    *,
    config: SoulConfig | None = None,
    dtype: torch.dtype = torch.bfloat16,
    device: torch.device | str = "cpu",
) -> SoulTransformer3DModel:
    """Load the backbone through diffusers, then Soul's layers (zero-initialised if not saved).

    `config` supplies the audio settings when the checkpoint has no `soul/config.json` (e.g. the
    untouched official download); a saved `soul/config.json` always wins, since the saved layer
    weights were built with it.
    """
    root = Path(checkpoint)
    check_transformer_files(root)
    weights = root / SOUL_DIR / SOUL_WEIGHTS
    audio_kwargs = read_soul_config(root)
    if audio_kwargs is None:
        if weights.is_file():
            raise InputError(root / SOUL_DIR / SOUL_CONFIG, f"missing (needed to read {weights.name})", _FIX)
        if config is None:
            raise InputError(root / SOUL_DIR / SOUL_CONFIG, "missing and no preset given for the audio layers", "pass a preset, e.g. --preset wan22-ti2v-5b")
        audio_kwargs = soul_kwargs(config)
    backbone = WanTransformer3DModel.from_pretrained(root / TRANSFORMER_DIR, torch_dtype=dtype)
    model = SoulTransformer3DModel.from_backbone(backbone, **audio_kwargs)
    del backbone
    if weights.is_file():
        model.load_soul_state_dict(load_file(str(weights)), source=str(weights))
    model.to(device)
    _own_cpu_storage(model)
    return model.eval()


@torch.no_grad()
def _own_cpu_storage(model: torch.nn.Module) -> None:
    """Replace memory-mapped CPU weights by owned copies, one tensor at a time.

    safetensors maps the file and hands out tensors at arbitrary byte offsets; CPU kernels pick a
    different (equally valid) summation path for unaligned data, so a reloaded model would differ
    from the saved one in the last bit and would keep the file mapped. Copying tensor by tensor
    costs one tensor of extra memory at a time.
    """
    for param in model.parameters():
        if param.device.type == "cpu":
            param.data = param.data.clone()


def save_checkpoint(
    model: SoulTransformer3DModel,
    checkpoint: str | Path,
    *,
    max_shard_size: str = "5GB",
) -> Path:
    """Write `transformer/` with diffusers' `save_pretrained` and Soul's layers to `soul/`."""
    from accelerate import init_empty_weights

    root = Path(checkpoint)
    root.mkdir(parents=True, exist_ok=True)
    # A plain diffusers model sharing the backbone tensors (assign, no copy), so transformer/ is
    # byte-for-byte what diffusers writes and carries no Soul keys.
    with init_empty_weights():
        backbone = WanTransformer3DModel(**model.backbone_config())
    backbone.load_state_dict(model.backbone_state_dict(), strict=True, assign=True)
    backbone.save_pretrained(root / TRANSFORMER_DIR, safe_serialization=True, max_shard_size=max_shard_size)

    soul_dir = root / SOUL_DIR
    soul_dir.mkdir(exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.soul_state_dict().items()}
    save_file(tensors, str(soul_dir / SOUL_WEIGHTS), metadata={"format": "pt", "soul_format": FORMAT})
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "backbone_class": "WanTransformer3DModel", **model.soul_config()}
    (soul_dir / SOUL_CONFIG).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return root
