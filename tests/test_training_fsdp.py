"""Stage-2 training under FSDP2, run for real: 2 CPU processes (gloo) against 1 process.

The config is the stage-2 recipe's shape at tiny size (``trainable: all``, ``distributed: fsdp``,
gradient checkpointing on). The same global batch (2 samples: 1 per process, or 2 in one process)
runs 4 optimiser steps both ways; the trainer keys every random draw by global sample index, so
the two runs see identical samples, noise and timesteps.

Tolerance: relative 1e-5 on each step's loss and gradient norm, absolute 1e-5 on the final
weights. The only difference between the runs is how gradients are summed: one process
accumulates both samples' gradients in autograd, FSDP reduce-scatters the per-process gradients
(sum, then divide by 2). That changes fp32 rounding (~1e-7 relative per element); AdamW
normalises each update by its own running RMS, so such rounding stays at that relative size in
the update (lr 2e-3) and in the next losses. 1e-5 is about a hundred times what rounding
produces here (measured: identical losses, weights within 6e-7), yet far below any real error:
a wrong shard order, an unreduced gradient or a dropped step changes the loss at 1e-3 or more.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from soul.miniature.clips import write_clip_shards
from tests.helpers.fsdp_train import tiny_config

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "helpers" / "fsdp_train.py"
STEPS = 4
RTOL = 1e-5
ATOL_WEIGHTS = 1e-5


def _failure(done: subprocess.CompletedProcess) -> str:
    """The ranks' own tracebacks (torchrun's summary at the end of stderr names no cause)."""
    ranks = [ln for ln in done.stderr.splitlines() if ln.startswith("[rank")]
    return "\n".join(ranks[-40:]) or done.stderr[-3000:]


def _free_port() -> int:
    with socket.socket() as probe:  # a free port: a fixed one can still be held by an earlier run
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Train 1 process (batch 2) and then 2 FSDP processes (batch 1 each) on the same drawn clips."""
    root = tmp_path_factory.mktemp("fsdp")
    data = root / "data"
    write_clip_shards(data, num_clips=6, seconds=2.0, fps=16, size=64, seed=1, clips_per_shard=4)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    single, multi = root / "single", root / "multi"
    done = subprocess.run([sys.executable, str(SCRIPT), str(data), str(single), "2", str(STEPS)], env=env, timeout=300, capture_output=True, text=True)
    assert done.returncode == 0, _failure(done)
    # The FSDP processes also resume the single process's step-2 checkpoint (a layout change).
    shutil.copytree(single / "run" / "checkpoints" / "step-000000002", multi / "resumed" / "checkpoints" / "step-000000002")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port())]
    done = subprocess.run([*torchrun, str(SCRIPT), str(data), str(multi), "1", str(STEPS)], env=env, timeout=300, capture_output=True, text=True)
    assert done.returncode == 0, _failure(done)
    return {"data": data, "single": single, "multi": multi}


def _losses(path: Path) -> list[dict[str, float]]:
    return json.loads(path.read_text())


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= RTOL * abs(a)


def test_fsdp_losses_equal_single_process(runs: dict[str, Path]) -> None:
    single, multi = _losses(runs["single"] / "losses.json"), _losses(runs["multi"] / "losses.json")
    assert [h["step"] for h in single] == [h["step"] for h in multi] == list(range(1, STEPS + 1))
    for a, b in zip(single, multi):
        assert _close(a["loss"], b["loss"]), (a, b)
        assert _close(a["grad_norm"], b["grad_norm"]), (a, b)
    assert len({round(h["loss"], 6) for h in multi}) == STEPS  # the steps trained: the loss moved each time
    # It really was sharded: every parameter split along dim 0 between the two processes.
    for rank in (0, 1):
        placements = json.loads((runs["multi"] / f"shard-{rank}.json").read_text())
        assert placements and all(v["placements"] == ["S(0)"] for v in placements.values())
    meta = json.loads((runs["multi"] / "run" / "checkpoints" / f"step-{STEPS:09d}" / "meta.json").read_text())
    assert meta["distributed"] == "fsdp" and meta["world_size"] == 2 and meta["samples_seen"] == 2 * STEPS


def test_fsdp_export_is_the_gathered_weights(runs: dict[str, Path]) -> None:
    from soul.pipelines.soul_pipeline import SoulPipeline

    multi = runs["multi"]
    gathered = load_file(str(multi / "gathered.safetensors"))
    # The gather is the two ranks' shards put back together along dim 0, bit for bit.
    shards = [load_file(str(multi / f"shard-{rank}.safetensors")) for rank in (0, 1)]
    assert set(shards[0]) == set(gathered)
    for name, full in gathered.items():
        assert torch.equal(torch.cat([shards[0][name], shards[1][name]]), full), name
    # The exported directory loads in one process with exactly those weights.
    exported = SoulPipeline.from_pretrained(multi / "run" / "export", preset="tiny", torch_dtype=torch.float32).transformer
    state = exported.state_dict()
    assert set(state) == set(gathered) and len(state) > 100
    assert all(torch.equal(state[k], gathered[k]) for k in gathered)
    # The last checkpoint holds the same full tensors (not one rank's shard).
    saved = load_file(str(multi / "run" / "checkpoints" / f"step-{STEPS:09d}" / "trainable.safetensors"))
    assert set(saved) == set(gathered) and all(torch.equal(saved[k], gathered[k]) for k in saved)
    # And they are the single process's weights up to summation order.
    single = load_file(str(runs["single"] / "gathered.safetensors"))
    worst = max(float((single[k] - gathered[k]).abs().max()) for k in gathered)
    assert worst <= ATOL_WEIGHTS, worst
    initial = SoulPipeline.from_preset("tiny", seed=0).transformer.state_dict()  # the trainer's seed-0 start
    assert max(float((state[k] - initial[k]).abs().max()) for k in gathered) > 1e-3  # trained, not the start


def test_fsdp_resumes_a_single_process_checkpoint(runs: dict[str, Path]) -> None:
    resumed = json.loads((runs["multi"] / "resumed-losses.json").read_text())
    straight = _losses(runs["single"] / "losses.json")
    assert resumed["start"] == 2
    assert [h["step"] for h in resumed["history"]] == list(range(3, STEPS + 1))
    for a, b in zip(straight[2:], resumed["history"]):
        assert _close(a["loss"], b["loss"]), (a, b)


def test_single_process_resumes_an_fsdp_checkpoint(runs: dict[str, Path], tmp_path: Path) -> None:
    from soul.training.trainer import Trainer

    shutil.copytree(runs["multi"] / "run" / "checkpoints" / "step-000000002", tmp_path / "checkpoints" / "step-000000002")
    trainer = Trainer(tiny_config(runs["data"], tmp_path, 2, STEPS), resume=True)
    assert trainer.step == 2
    history = trainer.train()
    straight = _losses(runs["single"] / "losses.json")
    assert [h["step"] for h in history] == list(range(3, STEPS + 1))
    for a, b in zip(straight[2:], history):
        assert _close(a["loss"], b["loss"]), (a, b)
