"""Run under torchrun (or alone): one training step's averaged gradients, saved by rank 0.

Usage: python dist_grads.py DATA_DIR OUT.safetensors BATCH_PER_PROCESS
"""

from __future__ import annotations

import sys

import torch
from safetensors.torch import save_file

torch.set_num_threads(1)

from soul.training.config import DataConfig, OptimConfig, TrainConfig  # noqa: E402
from soul.training.trainer import Trainer  # noqa: E402


def main() -> None:
    data_dir, out, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cfg = TrainConfig(
        preset="tiny",
        trainable="all",
        data=DataConfig(path=data_dir, num_frames=9, fps=16, buckets=[(64, 64)]),
        optim=OptimConfig(lr=1e-3, batch_size=batch),
        max_steps=1,
        output=str(out) + ".run",
    )
    trainer = Trainer(cfg)
    indices = trainer.sample_indices(0, 0)
    losses = trainer.sample_losses(trainer.load_samples(indices), indices)
    print("rank", trainer.ctx.rank, indices, losses.tolist(), flush=True)
    losses.mean().backward()  # DDP averages across processes during backward
    if trainer.ctx.is_main:
        grads = {n: p.grad.detach().clone() for n, p in trainer.transformer.named_parameters() if p.grad is not None}
        save_file(grads, out)
    if trainer.ctx.world_size > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
