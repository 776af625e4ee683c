"""benchmarks/light_decoder_identity.py on the shipped weights: its measure must tell people apart."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.benchmarks import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("light_decoder_identity")


def test_the_wrong_portrait_is_far_from_every_decoder(bench) -> None:
    # its own process, as users run it: a mini-fast pipeline run here changed the bits of a later
    # one-process reference in tests/test_parallel.py (full-suite runs only)
    script = Path(bench.__file__)
    run = subprocess.run([sys.executable, str(script), "--faces", "2", "--frames", "17", "--threads", "1"],
                         capture_output=True, text=True, timeout=300, check=True)
    lines = dict(re.findall(r"light_decoder_identity (\S+): ([0-9.]+)", run.stdout))
    scores = {k: float(v) for k, v in lines.items()}
    assert set(scores) == {"full", "light", bench.CONTROL}
    assert scores[bench.CONTROL] > 1.5 * max(scores["full"], scores["light"])  # the negative control fails clearly
    assert scores["light"] < 2 * scores["full"]  # the shipped light decoder keeps the person to within a factor of 2


def test_a_missing_directory_is_named(bench) -> None:
    with pytest.raises(SystemExit, match="--light .x=/nonexistent."):
        bench.main(["--light", "x=/nonexistent"])
