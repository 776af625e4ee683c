"""`soul distill`: the speed students (DESIGN 5): light VAE decoder, CFG and step distillation."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from soul.cli.app import app, state

if TYPE_CHECKING:
    import torch

distill_app = typer.Typer(
    name="distill",
    help=(
        "Train the fast path's students from a YAML config (configs/distill/*.yaml): `vae` (light "
        "decoder imitating the full Wan decoder), `cfg` (one pass = the teacher's guided velocity), "
        "`steps` (few-step x0-renoise student at the config's timesteps, e.g. 1000, 500), `dmd` (the same kind of "
        "student by distribution matching, DMD2). Generate with them via "
        "SoulPipeline(..., vae='light', guidance=False, sampler='x0', sigmas=...)."
    ),
    no_args_is_help=True,
)
app.add_typer(distill_app, name="distill")


def _report(summary: dict[str, Any], json_out: bool, line: str) -> None:
    if json_out:
        typer.echo(json.dumps(summary, indent=2, default=str))
    elif not state.quiet:
        typer.echo(line)


@distill_app.command("vae")
def vae_cmd(
    config: Path = typer.Argument(..., help="Light-decoder YAML, e.g. configs/distill/tiny-vae.yaml."),
    max_steps: int = typer.Option(None, "--max-steps", help="Stop after this many steps (overrides the config)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in the output directory."),
    output: Path = typer.Option(None, "--output", "-o", help="Run directory (overrides the config's `output`)."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary at the end."),
) -> None:
    """Train the light decoder on latents of drawn clips to reproduce the full decoder's frames.

    Example: soul distill vae configs/distill/tiny-vae.yaml --max-steps 50
    The decoder is written to OUTPUT/light_vae/; copy it to CHECKPOINT/soul/light_vae/ to use it.
    """
    from soul.cli.progress import step_progress
    from soul.training.config import load_yaml_config
    from soul.miniature.clips import draw_clip
    from soul.training.distill_vae import LIGHT_VAE_OUTPUT, DistillVAEConfig, VAEDistiller

    cfg = load_yaml_config(config, DistillVAEConfig, {"max_steps": max_steps, "output": str(output) if output else None}, example="configs/distill/tiny-vae.yaml")
    sampled = _sampled_latents(cfg) if cfg.sampled_from else None
    distiller = VAEDistiller(cfg, lambda seed: draw_clip(seed, cfg.seconds, cfg.fps, cfg.size).frames, resume=resume, sampled=sampled)
    with step_progress("distilling light VAE", enabled=not (state.quiet or json_out)) as progress:
        history = distiller.train(progress=progress)
    last = history[-1] if history else {}
    summary = {
        "output": str(distiller.output / LIGHT_VAE_OUTPUT),
        "step": distiller.step,
        "first_loss": history[0]["loss"] if history else None,
        "last_loss": last.get("loss"),
        "eval_psnr_vs_full": last.get("eval_psnr_vs_full"),
    }
    _report(summary, json_out, f"light decoder at step {distiller.step} in {summary['output']} (loss {summary['first_loss']} -> {summary['last_loss']}, PSNR vs full {summary['eval_psnr_vs_full']})")


def _sampled_latents(cfg: Any) -> Callable[[int], torch.Tensor]:
    """The latents a pipeline samples for drawn faces of training seeds (``sampled_from``), with the
    preset's own sampling: `soul.miniature.sampled`."""
    import torch

    from soul.miniature.sampled import sample_drawn_latents
    from soul.pipelines.soul_pipeline import SoulPipeline

    pipe = SoulPipeline.from_pretrained(cfg.sampled_from, preset=cfg.sampled_preset or cfg.preset, torch_dtype=torch.float32)
    return lambda seed: sample_drawn_latents(pipe, seed, cfg.sampled_frames, cfg.fps, cfg.size)[1]


