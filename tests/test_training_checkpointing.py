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
