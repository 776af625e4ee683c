"""Training logs: `metrics.jsonl` always, TensorBoard when the package is installed.

JSON lines are the record a script can read back (tests, plots, the closing numbers of a run);
TensorBoard is for people watching a run. A resumed run appends, dropping lines past the resume
step so the log never shows two different losses for one step.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F


class MetricsLogger:
    def __init__(self, directory: str | Path, resume_step: int = 0, tensorboard: bool = True) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "metrics.jsonl"
        if self.path.exists():
            kept = [ln for ln in self.path.read_text().splitlines() if ln.strip() and json.loads(ln).get("step", 0) <= resume_step]
            self.path.write_text("".join(ln + "\n" for ln in kept))
        self._fh = open(self.path, "a", encoding="utf-8")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(self.directory / "tensorboard"), purge_step=resume_step + 1 if resume_step else None)
            except ImportError:  # tensorboard is optional (extra `train`); the JSONL log is the record
                self._tb = None

    def log(self, step: int, values: dict[str, Any]) -> None:
        record = {"step": step, **{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in values.items()}}
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a `metrics.jsonl`."""
    return [json.loads(ln) for ln in Path(path).read_text().splitlines() if ln.strip()]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two frame tensors in model range [-1, 1] (peak-to-peak 2, i.e. 0..255 pixels).

    Both are clamped to [-1, 1] first, because that is what becomes pixels: an unclamped decoder's
    overshoot must not count as error. The one definition every VAE report uses (the miniature VAE
    trainer, the light-decoder distiller), so their numbers compare; an exact match gives a finite
    ~126 dB (the MSE is floored at 1e-12) rather than infinity.
    """
    mse = float(F.mse_loss(a.clamp(-1, 1), b.clamp(-1, 1)))
    return 10 * math.log10(4.0 / max(mse, 1e-12))
