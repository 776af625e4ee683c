"""Live generation: audio in pieces -> the same chunks, features and frames as an offline run, in flat memory."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from soul.config import load_preset
from soul.errors import InputError
from soul.media.audio import load_audio
from soul.models.audio_encoder import SoulAudioEncoder, latent_frame_windows
from soul.pipelines.chunk_audio import CAUSAL_VAR_FLOOR, ArrayTrack, CausalStats, ChunkAudio, GrowingTrack
from soul.pipelines.live import LiveVideo
from soul.pipelines.long_video import generate_long_video
from soul.sampling.chunks import next_chunk, plan_chunks
from soul.sampling.settings import resolve_sampling

PORTRAIT = "portraits/hallo_6.jpg"
LIVE = {"chunk_frames": 13, "first_chunk_frames": 5, "audio_lookahead": 0.25, "audio_norm": "causal"}


def speech(media: Path, seconds: float) -> np.ndarray:
    base = load_audio(media / "audio" / "hallo_3.wav", 16000, normalize=False).samples
    return np.tile(base, int(np.ceil(seconds * 16000 / base.shape[0])))[: int(round(seconds * 16000))].astype(np.float32)


def pieces(track: np.ndarray, seed: int, lo: int = 50, hi: int = 4000) -> list[np.ndarray]:
    """The track cut at random places, as a network delivers it."""
    rng, out, i = random.Random(seed), [], 0
    while i < track.shape[0]:
        n = rng.randint(lo, hi)
        out.append(track[i : i + n])
        i += n
    return out


def test_short_first_chunk_then_the_usual_step() -> None:
    plans = plan_chunks(total_latents=12, chunk_latents=4, motion=2, first_latents=2)
    assert [(p.first_latent, p.new_latents, p.motion) for p in plans] == [(1, 1, 0)] + [(2 + i, 1, 2) for i in range(10)]
    assert plan_chunks(12, 4, 1, None)[0].new_latents == 3  # without it, chunk 0 is a whole chunk, as before
    # the incremental rule (live) makes exactly the offline plan
    done, made = 0, []
    for i in range(len(plans)):
        made.append(next_chunk(i, done, 4, 2, first_latents=2, total=12))
        done += made[-1].new_latents + (1 if i == 0 else 0)
    assert made == plans and done == 12
    with pytest.raises(InputError, match="first_chunk_frames"):
        plan_chunks(12, 4, 2, first_latents=5)


def test_live_layout_settings_are_checked() -> None:
    cfg = load_preset("tiny")
    s = resolve_sampling(cfg, **LIVE)
    assert s.as_record()["first_chunk_frames"] == 5 and s.as_record()["audio_norm"] == "causal"
    assert "audio_norm" not in resolve_sampling(cfg).as_record()  # ordinary runs keep their records and resume fingerprints
    with pytest.raises(InputError, match="first-chunk-frames"):
        resolve_sampling(cfg, chunk_frames=13, first_chunk_frames=17)
    with pytest.raises(InputError, match="first-chunk-frames"):
        resolve_sampling(cfg, chunk_frames=13, first_chunk_frames=6)
    with pytest.raises(InputError, match="audio-lookahead"):
        resolve_sampling(cfg, audio_lookahead=-0.1)
    with pytest.raises(InputError, match="audio-norm"):
        resolve_sampling(cfg, audio_norm="peak")


def test_causal_statistics_do_not_depend_on_delivery(media: Path) -> None:
    track = speech(media, 3.0)
    whole = CausalStats(ArrayTrack(track))
    growing, stats = GrowingTrack(), None
    stats = CausalStats(growing)
    ends = [1, 3999, 4000, 4001, 12345, 30000, 47999]
    got, i = [], 0
    for piece in pieces(track, 0):
        growing.append(piece)
        while i < len(ends) and ends[i] <= growing.received:
            got.append(stats(ends[i]))
            i += 1
    assert got == [whole(e) for e in ends]  # bit for bit
    mean, var = whole(48000)
    assert abs(mean - float(track.astype(np.float64).mean())) < 1e-9 and abs(var - float(track.astype(np.float64).var())) < 1e-9
    assert CausalStats(ArrayTrack(np.zeros(8000, np.float32)))(8000) == (0.0, CAUSAL_VAR_FLOOR)  # silence is not blown up
    with pytest.raises(ValueError, match="forward"):
        whole(100)


def test_features_of_a_growing_track_equal_the_whole_tracks(media: Path) -> None:
    """The incremental path computes the offline path's numbers (same lookahead and normalisation)."""
    enc = SoulAudioEncoder.build(load_preset("tiny"))
    track = speech(media, 8.0)
    offline = ChunkAudio(enc, [track], fps=16, norm="causal", lookahead=0.25)
    growing = GrowingTrack()
    live = ChunkAudio(enc, [growing], fps=16, norm="causal", lookahead=0.25)
    chunks = [latent_frame_windows(13, 2, start=s, total_frames=129) for s in (0, 8, 24, 40, 72)]
    feed = iter(pieces(track, 1))
    for windows in chunks:
        while growing.received < live.needed(windows):
            growing.append(next(feed))
        assert torch.equal(live.features(windows), offline.features(windows))
        growing.forget_before(live.keep_from(windows))
    assert growing.held < track.shape[0] // 2
    # the lookahead is a real limit: the live features read no sample past `needed`
    with pytest.raises(ValueError, match="not here yet"):
        short = GrowingTrack()
        short.append(track[: live.needed(chunks[0]) - 1])
        ChunkAudio(enc, [short], fps=16, norm="causal", lookahead=0.25).features(chunks[0])
    with pytest.raises(ValueError, match="whole tracks"):
        ChunkAudio(enc, [GrowingTrack()], fps=16)


