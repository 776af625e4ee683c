"""benchmarks/miniature_drift.py: two runs on one --out must not mix their portraits and speech."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from soul.jobs.resume import output_lock

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "miniature_drift.py"


def test_a_second_run_on_the_same_out_stops_before_writing(tmp_path: Path) -> None:
    out = tmp_path / "drift"
    out.mkdir()
    with output_lock(out / "drift.json"):  # the first run, still going
        run = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--seconds", "1"], capture_output=True, text=True, timeout=120)
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert run.returncode != 0 and len(lines) == 1, run.stderr
    assert "drift.json: is being written by another run" in lines[0] and "Traceback" not in run.stderr
    assert not any(out.iterdir())  # no portrait, no speech written over the first run's; its lock gone with it
