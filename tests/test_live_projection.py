"""benchmarks/live_projection.py: the live projection of the 5B fast model, at a small size (meta tensors, seconds)."""

from __future__ import annotations

import pytest
import torch

from tests.helpers.benchmarks import load_benchmark

SIZE = (256, 256)  # (height, width): 8 x 8 = 64 tokens per latent frame on the 5B's 32-pixel grid
GPUS = (1, 2, 4, 8)


@pytest.fixture(scope="module")
def lp():
    torch.set_num_threads(1)
    return load_benchmark("live_projection")


@pytest.fixture(scope="module")
def proj(lp):
    return lp.Projector()


@pytest.fixture(scope="module")
def rows(lp, proj):
    return lp.project(proj, [SIZE], (1, 2), GPUS)


def test_more_gpus_never_give_fewer_fps(rows):
    for n in (1, 2):
        mine = sorted((r for r in rows if r.new_latents == n), key=lambda r: r.gpus)
        assert [r.gpus for r in mine] == list(GPUS)
        assert all(r.time.feasible for r in mine)
        fps = [r.fps for r in mine]
        assert all(b >= a for a, b in zip(fps, fps[1:])), fps
        assert fps[-1] > fps[0]
        # the first chunk's compute, and with it the first-frame latency, never grows with G either
        first = [r.first_frame_latency for r in mine]
        assert all(b <= a for a, b in zip(first, first[1:])), first


def test_transformer_flops_scale_with_the_chunks_latent_frames(rows):
    one = next(r for r in rows if r.new_latents == 1 and r.gpus == 1).chunk
    two = next(r for r in rows if r.new_latents == 2 and r.gpus == 1).chunk
    assert (one.shape.model_latents, two.shape.model_latents) == (4, 5)  # anchor + 2 motion + N
    assert (one.tokens, two.tokens) == (4 * 64, 5 * 64)
    ratio = two.transformer.flops / one.transformer.flops
    tokens = two.tokens / one.tokens
    assert 1 < ratio < tokens**2
    assert two.passes == one.passes == 4  # 4 x0 steps, 1 pass each: the fast preset


def test_first_frame_waits_for_its_audio_and_then_computes(rows, proj):
    fps = rows[0].fps_video
    for r in rows:
        shape = r.first.shape
        assert (shape.model_latents, shape.clean, shape.new_frames) == (2, 1, 5)
        # at least frames 0..4, 2 frames of window context after them and the lookahead
        assert r.wait_seconds >= (4 + 2) / fps + proj.lookahead
        assert r.first_frame_latency > r.wait_seconds
        assert r.first_frame_latency == pytest.approx(r.wait_seconds + r.first_time.total)


def test_the_audio_wait_is_the_live_sessions_own_rule(proj):
    """``LiveVideo._next`` itself, on a stand-in session: not ready one sample before the projected wait, ready at it."""
    from types import SimpleNamespace

    import numpy as np

    from soul.pipelines.chunk_audio import ChunkAudio, GrowingTrack
    from soul.pipelines.live import LiveVideo

    s = proj.settings(*SIZE, 2)
    for shape in proj.shapes(s):
        plan = shape.plan

        def ready(samples: int) -> bool:
            track = GrowingTrack()
            track.append(np.zeros(samples, dtype=np.float32))
            session = SimpleNamespace(
                total=None, tracks=[track], settings=s, index=plan.index, done=0 if plan.index == 0 else plan.first_latent,
                first_latents=(proj.first_chunk_frames - 1) // 4 + 1, pipe=SimpleNamespace(audio_encoder=proj.encoder),
                audio=ChunkAudio(proj.encoder, [track], s.fps, norm="causal", lookahead=s.audio_lookahead), sample_rate=16000,
            )
            made = LiveVideo._next(session)
            assert made is None or made[0] == plan
            return made is not None

        assert ready(shape.wait_samples) and not ready(shape.wait_samples - 1), shape.label


def test_communication_by_hand(proj):
    t = proj.config.transformer
    out = proj.models.transformer.proj_out.out_features
    assert proj.comm_bytes(256, 1) == 0
    # G = 2: each of 4 all-to-alls per layer sends half of the rank's [128 tokens, 3072] bf16 shard
    hand = t.num_layers * 4 * (128 * t.num_attention_heads * t.attention_head_dim * 2) // 2 + 1 * 128 * out * 2
    assert proj.comm_bytes(256, 2) == hand


def test_a_heads_count_that_g_does_not_divide_is_not_possible(rows, proj):
    chunk = rows[0].chunk
    bad = proj.time(chunk, 5)  # 5 divides neither 24 heads nor 256 tokens
    assert not bad.feasible and "heads" in bad.reason


def test_main_prints_one_summary_line_per_size(lp, capsys):
    lp.main(["--sizes", "256x256", "--new-latents", "2", "--gpus", "1,8"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("live_projection 256x256 fps_per_gpu_count: G=1 ")
    assert last.endswith("(N=2)") and ", G=8 " in last
