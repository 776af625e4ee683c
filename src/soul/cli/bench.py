"""`soul bench`: Soul-Bench-compatible suites, generation runs, scoring and reports."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from soul.cli.app import app, state

bench_app = typer.Typer(
    name="bench",
    help=(
        "Benchmark methods on a suite in the Soul-Bench layout (<id>.png, <id>.wav, <id>.json with en_prompt).\n\n"
        "  soul bench make-suite ../shared/media suites/media\n\n"
        "  soul bench run suites/media --method soul:tiny --out runs/soul-tiny\n\n"
        "  soul bench score suites/media runs/soul-tiny --out scores/soul-tiny\n\n"
        "  soul bench report scores/soul-tiny scores/other --out report/"
    ),
    no_args_is_help=True,
)
app.add_typer(bench_app, name="bench")


def _say(text: str) -> None:
    if not state.quiet:
        typer.echo(text, err=True)


@bench_app.command("make-suite", help="Build the small suite from the shared media folder (portrait, upper body, full body; short and 1-minute cases).")
def make_suite(
    media: Path = typer.Argument(..., help="The shared media folder (portraits/, audio/)."),
    out: Path = typer.Argument(..., help="Suite folder to write."),
    short_only: bool = typer.Option(False, "--short-only", help="Leave out the 1-minute cases."),
) -> None:
    from soul.bench.media_suite import build_media_suite

    cases = build_media_suite(media, out, include_long=not short_only)
    for c in cases:
        typer.echo(f"{c.id}\t{c.category}\t{'long' if c.long else 'short'}")


@bench_app.command(
    "run",
    help=(
        "Generate <id>.mp4 for every case into --out with one method. Finished cases are skipped, so an "
        "interrupted run continues when started again (--force redoes them).\n\n"
        "  --method soul[:PRESET]  Soul itself (default preset wan22-ti2v-5b, which needs downloaded weights; soul:mini for the shipped miniature model, soul:tiny for random weights).\n\n"
        "  --method-cmd TEMPLATE   any system: {image} {audio} {prompt} {output} (and {id}) are filled in, shell-quoted; {speaker_audio} gives a multi-person case's tracks (one per person, left to right), {audio} its mix."
    ),
)
def run(
    suite: Path = typer.Argument(..., help="Suite folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for <id>.mp4 outputs and run_log.json."),
    method: str = typer.Option(None, "--method", help="soul or soul:PRESET."),
    method_cmd: str = typer.Option(None, "--method-cmd", help="External command template."),
    name: str = typer.Option(None, "--name", help="Method name for reports (default: soul-PRESET or external)."),
    seed: int = typer.Option(0, "--seed", help="Seed for Soul."),
    case: list[str] = typer.Option(None, "--case", help="Only these case ids (repeatable)."),
    force: bool = typer.Option(False, "--force", help="Regenerate finished cases."),
) -> None:
    from soul.bench.run import parse_method, run_suite
    from soul.errors import RuntimeFailure

    m = parse_method(method, method_cmd, name=name, seed=seed)
    log = run_suite(suite, m, out, force=force, only=case or None,
                    progress=lambda cid, n, total, what: _say(f"[{n + 1}/{total}] {cid}: {what}"))
    failed = {k: v for k, v in log["cases"].items() if v.get("status") == "failed"}
    for k, v in failed.items():
        _say(f"failed {k}: {v.get('error')}")
    typer.echo(f"{len(log['cases']) - len(failed)} done, {len(failed)} failed -> {out}")
    if failed:
        raise RuntimeFailure(f"{len(failed)} case(s) failed; see {out / 'run_log.json'}")


@bench_app.command(
    "score",
    help=(
        "Score OUTPUTS/<id>.mp4 against the suite: writes evaluation_results.json (Soul-Bench's shape plus our "
        "soul_offline group) and scores.json into --out. Offline metrics always run; weighted ones run when "
        "their weights are given and are otherwise listed as skipped with the file they need."
    ),
)
def score(
    suite: Path = typer.Argument(..., help="Suite folder."),
    outputs: Path = typer.Argument(..., help="Folder of <id>.mp4 generated videos."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the results."),
    name: str = typer.Option(None, "--name", help="Method name (default: the outputs folder's name)."),
    metrics: str = typer.Option(",".join(("identity", "lmsync", "quality", "flicker", "av_align", "curves", "people")), "--metrics",
                                help="Offline metric groups, comma separated."),
    syncnet: Path = typer.Option(None, "--syncnet", help="syncnet_v2.model (joonson/syncnet_python)."),
    arcface_root: Path = typer.Option(None, "--arcface-root", help="insightface root holding models/buffalo_l."),
    inception: Path = typer.Option(None, "--inception", help="inception-2015-12-05.pt TorchScript (FID)."),
    i3d: Path = typer.Option(None, "--i3d", help="i3d_torchscript.pt (FVD)."),
    clip: Path = typer.Option(None, "--clip", help="CLIP model folder (Hugging Face format)."),
    judge_url: str = typer.Option(None, "--judge-url", help="OpenAI-compatible base URL of a VLM, e.g. http://localhost:8000/v1."),
    judge_model: str = typer.Option("Qwen/Qwen3-VL-8B-Instruct", "--judge-model", help="Model name sent to the judge."),
    vq_cmd: str = typer.Option(None, "--vq-cmd", help="Video-quality command template with {video}; prints a number."),
    force: bool = typer.Option(False, "--force", help="Rescore cases already scored."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    from soul.bench.score import ScoreOptions, score_suite
    from soul.bench.weighted import WeightsConfig

    cfg = WeightsConfig(syncnet=syncnet, arcface_root=arcface_root, inception=inception, i3d=i3d, clip=clip,
                        judge_url=judge_url, judge_model=judge_model, vq_cmd=vq_cmd)
    groups = tuple(g.strip() for g in metrics.split(",") if g.strip())
    result = score_suite(suite, outputs, out, ScoreOptions(groups=groups, weights=cfg, method=name, force=force),
                         progress=lambda cid, n, total: _say(f"[{n + 1}/{total}] scoring {cid}"))
    if json_out:
        typer.echo(json.dumps({"summary": result["summary"], "suite_metrics": result["suite_metrics"], "skipped": result["skipped"]}, indent=2))
        return
    for k, v in result["summary"].items():
        typer.echo(f"{k:28s} {v['mean']:.4f}  (n={v['n']})")
    for s in result["skipped"]:
        typer.echo(f"skipped {s['metric']}: {s['reason']}; needs {s['needs']} from {s['source']}")
    typer.echo(f"wrote {out / 'evaluation_results.json'} and {out / 'scores.json'}")


@bench_app.command("report", help="Markdown + HTML report with tables and PNG plots; several scored folders compare methods (one row each).")
def report(
    folders: list[Path] = typer.Argument(..., help="Folders written by soul bench score."),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder (report.md, report.html, plots/)."),
    title: str = typer.Option("Soul-Bench report", "--title", help="Page title."),
) -> None:
    from soul.bench.report import write_report

    paths = write_report(folders, out, title=title)
    typer.echo(f"wrote {paths['html']} and {paths['markdown']}")


@bench_app.command("metrics", help="List every metric, the weights it needs and where users get them.")
def list_metrics() -> None:
    from soul.bench.score import OFFLINE_GROUPS
    from soul.bench.weighted import SPECS

    typer.echo("offline (no weights): " + ", ".join(OFFLINE_GROUPS))
    for s in SPECS:
        typer.echo(f"{s.name:14s} {', '.join(s.fields):32s} needs {s.needs}; get it: {s.source}")
