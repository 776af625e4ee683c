"""`soul info --parallel-plan`: the multi-GPU inference plan of the 5B model adds up."""

from __future__ import annotations

import io
import json
import math
import re
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from soul.config import load_preset
from soul.models.info import Hardware, model_info, parallel_plan, pass_flops, token_counts

ROOT = Path(__file__).resolve().parents[1]
PRESET = "wan22-ti2v-5b"


@pytest.fixture(scope="module")
def plan() -> dict:
    return parallel_plan(load_preset(PRESET), passes=3, steps=50, height=704, width=1280, frames=121, gpus=(1, 2, 4, 8, 16))


def _rows(plan: dict) -> list[dict]:
    return [r for r in plan["layouts"] if r["feasible"]]


def test_layouts_cover_every_split_of_the_gpus(plan: dict) -> None:
    layouts = {(r["gpus"], r["ulysses"], r["cfg"]) for r in plan["layouts"]}
    assert layouts == {(1, 1, 1), (2, 2, 1), (2, 1, 2), (4, 4, 1), (4, 2, 2), (8, 8, 1), (8, 4, 2), (16, 16, 1), (16, 8, 2)}
    bad = [r for r in plan["layouts"] if not r["feasible"]]
    assert [(r["ulysses"], r["reason"]) for r in bad] == [(16, "ulysses=16 does not divide 24 heads")]


