"""Training checkpoints: atomic, keep-last-K, and complete enough that a resume is exact.

A resumed run must produce the same losses as an uninterrupted one, so a checkpoint holds not only
the trainable weights but the optimiser, the LR schedule, every RNG (python, numpy, torch, the
data sampler's) and the data position. It is written to a temporary directory and renamed, so a
crash mid-write leaves the previous checkpoint as the latest one.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

STEP_PREFIX = "step-"
WEIGHTS_FILE = "trainable.safetensors"
STATE_FILE = "state.pt"
META_FILE = "meta.json"


def rng_state() -> dict[str, Any]:
    """Every global RNG a training step can touch."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointManager:
    """Writes `DIR/step-000000123/` checkpoints and finds the newest complete one."""

    def __init__(self, directory: str | Path, keep_last: int = 3) -> None:
        if keep_last < 1:
            raise ValueError("keep_last must be >= 1")
        self.directory = Path(directory)
        self.keep_last = keep_last

    def path_for(self, step: int) -> Path:
        return self.directory / f"{STEP_PREFIX}{step:09d}"

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (a directory counts once its meta file exists)."""
        if not self.directory.is_dir():
            return []
        found = [p for p in self.directory.iterdir() if p.is_dir() and p.name.startswith(STEP_PREFIX) and (p / META_FILE).exists()]
        return sorted(found, key=lambda p: int(p.name[len(STEP_PREFIX):]))

    def latest(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def save(self, step: int, weights: dict[str, torch.Tensor], state: dict[str, Any], meta: dict[str, Any]) -> Path:
        """Write atomically: temporary directory, fsync'd files, then one rename."""
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.path_for(step)
        tmp = self.directory / f".tmp-{final.name}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(tmp / WEIGHTS_FILE))
        torch.save(state, tmp / STATE_FILE)
        (tmp / META_FILE).write_text(json.dumps({"step": step, **meta}, indent=2, default=str))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        self._prune()
        return final

    def load(self, path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
        path = Path(path)
        weights = load_file(str(path / WEIGHTS_FILE))
        state = torch.load(path / STATE_FILE, weights_only=False)
        meta = json.loads((path / META_FILE).read_text())
        return weights, state, meta

    def _prune(self) -> None:
        for old in self.checkpoints()[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in self.directory.glob(".tmp-*"):
            if stale.is_dir() and not stale.name.endswith(f"-{os.getpid()}"):
                shutil.rmtree(stale, ignore_errors=True)
