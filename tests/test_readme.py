"""The README's commands run as written on a fresh clone (the blocks it marks as tested)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = "<!-- tests/test_readme.py runs this block as written -->"


def marked_blocks() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(re.escape(MARK) + r"\n```bash\n(.*?)```", text, re.S)
    return [[ln for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")] for block in blocks]


def test_readme_training_commands_run_as_written(tmp_path: Path) -> None:
    blocks = marked_blocks()
    assert blocks, f"README.md lost its {MARK} block"
    (tmp_path / "configs").symlink_to(ROOT / "configs")  # the commands run from the project root
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for line in (ln for block in blocks for ln in block):
        done = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{line!r} failed: {done.stderr[-2000:]}"
    assert (tmp_path / "runs" / "train-tiny").is_dir()
