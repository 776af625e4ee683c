"""`soul train`: flow-matching training of Soul from a YAML config, resumable, single or multi-process."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from soul.cli.app import app, state


@app.command(
    help=(
        "Train Soul with flow matching from a YAML config (configs/train/*.yaml): audio layers only, "
        "all weights, or LoRA; data from `soul data` shards. Checkpoints are atomic; --resume continues "
        "from the newest one exactly. Multi-GPU / multi-node: launch the same command with torchrun "
        "(DDP or FSDP2, set `distributed:` in the config).\n\n"
        "Examples:\n\n  soul train configs/train/tiny.yaml --max-steps 50\n\n"
        "  torchrun --nproc_per_node 8 -m soul train configs/train/wan22-5b-stage1-audio.yaml --resume"
    )
)
def train(
    config: Path = typer.Argument(..., help="Training YAML."),
    max_steps: int = typer.Option(None, "--max-steps", help="Stop after this many optimiser steps (overrides the config)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in the output directory."),
    output: Path = typer.Option(None, "--output", "-o", help="Run directory (overrides the config's `output`)."),
    data: Path = typer.Option(None, "--data", help="Dataset directory (overrides data.path)."),
    threads: int = typer.Option(None, "--threads", help="CPU threads for torch (small models on CPU: 1 is often fastest)."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary at the end."),
) -> None:
    from soul.cli.progress import step_progress
    from soul.training.config import load_train_config
    from soul.training.trainer import Trainer

    if threads is not None:
        import torch

        torch.set_num_threads(max(1, threads))
    cfg = load_train_config(config, {"max_steps": max_steps, "output": str(output) if output else None})
    if data is not None:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"path": str(data)})})
    trainer = Trainer(cfg, resume=resume)
    show = trainer.ctx.is_main and not (state.quiet or json_out)
    with step_progress("training", enabled=show) as progress:
        history = trainer.train(progress=progress)
    if not trainer.ctx.is_main:
        return
    losses = [h["loss"] for h in history]
    summary = {
        "output": str(trainer.output),
        "step": trainer.step,
        "steps_run": len(history),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "nonfinite_steps": trainer.nonfinite,
        "checkpoint": str(trainer.checkpoints.latest()) if trainer.checkpoints.latest() else None,
    }
    if json_out:
        typer.echo(json.dumps(summary, indent=2))
    elif not state.quiet:
        typer.echo(f"trained to step {trainer.step} in {trainer.output} (loss {summary['first_loss']} -> {summary['last_loss']})")
