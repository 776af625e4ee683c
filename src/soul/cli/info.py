"""`soul info`: what a preset costs before any weight is downloaded."""

from __future__ import annotations

import json

import typer

from soul.cli.app import app, state


def _human(n: float, unit: str = "") -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {suffix}{unit}"
    return f"{n:.0f} {unit}".rstrip()


def _gib(n: int) -> str:
    for power, suffix in ((3, "GiB"), (2, "MiB"), (1, "KiB")):
        if n >= 1024**power:
            return f"{n / 1024**power:.2f} {suffix}"
    return f"{n} B"


@app.command(
    help=(
        "Parameter counts per component, token counts and memory estimates for a preset, computed "
        "from the real model classes built without weights (no download, a few seconds).\n\n"
        "Examples:\n\n  soul info --preset wan22-ti2v-5b\n\n"
        "  soul info --preset wan22-ti2v-5b --height 480 --width 832 --frames 81 --json\n\n"
        "  soul info --preset wan22-ti2v-5b --parallel-plan   (memory, communication and estimated time on 1-8 GPUs)"
    )
)
def info(
    preset: str = typer.Option("wan22-ti2v-5b", "--preset", "-p", help="Preset name (tiny, wan22-ti2v-5b) or a YAML file."),
    height: int | None = typer.Option(None, "--height", help="Video height in pixels (default: the preset's)."),
    width: int | None = typer.Option(None, "--width", help="Video width in pixels (default: the preset's)."),
    frames: int | None = typer.Option(None, "--frames", help="Frames per chunk, 4k+1 (default: the preset's)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object with every number and how it was estimated."),
    parallel: bool = typer.Option(
        False, "--parallel-plan",
        help="Plan inference over several GPUs (soul generate --parallel ulysses=U,cfg=C): tokens, weights, activations and bytes sent per rank, and an estimated time relative to 1 GPU; a Markdown table (with --json: a 'parallel_plan' section).",
    ),
    gpus: str = typer.Option("1,2,4,8", "--gpus", help="GPU counts to plan for (--parallel-plan), comma-separated."),
    tflops: float = typer.Option(400.0, "--tflops", help="Assumed sustained bf16 TFLOP/s of one GPU (--parallel-plan's time estimate)."),
    link_gbs: float = typer.Option(200.0, "--link-gbs", help="Assumed GB/s one GPU sends in all-to-all / all-gather (NVLink ~200, PCIe ~25)."),
) -> None:
    from soul.config import load_preset
    from soul.errors import InputError
    from soul.models.info import Hardware, model_info, parallel_plan, parallel_plan_markdown

    config = load_preset(preset)
    report = model_info(config, height, width, frames)
    if parallel:
        from soul.sampling.settings import resolve_sampling

        try:
            counts = tuple(int(g) for g in gpus.split(",") if g.strip())
        except ValueError:
            counts = ()
        if not counts or min(counts) < 1:
            raise InputError("--gpus", f"{gpus!r}", "give positive whole numbers, e.g. 1,2,4,8")
        if tflops <= 0 or link_gbs <= 0:
            raise InputError("--tflops/--link-gbs", "must be positive", "e.g. --tflops 400 --link-gbs 200")
        settings = resolve_sampling(config, height=report["video"]["height"], width=report["video"]["width"])
        plan = parallel_plan(
            config, passes=settings.guidance.num_passes(has_audio=True), steps=settings.steps,
            height=report["video"]["height"], width=report["video"]["width"], frames=report["video"]["frames"],
            gpus=counts, hardware=Hardware(tflops=tflops, link_gbs=link_gbs),
        )
        if json_out:
            print(json.dumps({**report, "parallel_plan": plan}, indent=2))
            return
        video, hw = plan["video"], plan["hardware"]
        print(
            f"{plan['preset']}: one {video['width']}x{video['height']}, {video['frames']}-frame chunk = {plan['tokens']['video_tokens']} tokens, "
            f"{plan['passes_per_step']} guidance passes x {plan['steps']} steps; {plan['dtype']}; time assumes {hw['tflops']:g} TFLOP/s and "
            f"{hw['link_gbs']:g} GB/s per GPU, {hw['latency_us']:g} us per collective (an estimate, not a measurement)\n"
        )
        print(parallel_plan_markdown(plan))
        return
    if json_out:
        print(json.dumps(report, indent=2))
        return

    from rich.console import Console
    from rich.table import Table

    console = Console()
    video = report["video"]
    if not state.quiet:
        console.print(f"[bold]{report['preset']}[/bold] at {video['width']}x{video['height']}, {video['frames']} frames ({video['seconds']} s at {video['fps']} fps)")
    params = Table("component", "parameters", "bf16", "fp32", title="Parameters")
    weights = report["memory_bytes"]["weights"]
    for key in ("backbone", "soul_audio_layers", "vae", "text_encoder", "audio_encoder", "total"):
        params.add_row(key, _human(report["parameters"][key]), _gib(weights["bf16"][key]), _gib(weights["fp32"][key]))
    console.print(params)
    tokens = Table("quantity", "value", title="Tokens")
    for key, value in report["tokens"].items():
        tokens.add_row(key, str(value))
    console.print(tokens)
    memory = Table("activation (one pass, bf16)", "bytes", title="Memory estimate")
    for key, value in report["memory_bytes"]["activations_per_pass"]["bf16"].items():
        memory.add_row(key, _gib(value))
    memory.add_row("denoiser weights + one pass", _gib(report["memory_bytes"]["denoise_pass_bf16_fused_attention"]))
    console.print(memory)
    if not state.quiet:
        console.print("Details and assumptions: soul info --json (memory_notes).")
