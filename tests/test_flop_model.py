"""benchmarks/flop_model.py: its counter against hand computations on tiny shapes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.helpers.benchmarks import load_benchmark


@pytest.fixture(scope="module")
def fm():
    return load_benchmark("flop_model")


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_linear_flops_and_bytes_by_hand(fm, device):
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 16).to(device)
    x = torch.randn(3, 8).to(device)
    cost, out = fm.count(layer, x, modules=[layer])
    assert out.shape == (3, 16)
    assert cost.flops == 2 * 3 * 8 * 16  # one multiply and one add per weight per row
    assert cost.attention_analytic == 0
    # fused: addmm reads bias, input and weight and writes the output once, float32
    assert cost.bytes_fused == 4 * (16 + 3 * 8 + 8 * 16 + 3 * 16)
    assert cost.weight_bytes == 4 * (8 * 16 + 16)
    assert cost.bytes_eager >= cost.bytes_fused


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("dv", [4, 6])
def test_attention_flops_by_hand(fm, device, dv):
    # batch 2, 3 heads, 5 queries, 7 keys, head dims 4 (q, k) and dv (v). On the CPU, equal dims run
    # the fused flash kernel FlopCounterMode does not count (added analytically), unequal the math
    # path it does; on meta both decompose into counted bmm's.
    q, k, v = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 7, 4), torch.randn(2, 3, 7, dv)
    q, k, v = q.to(device), k.to(device), v.to(device)
    cost, out = fm.count(F.scaled_dot_product_attention, q, k, v)
    assert out.shape == (2, 3, 5, dv)
    hand = 2 * 3 * (2 * 5 * 7 * 4 + 2 * 5 * 7 * dv)  # q k^T, then weights x v
    assert cost.attention_analytic == hand
    assert cost.flops == hand  # whether the counter saw the kernel or it was added analytically
    assert cost.attention_counted + cost.attention_added == hand
    assert cost.bytes_fused == 4 * (q.numel() + k.numel() + v.numel() + out.numel())  # one fused kernel


def test_tiny_transformer_matches_closed_form(fm):
    from soul.config import load_preset
    from soul.models.light_vae import light_vae_config_for

    config = load_preset("tiny")
    models = fm.build_models(config, light_vae_config_for(config.vae))
    height, width = 2 * config.spatial_multiple, config.spatial_multiple
    cost = fm.count_transformer(models, 3, 1, height, width)
    closed = fm.analytic_transformer_flops(config, 3, height, width)
    assert cost.attention_counted == pytest.approx(closed["attention"], rel=1e-9)
    assert cost.flops == pytest.approx(closed["total"], rel=1e-9)


def test_measured_seconds_come_from_one_speed_run_or_nowhere(fm, tmp_path: Path) -> None:
    import json

    assert fm.measured_seconds(tmp_path) == {}  # no run: no figures at all, the columns print "-"
    stages = lambda total: {"total": total, "text": 0.0, "audio": 0.1, "transformer": total / 2, "vae": total / 4}  # noqa: E731
    (tmp_path / "speed_timing.json").write_text(json.dumps({"mini16": {"base": stages(2.0), "fast": stages(0.1), "decoder": [0.3, 0.03]}}))
    (tmp_path / "speed_quality.json").write_text(json.dumps({"timing": {"base": stages(10.0), "fast": stages(1.0), "fast-full": stages(6.0)}}))
    got = fm.measured_seconds(tmp_path)
    assert got["mini16 (speed.py)"] == {"transformer": (1.0, 0.05), "decoder": (0.3, 0.03), "vae stage": (0.5, 0.025), "whole call": (2.0, 0.1)}
    assert got["mini16 20 s (quality table)"]["whole call"] == (10.0, 1.0)
    assert got["mini16 20 s (quality table)"]["decoder only (fast w/ full vs light)"] == (6.0, 1.0)
    assert "scaled-5b (speed.py)" not in got
