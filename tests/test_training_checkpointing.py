"""Checkpoints are atomic, pruned to the last K, and carry everything a resume needs."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch

from soul.training.checkpointing import CheckpointManager, rng_state, set_rng_state
from soul.training.metrics import MetricsLogger, read_metrics


def test_save_load_prune(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path, keep_last=2)
    for step in (10, 20, 30):
        mgr.save(step, {"w": torch.full((2,), float(step))}, {"opt": step}, {"note": "x"})
    names = [p.name for p in mgr.checkpoints()]
    assert names == ["step-000000020", "step-000000030"]
    weights, state, meta = mgr.load(mgr.latest())
    assert weights["w"].tolist() == [30.0, 30.0] and state == {"opt": 30} and meta["step"] == 30


def test_incomplete_checkpoint_is_ignored(tmp_path: Path) -> None:
    mgr = CheckpointManager(tmp_path)
    mgr.save(5, {"w": torch.zeros(1)}, {}, {})
    broken = tmp_path / "step-000000009"
    broken.mkdir()
    (broken / "trainable.safetensors").write_bytes(b"half written")
    assert mgr.latest().name == "step-000000005"


def test_rng_state_round_trip() -> None:
    state = rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    b = (random.random(), np.random.rand(), torch.rand(1).item())
    assert a == b


def test_metrics_resume_drops_lines_past_the_resume_step(tmp_path: Path) -> None:
    log = MetricsLogger(tmp_path, tensorboard=False)
    for step in range(1, 6):
        log.log(step, {"loss": 1.0 / step, "bad": float("nan")})
    log.close()
    log = MetricsLogger(tmp_path, resume_step=3, tensorboard=False)
    log.log(4, {"loss": 0.9})
    log.close()
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert records[-1]["loss"] == 0.9 and records[0]["bad"] is None
    json.dumps(records)  # valid JSON all the way


class _CountingJob:
    """A stand-in trainer for the loop: its 'loss' is a function of the step alone."""

    def __init__(self, step: int = 0) -> None:
        self.step = step
        self.saved: list[int] = []

    def train_step(self) -> dict[str, float]:
        self.step += 1
        return {"loss": 1.0 / self.step}

    def save_checkpoint(self) -> None:
        self.saved.append(self.step)


def test_loop_logs_checkpoints_and_resumes_like_a_straight_run(tmp_path: Path) -> None:
    from soul.training.loop import LoopPlan, run_steps

    plan = LoopPlan(target=7, log_every=2, checkpoint_every=3, metrics_dir=tmp_path / "straight")
    seen: list[tuple[int, int]] = []
    job = _CountingJob()
    history = run_steps(job, plan, progress=lambda step, total: seen.append((step, total)), final_metrics=lambda: {"eval": 5.0})
    assert [h["step"] for h in history] == list(range(1, 8)) and history[-1] == {"step": 7, "loss": 1 / 7, "eval": 5.0}
    assert job.saved == [3, 6, 7] and seen == [(s, 7) for s in range(1, 8)]
    straight = read_metrics(tmp_path / "straight" / "metrics.jsonl")
    assert [r["step"] for r in straight] == [2, 4, 6, 7] and "eval" in straight[-1] and "eval" not in straight[0]
    # stop at 4 (a checkpoint and a log line there), then resume from the checkpoint at 3 to 7
    first = _CountingJob()
    run_steps(first, LoopPlan(target=4, log_every=2, checkpoint_every=3, metrics_dir=tmp_path / "resumed"))
    assert first.saved == [3, 4]
    second = _CountingJob(step=3)
    rest = run_steps(second, LoopPlan(target=7, log_every=2, checkpoint_every=3, metrics_dir=tmp_path / "resumed"), final_metrics=lambda: {"eval": 5.0})
    assert [h["step"] for h in rest] == [4, 5, 6, 7] and second.saved == [6, 7]
    assert read_metrics(tmp_path / "resumed" / "metrics.jsonl") == straight
    # no metrics directory (a non-main rank): nothing logged, checkpoints still requested
    quiet = _CountingJob()
    run_steps(quiet, LoopPlan(target=3, log_every=1, checkpoint_every=3))
    assert quiet.saved == [3]
