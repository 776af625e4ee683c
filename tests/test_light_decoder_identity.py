"""benchmarks/light_decoder_identity.py on the shipped weights: its measure must tell people apart."""

from __future__ import annotations

import re

import pytest
import torch

from tests.helpers.benchmarks import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("light_decoder_identity")


def test_the_wrong_portrait_is_far_from_every_decoder(bench, capsys) -> None:
    torch.set_num_threads(1)
    bench.main(["--faces", "2", "--frames", "17", "--threads", "1"])
    lines = dict(re.findall(r"light_decoder_identity (\S+): ([0-9.]+)", capsys.readouterr().out))
    scores = {k: float(v) for k, v in lines.items()}
    assert set(scores) == {"full", "light", bench.CONTROL}
    assert scores[bench.CONTROL] > 1.5 * max(scores["full"], scores["light"])  # the negative control fails clearly
    assert scores["light"] < 2 * scores["full"]  # the shipped light decoder keeps the person to within a factor of 2


def test_a_missing_directory_is_named(bench) -> None:
    with pytest.raises(SystemExit, match="--light .x=/nonexistent."):
        bench.main(["--light", "x=/nonexistent"])
