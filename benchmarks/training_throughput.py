"""Training throughput and memory: the tiny config measured here, the 5B plan computed.

Run: .venv/bin/python benchmarks/training_throughput.py [--steps 20]
Prints samples/s and peak RSS for the tiny config on drawn clips, then the per-GPU memory plan
of each Wan2.2-TI2V-5B stage on 8 GPUs (parameters, gradients, optimiser states, activations).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from soul.config import load_preset
    from soul.miniature.clips import write_clip_shards
    from soul.training.config import DataConfig, OptimConfig, TrainConfig
    from soul.training.memory_plan import plan_memory
    from soul.training.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_clip_shards(data, num_clips=8, seconds=2.0, fps=16, size=64, seed=0)
        cfg = TrainConfig(
            preset="tiny", trainable="all",
            data=DataConfig(path=str(data), num_frames=17, fps=16, buckets=[(64, 64)]),
            optim=OptimConfig(lr=1e-3, batch_size=2), max_steps=args.steps + 2, checkpoint_every=10_000,
            output=str(Path(tmp) / "run"),
        )
        trainer = Trainer(cfg)
        trainer.train(max_steps=2)  # warm-up: first calls pay one-off costs
        start = time.perf_counter()
        trainer.train(max_steps=args.steps + 2)
        elapsed = time.perf_counter() - start
    samples = args.steps * cfg.optim.batch_size
    print(f"tiny config (17 frames 64x64, batch 2, {args.threads} thread): {samples / elapsed:.2f} samples/s, {elapsed / args.steps:.3f} s/step, peak RSS {peak_rss_mb():.0f} MB")

    config = load_preset("wan22-ti2v-5b")
    print("\nWan2.2-TI2V-5B per-GPU memory plan (batch 1 per GPU, 704x1280, 121 frames, bf16 compute, gradient checkpointing, encoder outputs cached):")
    header = f"{'stage':<28}{'sharding':<9}{'GPUs':>5}{'trainable':>13}{'weights':>9}{'grads':>8}{'optim':>8}{'block':>7}{'activ.':>8}{'total GB':>10}"
    print(header)
    for name, trainable, sharding in (("stage 1 (audio layers)", "audio", "ddp"), ("stage 2 (all, FSDP)", "all", "fsdp"), ("stage 2 (LoRA r64)", "lora", "ddp"), ("stage 2 (all, DDP)", "all", "ddp")):
        p = plan_memory(config, trainable=trainable, sharding=sharding, gpus=8)
        print(f"{name:<28}{sharding:<9}{p.gpus:>5}{p.trainable_params / 1e9:>12.3f}B{p.weights_gb:>9.1f}{p.gradients_gb:>8.1f}{p.optimizer_gb:>8.1f}{p.gathered_block_gb:>7.1f}{p.activations_gb:>8.1f}{p.total_gb:>10.1f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
