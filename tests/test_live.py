"""Live generation: audio in pieces -> the same chunks, features and frames as an offline run, in flat memory."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
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


def _live_frames(pipe, conditions, settings, track: np.ndarray, seed: int, delivery: int) -> tuple[np.ndarray, LiveVideo, list[int], list[dict]]:  # type: ignore[no-untyped-def]
    got: list[np.ndarray] = []
    live = LiveVideo(pipe, conditions, settings=settings, seed=seed, sink=got.append)
    held, records = [], []
    for piece in pieces(track, delivery):
        live.push(piece)
        records += live.make_ready()
        held.append(live.tracks[0].held)
    records += live.finish()
    assert live.complete and live.chunks_made == len(records) and live.last_record == records[-1]
    return np.concatenate(got), live, held, records


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
        frames, live, _, records = _live_frames(pipe, conditions, settings, track, 5, delivery)
        assert frames.shape == want.shape == (video_frames, 64, 64, 3)
        assert np.array_equal(frames, want)
        assert len(records) == len(res.chunks)
    # the live records say when each chunk could start: never before its audio (plus lookahead) was in
    for r in records[:-2]:
        end_s = (r["first_frame"] + r["frames"] - 1 + 2) / 16  # last frame + the window context
        assert r["audio_received_s"] >= end_s + 0.25 - 1e-6, r


def test_latency_histogram_percentiles_in_constant_memory() -> None:
    from soul.jobs.live import LatencyHistogram

    h = LatencyHistogram()
    assert h.percentile(50) is None
    values = np.random.default_rng(0).gamma(2.0, 0.02, size=5000)
    for v in values:
        h.add(float(v))
    for q in (50, 90, 99):
        assert 0 <= h.percentile(q) - float(np.percentile(values, q)) <= 0.0011, q  # the bin's upper edge
    assert h.max == float(values.max()) and h.percentile(100) == round(float(values.max()), 4)
    h.add(1e6)  # past the last bin: counted there, the maximum exact
    assert h.max == 1e6


def test_live_memory_is_flat_and_norm_must_be_causal(media: Path) -> None:
    from soul.pipelines.soul_pipeline import SoulPipeline

    pipe = SoulPipeline.from_preset("tiny")
    settings = pipe.resolve(steps=1, **LIVE)
    conditions = pipe.encode_conditions(Image.open(media / PORTRAIT), "a man talking", "", 1, settings)
    track = speech(media, 40.0)
    frames, live, held, _ = _live_frames(pipe, conditions, settings, track, 0, 2)
    assert frames.shape[0] == 640
    # held audio: the encoder's left context (2 s) + the next chunk's motion, new frames and
    # lookahead + one delivered piece, about 3.4 s, however long the session (40 s here)
    assert max(held[len(held) // 4 :]) < 16000 * 4, max(held)
    assert max(held[len(held) // 4 :]) <= max(held[: len(held) // 4]) + 4000
    with pytest.raises(ValueError, match="causal"):
        LiveVideo(pipe, conditions, settings=pipe.resolve(steps=1), seed=0, sink=lambda f: None)
    with pytest.raises(ValueError, match="ended"):
        live.push(track[:10])


def _soul(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "soul", *args], capture_output=True, text=True, timeout=300)


def test_soul_live_writes_a_stream_that_matches_soul_generate_with_the_live_layout(tmp_path: Path) -> None:
    """The CLI end to end: the stream equals the offline video of the same layout up to the two encoders."""
    from soul.media.live_stream import LiveMP4Stream
    from soul.media.video import read_video
    from soul.miniature.portrait import HELD_OUT_SEED, draw_face, random_face
    from soul.miniature.speech import synthesize_babble

    face = tmp_path / "face.png"
    draw_face(random_face(HELD_OUT_SEED + 2), size=256).save(face)
    speech = tmp_path / "speech.wav"
    sf.write(speech, synthesize_babble(4.0, 16000, seed=HELD_OUT_SEED + 2), 16000)
    live = _soul("live", "-i", str(face), "-a", str(speech), "-o", str(tmp_path / "live.mp4"), "--as-fast-as-possible", "--json", "--seed", "4")
    assert live.returncode == 0, live.stderr
    summary = json.loads(live.stdout)
    assert summary["frames"] == 64 and summary["settings"]["audio_norm"] == "causal" and summary["first_frame_latency_s"] > 0
    flags = ["--chunk-frames", "13", "--first-chunk-frames", "5", "--audio-lookahead", "0.25", "--audio-norm", "causal"]
    for name, seed, extra in (("same", "4", flags), ("seed", "5", flags), ("default", "4", [])):
        r = _soul("generate", "-i", str(face), "-a", str(speech), "-o", str(tmp_path / f"{name}.mp4"), "--preset", "mini-fast", "--seed", seed, *extra)
        assert r.returncode == 0, r.stderr
    frames = {k: np.stack(list(read_video(tmp_path / f"{k}.mp4").frames())).astype(np.float32) for k in ("live", "same", "seed", "default")}
    assert all(f.shape == (64, 64, 64, 3) for f in frames.values())
    with open(tmp_path / "again.mp4", "wb") as sink:  # the floor: the offline frames through the live encoder once more
        stream = LiveMP4Stream(lambda data, kind: sink.write(data), 16)
        stream.write_frames(frames["same"].astype(np.uint8))
        stream.close()
    floor = float(np.abs(np.stack(list(read_video(tmp_path / "again.mp4").frames())) - frames["same"]).mean())
    mad = {k: float(np.abs(frames[k] - frames["live"]).mean()) for k in ("same", "seed", "default")}
    assert mad["same"] <= 1.25 * floor, (mad, floor)  # what differs is the encoders
    assert mad["seed"] > 1.25 * floor and mad["default"] > 1.25 * floor, (mad, floor)  # the measure sees other videos


def test_soul_live_bad_input_is_one_line_and_leaves_no_file(tmp_path: Path) -> None:
    face = tmp_path / "face.png"
    Image.new("RGB", (64, 64), "gray").save(face)
    r = _soul("live", "-i", str(face), "-a", str(tmp_path / "missing.wav"), "-o", str(tmp_path / "x.mp4"))
    assert r.returncode == 2 and "missing.wav" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    speech = tmp_path / "s.wav"
    sf.write(speech, np.zeros(8000, np.float32), 16000)
    r = _soul("live", "-i", str(face), "-a", str(speech), "-o", str(tmp_path / "x.webm"))
    assert r.returncode == 2 and "fragmented MP4" in r.stderr, r.stderr
    r = _soul("live", "-i", str(speech), "-a", str(speech), "-o", str(tmp_path / "y.mp4"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = _soul("live", "-i", str(face), "-a", str(speech), "--first-chunk-frames", "6")
    assert r.returncode == 2 and "first-chunk-frames" in r.stderr, r.stderr
    assert not any(tmp_path.glob("*.mp4")) and not any(tmp_path.glob("*.webm"))
