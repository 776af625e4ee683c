"""Weights that ship inside the package: one flat float16 safetensors file per set, plus its JSON.

Why a single flat file: the package ships `models/weights/*.safetensors` and `*.json` only (no
sub-directories, no tokenizer or YAML files), and a `save_pretrained` directory needs all of
those. A set of shipped weights is therefore `<name>.safetensors`, whose keys are prefixed by
component (`transformer.`, `vae.`, `audio_encoder.`, `text_encoder.` and, when there is one,
`light_vae.`), plus `<name>.json` with the VAE's latent statistics, the light decoder's config and
how the weights were made and measured. A set may extend a `base` set (only differing tensors are
stored). A preset names its set with `weights:`; `soul.pipelines.shipped` loads one into a
pipeline and `soul.miniature.model.pack` writes one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from soul.errors import InputError

WEIGHTS_DIR = Path(__file__).parent / "weights"
LIGHT_VAE = "light_vae"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def shipped_files(name: str, weights_dir: str | Path = WEIGHTS_DIR) -> tuple[Path, Path]:
    """`<name>.safetensors` and `<name>.json` in `weights_dir`; the name must be a plain file stem."""
    if not _NAME.match(name):
        raise InputError(f"weights {name!r}", "is not a plain name", "use letters, digits, '.', '_' or '-', e.g. mini-fast")
    root = Path(weights_dir)
    return root / f"{name}.safetensors", root / f"{name}.json"


def has_shipped_weights(name: str, weights_dir: str | Path = WEIGHTS_DIR) -> bool:
    """True when the weights called `name` are installed (both files) in `weights_dir`."""
    return all(p.is_file() for p in shipped_files(name, weights_dir))


def shipped_info(name: str, weights_dir: str | Path = WEIGHTS_DIR) -> dict[str, Any]:
    """The JSON record of shipped weights `name`, with a clear error when they are not installed."""
    weights_file, info_file = shipped_files(name, weights_dir)
    for path in (weights_file, info_file):
        if not path.is_file():
            raise InputError(path, f"the trained weights {name!r} are not installed", "train them (docs/miniature.md) or use --preset tiny")
    return json.loads(info_file.read_text(encoding="utf-8"))


def shipped_tensors(name: str, weights_dir: str | Path, _seen: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """The tensors of shipped weights `name`, over those of its `base` (recorded by `pack`)."""
    weights_file, info_file = shipped_files(name, weights_dir)
    base = shipped_info(name, weights_dir).get("base")
    if base in (*_seen, name):
        raise InputError(info_file, f"weights {name!r} name themselves as their own base", "re-pack them with another --base")
    tensors = shipped_tensors(base, weights_dir, (*_seen, name)) if base else {}
    tensors.update(load_file(str(weights_file)))
    return tensors
