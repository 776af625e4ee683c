"""Run under torchrun (or alone): a few training steps of the tiny preset with the trainer as it is.

Usage: python fsdp_train.py DATA_DIR OUT_DIR BATCH_PER_PROCESS STEPS

The config (``tiny_config``) says ``distributed: fsdp`` and ``gradient_checkpointing: true``, as
the 5B stage-2 config does; with one process the trainer runs the plain module. Writes into
OUT_DIR (rank 0 unless named per rank):
- ``losses.json``: the per-step records of ``Trainer.train()`` (loss, grad_norm, ...);
- ``run/``: the trainer's output (checkpoints every 2 steps, metrics, ``export/`` at the end);
- ``gathered.safetensors``: the whole state dict gathered after training (``Trainer.full_state_dict``);
- ``shard-<rank>.safetensors`` + ``shard-<rank>.json`` (every rank, FSDP only): each rank's local
  shard of every parameter and its placement, so a test can reassemble the weights without the
  gather;
- ``resumed-losses.json``: only when OUT_DIR/resumed/checkpoints/ was filled beforehand (e.g. with
  another layout's checkpoint): a second trainer resumes from it and runs to STEPS.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

torch.set_num_threads(1)

from soul.training.config import ConditioningConfig, DataConfig, OptimConfig, TrainConfig  # noqa: E402
from soul.training.trainer import Trainer  # noqa: E402


def tiny_config(data_dir: str | Path, output: str | Path, batch: int, steps: int) -> TrainConfig:
    return TrainConfig(
        preset="tiny",
        trainable="all",
        data=DataConfig(path=str(data_dir), num_frames=9, fps=16, buckets=[(64, 64)]),
        conditioning=ConditioningConfig(max_prefix_latents=1, mouth_weight=2.0),
        optim=OptimConfig(lr=2e-3, warmup_steps=2, batch_size=batch),
        max_steps=steps,
        checkpoint_every=2,
        gradient_checkpointing=True,
        distributed="fsdp",
        output=str(output),
    )


def main() -> None:
    data_dir, out, batch, steps = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    out.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(tiny_config(data_dir, out / "run", batch, steps))
    history = trainer.train()
    gathered = trainer.full_state_dict()  # collective under FSDP: every rank calls it
    if trainer.sharded:
        from torch.distributed.tensor import DTensor

        local, placements = {}, {}
        for name, p in trainer.transformer.named_parameters():
            assert isinstance(p, DTensor), name
            local[name] = p.to_local().detach().contiguous().clone()
            placements[name] = {"placements": [str(x) for x in p.placements], "shape": list(p.shape)}
        save_file(local, str(out / f"shard-{trainer.ctx.rank}.safetensors"))
        (out / f"shard-{trainer.ctx.rank}.json").write_text(json.dumps(placements))
    if trainer.ctx.is_main:
        save_file({k: v.contiguous() for k, v in gathered.items()}, str(out / "gathered.safetensors"))
        (out / "losses.json").write_text(json.dumps(history))
    if (out / "resumed" / "checkpoints").is_dir():
        resumed = Trainer(tiny_config(data_dir, out / "resumed", batch, steps), resume=True)
        start = resumed.step
        records = resumed.train()
        if resumed.ctx.is_main:
            (out / "resumed-losses.json").write_text(json.dumps({"start": start, "history": records}))
    if trainer.ctx.world_size > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
