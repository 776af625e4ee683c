"""Write requirements.lock: every package `make` installs, pinned, for CPU Linux and Python 3.11-3.13.

Usage: python scripts/lock.py [EXTRAS]   (what `make lock` runs; EXTRAS as in the Makefile)

uv resolves the project's requirements (pyproject.toml, with the extras `make` installs) for every
supported Python at once (`--universal`), preferring one version per package across Pythons
(`--fork-strategy fewest`), so what CI tests on 3.11 is what 3.12 and 3.13 get.

Why the CUDA packages are left out: the PyPI metadata of torch 2.13.0 lists the CUDA runtime
(nvidia-*, cuda-*, triton) for Linux, but the CPU build that `pip install torch==2.13.0` takes on
a CPU machine needs none of them. Pinning them would make every install download gigabytes of GPU
libraries; on a GPU machine, pip installs the CUDA build of torch 2.13.0 and torch's own exact pins
bring the matching runtime.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
CUDA_ONLY = re.compile(r"^(nvidia-.*|cuda-.*|triton)$")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==")


def compile_lock(extras: list[str], out: Path, leave_out: list[str]) -> None:
    """One uv resolution of pyproject.toml into `out`.

    The current lock is copied to `out` first: uv keeps the versions an existing output file pins
    wherever they still satisfy the requirements, so adding a dependency does not upgrade every
    other package with it (an unasked-for upgrade once broke generated frames: PyAV 18).
    """
    if LOCK.exists():
        shutil.copyfile(LOCK, out)
    cmd = [
        sys.executable, "-m", "uv", "pip", "compile", "pyproject.toml", "--universal", "--python-version", "3.11",
        "--fork-strategy", "fewest", "--quiet", "--no-header", "-o", str(out),
    ]
    for extra in extras:
        cmd += ["--extra", extra]
    for name in leave_out:
        cmd += ["--no-emit-package", name]
    subprocess.run(cmd, cwd=ROOT, check=True)


def pinned_names(path: Path) -> list[str]:
    return [m.group(1) for line in path.read_text().splitlines() if (m := PIN.match(line))]


def main(argv: list[str]) -> int:
    extras = [e for e in (argv[0] if argv else "").split(",") if e]
    with tempfile.TemporaryDirectory() as tmp:
        first = Path(tmp) / "all.txt"
        compile_lock(extras, first, [])
        cuda = sorted(n for n in pinned_names(first) if CUDA_ONLY.match(n))
        compile_lock(extras, Path(tmp) / "lock.txt", cuda)
        body = (Path(tmp) / "lock.txt").read_text()
    header = (
        "# Every package `make` installs, pinned. Written by `make lock` (scripts/lock.py) from\n"
        f"# pyproject.toml with extras {','.join(extras) or '(none)'}; do not edit by hand.\n"
        "# torch==2.13.0 takes the CPU build on a CPU machine; the CUDA runtime packages its PyPI\n"
        f"# metadata lists are left out: {' '.join(cuda) or '(none)'}.\n"
    )
    LOCK.write_text(header + body)
    print(f"wrote {LOCK.relative_to(ROOT)}: {len(pinned_names(LOCK))} pins, {len(cuda)} CUDA-only packages left out")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