def _transformer_cmd(kind: str, config: Path, max_steps: int | None, resume: bool, output: Path | None, data: Path | None, json_out: bool) -> None:
    from soul.cli.progress import step_progress
    from soul.training.distill import CFGDistiller, DMDDistiller, StepDistiller, describe, load_distill_config

    cfg = load_distill_config(config, kind, {"max_steps": max_steps, "output": str(output) if output else None})
    if data is not None:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"path": str(data)})})
    trainer = {"cfg": CFGDistiller, "steps": StepDistiller, "dmd": DMDDistiller}[kind](cfg, resume=resume)
    show = trainer.ctx.is_main and not (state.quiet or json_out)
    with step_progress(describe(cfg), enabled=show) as progress:
        history = trainer.train(progress=progress)
    if not trainer.ctx.is_main:
        return
    losses = [h["loss"] for h in history]
    summary = {
        "output": str(trainer.output),
        "step": trainer.step,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "export": str(trainer.output / "export") if trainer.step >= cfg.max_steps else None,
    }
    _report(summary, json_out, f"{describe(cfg)}: step {trainer.step} in {trainer.output} (loss {summary['first_loss']} -> {summary['last_loss']})")


@distill_app.command("cfg")
def cfg_cmd(
    config: Path = typer.Argument(..., help="CFG-distillation YAML, e.g. configs/distill/tiny-cfg.yaml."),
    max_steps: int = typer.Option(None, "--max-steps", help="Stop after this many steps (overrides the config)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in the output directory."),
    output: Path = typer.Option(None, "--output", "-o", help="Run directory (overrides the config's `output`)."),
    data: Path = typer.Option(None, "--data", help="Dataset directory (overrides data.path)."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary at the end."),
) -> None:
    """A student whose one pass matches the teacher's three-pass guided velocity.

    Example: soul distill cfg configs/distill/tiny-cfg.yaml --max-steps 50
    Generate with the exported student and guidance off (guidance=False).
    """
    _transformer_cmd("cfg", config, max_steps, resume, output, data, json_out)


@distill_app.command("steps")
def steps_cmd(
    config: Path = typer.Argument(..., help="Step-distillation YAML, e.g. configs/distill/tiny-steps.yaml."),
    max_steps: int = typer.Option(None, "--max-steps", help="Stop after this many steps (overrides the config)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in the output directory."),
    output: Path = typer.Option(None, "--output", "-o", help="Run directory (overrides the config's `output`)."),
    data: Path = typer.Option(None, "--data", help="Dataset directory (overrides data.path)."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary at the end."),
) -> None:
    """A few-step student for the x0-renoise sampler (trajectory distillation to the teacher's ODE endpoint).

    Example: soul distill steps configs/distill/tiny-steps.yaml --max-steps 50
    Generate with sampler='x0', sigmas at the config's timesteps / 1000 (default [1.0, 0.75, 0.5, 0.25]) and guidance off.
    """
    _transformer_cmd("steps", config, max_steps, resume, output, data, json_out)


@distill_app.command("dmd")
def dmd_cmd(
    config: Path = typer.Argument(..., help="DMD step-distillation YAML, e.g. configs/distill/tiny-dmd.yaml."),
    max_steps: int = typer.Option(None, "--max-steps", help="Stop after this many steps (overrides the config)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the newest checkpoint in the output directory (student and fake score)."),
    output: Path = typer.Option(None, "--output", "-o", help="Run directory (overrides the config's `output`)."),
    data: Path = typer.Option(None, "--data", help="Dataset directory (overrides data.path)."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary at the end."),
) -> None:
    """A few-step x0-renoise student by distribution matching (DMD2: teacher = real score, a trained fake score).

    Example: soul distill dmd configs/distill/tiny-dmd.yaml --max-steps 50
    Generate with sampler='x0', sigmas at the config's timesteps / 1000 (e.g. [1.0, 0.5]) and guidance off.
    """
    _transformer_cmd("dmd", config, max_steps, resume, output, data, json_out)