def test_tokens_heads_and_passes_split_exactly(plan: dict) -> None:
    tokens = plan["tokens"]
    total = tokens["video_tokens"]
    assert (tokens["latent_frames"], tokens["latent_height"], tokens["latent_width"]) == (31, 44, 80)
    assert total == 31 * (44 // 2) * (80 // 2) == 27280  # patch 1x2x2
    for r in _rows(plan):
        assert r["tokens_per_rank"] * r["ulysses"] == total
        assert r["heads_per_rank"] * r["ulysses"] == 24
        assert r["passes_per_rank_per_step"] == math.ceil(3 / r["cfg"])
        assert r["ulysses"] * r["cfg"] == r["gpus"]


def test_weights_are_replicated_and_one_gpu_matches_soul_info(plan: dict) -> None:
    config = load_preset(PRESET)
    info = model_info(config, 704, 1280, 121)
    denoiser = info["memory_bytes"]["weights"]["bf16"]["backbone"] + info["memory_bytes"]["weights"]["bf16"]["soul_audio_layers"]
    assert {r["weights_bytes_per_rank"] for r in _rows(plan)} == {denoiser}
    assert {r["parameters_per_rank"] for r in _rows(plan)} == {info["parameters"]["backbone"] + info["parameters"]["soul_audio_layers"]}
    one = _rows(plan)[0]
    assert one["gpus"] == 1 and one["ulysses_buffer_bytes"] == 0 and one["comm_bytes_per_step"] == 0
    assert one["memory_bytes_per_rank"] == info["memory_bytes"]["denoise_pass_bf16_fused_attention"]
    # activations fall with the tokens per rank, never below an even split
    by_u = {r["ulysses"]: r["activation_bytes_per_rank"] for r in _rows(plan) if r["cfg"] == 1}
    assert by_u[1] > by_u[2] > by_u[4] > by_u[8] >= by_u[1] / 8


def test_communication_bytes_follow_the_formula(plan: dict) -> None:
    config = load_preset(PRESET)
    t = config.transformer
    s, d, layers = plan["tokens"]["video_tokens"], t.inner_dim, t.num_layers
    latent = 48 * 31 * 44 * 80
    for r in _rows(plan):
        u, c, p = r["ulysses"], r["cfg"], r["passes_per_rank_per_step"]
        # 4 all-to-alls (q, k, v, out) of a rank's (S/U) x D bf16 tensor, (U-1)/U of it leaving the rank
        assert r["all_to_all_bytes_per_call"] == 4 * (s // u) * d * 2 * (u - 1) // u
        assert r["all_to_all_bytes_per_step"] == p * layers * r["all_to_all_bytes_per_call"]
        assert r["cfg_gather_bytes_per_step"] == (c - 1) * p * latent * 4
        assert r["comm_bytes_per_step"] == r["all_to_all_bytes_per_step"] + r["output_gather_bytes_per_step"] + r["cfg_gather_bytes_per_step"]
    # scaling: per rank (U-1)/U^2 of a fixed S*D volume; over all U ranks (U-1)/U of it
    a2a = {r["ulysses"]: r["all_to_all_bytes_per_call"] for r in _rows(plan) if r["cfg"] == 1}
    volume = 4 * s * d * 2
    for u in (2, 4, 8):
        assert a2a[u] == pytest.approx(volume * (u - 1) / u**2, rel=1e-9)
        assert u * a2a[u] == pytest.approx(volume * (u - 1) / u, rel=1e-9)
    assert a2a[2] / a2a[4] == pytest.approx((1 / 4) / (3 / 16))


def test_runtime_formula_agrees(plan: dict) -> None:
    """The inference runtime (soul.parallel) states the same all-to-all volume as the plan."""
    from soul.parallel import ulysses

    t = load_preset(PRESET).transformer
    for r in _rows(plan):
        theirs = ulysses.all_to_all_bytes(batch=1, tokens=plan["tokens"]["video_tokens"], heads=t.num_attention_heads, head_dim=t.attention_head_dim, degree=r["ulysses"], element_size=2)
        assert theirs == r["all_to_all_bytes_per_call"]


def test_flops_and_time_estimate_are_consistent(plan: dict) -> None:
    config = load_preset(PRESET)
    t = config.transformer
    s, d, layers, text = plan["tokens"]["video_tokens"], t.inner_dim, t.num_layers, plan["tokens"]["text_tokens"]
    flops = plan["flops_per_pass"]
    audio_layers = len(config.audio.block_indices(layers))
    assert flops["attention"] == layers * (4 * s * s * d + 4 * s * text * d) + audio_layers * 4 * s * 32 * d
    # projections of video tokens: q,k,v,o + text q,o + FFN in every block, audio q,o: within 2 % (embedders, biases aside)
    blocks = 2 * s * (layers * (6 * d * d + 2 * d * t.ffn_dim) + audio_layers * 2 * d * d)
    assert flops["video_linear"] == pytest.approx(blocks, rel=0.02)
    rows = {(r["ulysses"], r["cfg"]): r for r in _rows(plan)}
    assert rows[(1, 1)]["est_relative_time"] == 1.0
    for (u, c), r in rows.items():
        assert r["flops_per_rank_per_pass"] >= flops["per_rank"] / u  # context projections are not split
        assert r["est_speedup"] <= u * 3 / r["passes_per_rank_per_step"] + 1e-9  # never better than ideal
        assert r["est_chunk_seconds"] == pytest.approx(50 * r["est_step_seconds"])
    assert rows[(8, 1)]["est_speedup"] > 0.85 * 8  # NVLink-class links: Ulysses nearly linear at 5B, 720p
    # with free communication the speedup is the split of the work: U, less the unsplit context projections
    free = parallel_plan(config, passes=3, steps=50, gpus=(1, 8), hardware=Hardware(link_gbs=1e12, latency_us=0.0))
    ideal = {(r["ulysses"], r["cfg"]): r["est_speedup"] for r in free["layouts"]}
    split = flops["video_linear"] + flops["attention"]
    assert ideal[(8, 1)] == pytest.approx((split + flops["context_linear"]) / (split / 8 + flops["context_linear"]), rel=1e-4)
    assert 7.5 < ideal[(8, 1)] < 8
    # PCIe-class links make communication matter
    slow = parallel_plan(config, passes=3, steps=50, gpus=(1, 8), hardware=Hardware(link_gbs=25.0))
    assert {(r["ulysses"], r["cfg"]): r["est_speedup"] for r in slow["layouts"]}[(8, 1)] < rows[(8, 1)]["est_speedup"]


def test_two_guidance_passes_split_evenly_over_cfg_2() -> None:
    two = parallel_plan(load_preset(PRESET), passes=2, steps=50, gpus=(2,))
    rows = {(r["ulysses"], r["cfg"]): r for r in two["layouts"]}
    assert rows[(1, 2)]["passes_per_rank_per_step"] == 1
    assert rows[(1, 2)]["est_speedup"] > rows[(2, 1)]["est_speedup"]  # no all-to-alls: the better use of 2 GPUs


def test_other_sizes_and_the_tiny_preset() -> None:
    config = load_preset(PRESET)
    small = parallel_plan(config, passes=3, steps=50, height=480, width=832, frames=81, gpus=(1, 2))
    assert small["tokens"]["video_tokens"] == token_counts(config, 480, 832, 81)["video_tokens"] == 21 * 15 * 26
    tiny = load_preset("tiny")
    tp = parallel_plan(tiny, passes=3, steps=8, gpus=(1, 2))
    assert all(r["feasible"] for r in tp["layouts"])
    from soul.models.transformer import build_transformer

    assert pass_flops(build_transformer(tiny, meta=True), tp["tokens"])["per_rank"] > 0


def test_cli_plan_is_the_readme_table() -> None:
    from soul.cli import main

    buffer = io.StringIO()
    with redirect_stdout(buffer):
        main(["info", "--preset", PRESET, "--parallel-plan"])
    table = [ln for ln in buffer.getvalue().splitlines() if ln.startswith("|")]
    assert len(table) == 2 + 7  # header, rule, 1 + 2 + 2 + 2 layouts of 1, 2, 4, 8 GPUs
    readme = (ROOT / "README.md").read_text()
    assert "soul info --preset wan22-ti2v-5b --parallel-plan" in readme
    assert "\n".join(table) in readme, "README's parallel plan is not the command's output: re-run it and paste the table"
    with redirect_stdout(io.StringIO()) as out:
        main(["info", "--preset", PRESET, "--parallel-plan", "--json", "--gpus", "1,8"])
    report = json.loads(out.getvalue())
    assert [r["gpus"] for r in report["parallel_plan"]["layouts"]] == [1, 8, 8]
    assert report["parallel_plan"]["passes_per_step"] == 3 and report["parallel_plan"]["steps"] == 50


def test_cli_rejects_bad_gpu_lists(capsys: pytest.CaptureFixture[str]) -> None:
    from soul.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["info", "--preset", "tiny", "--parallel-plan", "--gpus", "two"])
    assert exit_info.value.code == 2
    assert re.search(r"--gpus", capsys.readouterr().err)
