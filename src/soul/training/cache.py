"""Disk caches of frozen-encoder outputs: umT5 text embeddings, wav2vec2 features, VAE latents.

At 5B scale the frozen encoders cost as much as the trained step (umT5-xxl is 5.7 B parameters),
and their outputs for a given caption, audio window or video window never change, so they are
computed once and read back. Keys are content hashes of exactly what the encoder saw (plus the
preset name, so two model sizes never share entries); files are written atomically so concurrent
processes of a distributed run can share one cache directory.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file


class FeatureCache:
    """`get_or_compute(kind, key_parts, fn)` returns the cached tensor or computes and stores it."""

    def __init__(self, directory: str | Path, namespace: str) -> None:
        self.directory = Path(directory)
        self.namespace = namespace
        self.hits = 0
        self.misses = 0

    def _key(self, kind: str, parts: tuple) -> Path:
        digest = hashlib.sha256()
        digest.update(self.namespace.encode())
        digest.update(kind.encode())
        for part in parts:
            if isinstance(part, np.ndarray):
                digest.update(str(part.shape).encode())
                digest.update(np.ascontiguousarray(part).tobytes())
            else:
                digest.update(repr(part).encode())
        name = digest.hexdigest()
        return self.directory / kind / name[:2] / f"{name}.safetensors"

    def get_or_compute(self, kind: str, parts: tuple, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        path = self._key(kind, parts)
        if path.exists():
            self.hits += 1
            return load_file(str(path))["value"]
        self.misses += 1
        value = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({"value": value.detach().contiguous().cpu()}, str(tmp))
        os.replace(tmp, path)
        return value
