"""`soul bench run`: generate every case of a suite with one method, resumably.

A method is Soul at a preset (`soul` or `soul:tiny`, through `soul.jobs.generate.run_generate`) or any
external command template with `{image}`, `{audio}`, `{prompt}` and `{output}` placeholders (shell
quoted), so other systems are compared on the same inputs. A multi-person case (`Case.speaker_audio`)
gives Soul its tracks, one per person left to right, instead of the mix; templates still get the mix
as `{audio}` and may take the tracks as `{speaker_audio}` (space separated, each quoted; a one-person
case's audio when it has no tracks), so single-track systems stay comparable. The method writes to a temporary
`<id>.partial.mp4` that is renamed to `<id>.mp4` only on success, so an interrupted run never leaves
a truncated video that a resumed run would mistake for a finished one; finished cases are skipped.
`run_log.json` in the output folder records each case's status, seconds and error.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from soul.bench.suite import Case, load_suite, output_for
from soul.errors import InputError, SoulError
from soul.config import DEFAULT_PRESET

ProgressFn = Callable[[str, int, int, str], None]


@dataclass(frozen=True)
class Method:
    """Soul (`preset`) or an external command (`template`); `name` labels it in reports."""

    name: str
    preset: str | None = None
    template: str | None = None
    seed: int = 0
    timeout: float = 24 * 3600.0


def parse_method(method: str | None, command: str | None, *, name: str | None = None, seed: int = 0) -> Method:
    """`--method soul[:preset]` or `--method-cmd TEMPLATE` (exactly one)."""
    if bool(method) == bool(command):
        raise InputError("--method", "give exactly one of --method soul[:preset] and --method-cmd TEMPLATE", None)
    if command:
        missing = [p for p in ("{image}", "{audio}", "{output}") if p not in command]
        if missing:
            raise InputError("--method-cmd", f"template lacks {', '.join(missing)}", 'e.g. "mytool --ref {image} --wav {audio} --text {prompt} -o {output}"')
        return Method(name=name or "external", template=command, seed=seed)
    kind, _, preset = str(method).partition(":")
    if kind != "soul":
        raise InputError("--method", f"unknown method {method!r}", "use soul, soul:PRESET, or --method-cmd for other systems")
    preset = preset or DEFAULT_PRESET
    return Method(name=name or f"soul-{preset}", preset=preset, seed=seed)


def speaker_tracks(case: Case) -> list[Path]:
    """The audio a multi-track method gets: one track per person, or the case's audio for one person."""
    return list(case.speaker_audio) or [case.audio]


def fill_template(template: str, case: Case, target: Path) -> str:
    """The shell command for one case: every placeholder shell-quoted (`{speaker_audio}` one word per track)."""
    return template.format(image=shlex.quote(str(case.image)), audio=shlex.quote(str(case.audio)),
                           speaker_audio=" ".join(shlex.quote(str(p)) for p in speaker_tracks(case)),
                           prompt=shlex.quote(case.prompt), output=shlex.quote(str(target)), id=shlex.quote(case.id))


def _run_one(method: Method, case: Case, target: Path) -> None:
    if method.template is not None:
        cmd = fill_template(method.template, case, target)
        try:
            proc = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=method.timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"timed out after {method.timeout:.0f} s") from None
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"command exited {proc.returncode}: {' | '.join(tail)[:500]}")
        return
    from soul.jobs.generate import build_request, run_generate

    run_generate(build_request(image=case.image, audio=speaker_tracks(case), prompt=case.prompt, output=target,
                               preset=method.preset, seed=method.seed))


def run_suite(suite: str | Path, method: Method, out: str | Path, *, force: bool = False, only: list[str] | None = None,
              progress: ProgressFn | None = None) -> dict[str, Any]:
    """Generate `<out>/<id>.mp4` for each case (skipping finished ones unless `force`)."""
    cases = load_suite(suite)
    if only:
        unknown = set(only) - {c.id for c in cases}
        if unknown:
            raise InputError("--case", f"unknown case id(s) {sorted(unknown)}", "ids are the <id>.json names of the suite")
        cases = [c for c in cases if c.id in only]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "run_log.json"
    log: dict[str, Any] = json.loads(log_path.read_text()) if log_path.is_file() else {}
    log.setdefault("cases", {})
    log["method"] = method.name
    log["suite"] = str(suite)
    for n, case in enumerate(cases):
        final = output_for(out, case.id)
        if final.is_file() and final.stat().st_size > 0 and not force:
            log["cases"].setdefault(case.id, {"status": "done"})
            if progress:
                progress(case.id, n, len(cases), "skipped (done)")
            continue
        if progress:
            progress(case.id, n, len(cases), "running")
        partial = final.with_suffix(".partial.mp4")
        partial.unlink(missing_ok=True)
        t0 = time.perf_counter()
        try:
            _run_one(method, case, partial)
            if not partial.is_file() or partial.stat().st_size == 0:
                raise RuntimeError(f"the method wrote no video at {partial.name}")
            partial.replace(final)
            log["cases"][case.id] = {"status": "done", "seconds": round(time.perf_counter() - t0, 2)}
        except (RuntimeError, OSError, ValueError, SoulError) as err:
            partial.unlink(missing_ok=True)
            log["cases"][case.id] = {"status": "failed", "seconds": round(time.perf_counter() - t0, 2), "error": str(err)}
        log_path.write_text(json.dumps(log, indent=2))
    log_path.write_text(json.dumps(log, indent=2))
    return log