def _live_frames(pipe, conditions, settings, track: np.ndarray, seed: int, delivery: int) -> tuple[np.ndarray, LiveVideo, list[int]]:  # type: ignore[no-untyped-def]
    got: list[np.ndarray] = []
    live = LiveVideo(pipe, conditions, settings=settings, seed=seed, sink=got.append)
    held = []
    for piece in pieces(track, delivery):
        live.push(piece)
        live.make_ready()
        held.append(live.tracks[0].held)
    live.finish()
    assert live.complete
    return np.concatenate(got), live, held


@pytest.mark.parametrize("seconds", [3.0, 3.3])
def test_live_session_equals_the_offline_run_frame_for_frame(media: Path, seconds: float) -> None:
    from soul.pipelines.soul_pipeline import SoulPipeline

    pipe = SoulPipeline.from_preset("tiny")
    settings = pipe.resolve(steps=2, **LIVE)
    conditions = pipe.encode_conditions(Image.open(media / PORTRAIT), "a man talking", "", 1, settings)
    track = speech(media, seconds)
    offline: list[np.ndarray] = []
    video_frames = int(round(seconds * 16))
    res = generate_long_video(pipe, conditions, [track], video_frames=video_frames, settings=settings, seed=5, sink=offline.append)
    want = np.concatenate(offline)
    for delivery in (0, 1):
        frames, live, _ = _live_frames(pipe, conditions, settings, track, 5, delivery)
        assert frames.shape == want.shape == (video_frames, 64, 64, 3)
        assert np.array_equal(frames, want)
        assert len(live.records) == len(res.chunks)
    # the live records say when each chunk could start: never before its audio (plus lookahead) was in
    for r in live.records[:-2]:
        end_s = (r["first_frame"] + r["frames"] - 1 + 2) / 16  # last frame + the window context
        assert r["audio_received_s"] >= end_s + 0.25 - 1e-6, r


def test_live_memory_is_flat_and_norm_must_be_causal(media: Path) -> None:
    from soul.pipelines.soul_pipeline import SoulPipeline

    pipe = SoulPipeline.from_preset("tiny")
    settings = pipe.resolve(steps=1, **LIVE)
    conditions = pipe.encode_conditions(Image.open(media / PORTRAIT), "a man talking", "", 1, settings)
    track = speech(media, 40.0)
    frames, live, held = _live_frames(pipe, conditions, settings, track, 0, 2)
    assert frames.shape[0] == 640
    # held audio: the encoder's left context (2 s) + the next chunk's motion, new frames and
    # lookahead + one delivered piece, about 3.4 s, however long the session (40 s here)
    assert max(held[len(held) // 4 :]) < 16000 * 4, max(held)
    assert max(held[len(held) // 4 :]) <= max(held[: len(held) // 4]) + 4000
    with pytest.raises(ValueError, match="causal"):
        LiveVideo(pipe, conditions, settings=pipe.resolve(steps=1), seed=0, sink=lambda f: None)
    with pytest.raises(ValueError, match="ended"):
        live.push(track[:10])
