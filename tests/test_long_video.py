"""Long video: chunk geometry, streaming decode, prefixes as latents, resume after a crash or SIGKILL."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from soul.errors import InputError
from soul.jobs.generate import build_request, run_generate
from soul.media.audio import load_audio
from soul.media.video import read_video
from soul.models.vae import StreamingDecoder, build_vae, decode_latents
from soul.pipelines.long_video import ChunkAudio
from soul.sampling.chunks import chunk_seed, plan_chunks
from soul.jobs.resume import state_dir_for

PORTRAIT = "portraits/hallo_6.jpg"


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def speech(media: Path, seconds: float) -> np.ndarray:
    """Real speech repeated to `seconds` (16 kHz mono)."""
    base = load_audio(media / "audio" / "hallo_3.wav", 16000, normalize=False).samples
    reps = int(np.ceil(seconds * 16000 / base.shape[0]))
    return np.tile(base, reps)[: int(round(seconds * 16000))]


def test_plan_covers_the_sequence_once_with_fixed_chunk_size() -> None:
    plans = plan_chunks(total_latents=100, chunk_latents=21, motion=2)
    assert plans[0].model_latents == 21 and plans[0].first_latent == 1 and plans[0].motion == 0
    covered = [0]  # latent 0 = the portrait frame, made by chunk 0
    for p in plans:
        assert p.model_latents <= 21 and p.new_latents >= 1
        covered += list(range(p.first_latent, p.first_latent + p.new_latents))
        if p.index:
            assert p.motion == 2 and p.video_start == 4 * p.first_latent - 3
    assert covered == list(range(100))
    assert sum(p.video_frames for p in plans) == 4 * 99 + 1
    assert len(plan_chunks(5, 21, 2)) == 1
    with pytest.raises(InputError):
        plan_chunks(100, 21, 20)
    assert chunk_seed(7, 0) == 7 and chunk_seed(7, 3) == chunk_seed(7, 3) != chunk_seed(7, 4)


def test_streaming_decode_equals_one_shot_decode() -> None:
    from soul.config import load_preset

    torch.manual_seed(0)
    vae = build_vae(load_preset("tiny"))
    z = torch.randn(1, 48, 7, 4, 4)
    with torch.no_grad():
        whole = decode_latents(vae, z)
    dec = StreamingDecoder(vae)
    pieces = torch.cat([dec.push(z[:, :, :3]), dec.push(z[:, :, 3:4]), dec.push(z[:, :, 4:])], dim=2)
    assert pieces.shape == whole.shape == (1, 3, 25, 64, 64)
    assert torch.equal(pieces, whole)


def test_chunk_audio_is_read_by_absolute_time(media: Path) -> None:
    """A chunk's features depend on where its windows fall in the track, not on the chunk index."""
    from soul.config import load_preset
    from soul.models.audio_encoder import SoulAudioEncoder, latent_frame_windows

    enc = SoulAudioEncoder.build(load_preset("tiny"))
    track = speech(media, 12.0).astype(np.float32)
    audio = ChunkAudio(enc, [track], fps=16)
    whole = enc.encode_streams([track], fps=16, num_frames=193)  # the one-shot reference: [1, 49, 8, 3, 32]
    chunk = audio.features(latent_frame_windows(41, 2, start=80, total_frames=193))  # latents 20..30 of the video
    assert chunk.shape == (1, 11, 8, 3, 32)
    aligned = (chunk[:, 1:] - whole[:, 21:31]).abs().max()
    shifted = (chunk[:, 1:] - whole[:, 22:32]).abs().max()
    # the chunk encodes only its stretch of the track (attention spans differ a little), but it
    # reads the right moment: far closer to the same times than to one latent frame later
    assert aligned < 0.02 and shifted > 10 * aligned, (aligned, shifted)


def test_prefix_reaches_the_model_as_latents(media: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunk 1's clean prefix is [anchor | last M latents of chunk 0], bit-exact, never re-encoded."""
    from soul.models.transformer import SoulTransformer3DModel
    from soul.jobs.resume import ResumeState
    from soul.pipelines.soul_pipeline import SoulPipeline

    seen: list[tuple[torch.Tensor, torch.Tensor | None]] = []
    original = SoulTransformer3DModel.forward

    def spy(self, hidden_states, timestep, encoder_hidden_states, audio_features=None, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((hidden_states.detach().clone(), kwargs.get("audio_frame_mask")))
        return original(self, hidden_states, timestep, encoder_hidden_states, audio_features, *args, **kwargs)

    monkeypatch.setattr(SoulTransformer3DModel, "forward", spy)
    encodes = []
    real_encode = SoulPipeline.encode_image

    def count_encode(self, *a, **k):  # type: ignore[no-untyped-def]
        encodes.append(1)
        return real_encode(self, *a, **k)

    monkeypatch.setattr(SoulPipeline, "encode_image", count_encode)
    audio = write_wav(tmp_path / "a.wav", speech(media, 6.0))
    chunks: list[torch.Tensor] = []
    out = tmp_path / "o.mp4"

    def grab(record: dict) -> None:
        if record["index"] == 0:
            chunks.append(ResumeState.load_chunk(_state(out), 0))

    req = build_request(preset="tiny", image=media / PORTRAIT, audio=[audio], output=out, steps=2, chunk_frames=21, motion_latents=2, codebook=False)
    res = run_generate(req, on_chunk=grab)
    assert len(res.chunks) >= 2 and len(encodes) == 1
    first = chunks[0]  # [C, 6, h, w]: anchor + 5 sampled latents
    per_chunk = 2 * res.info["passes_per_step"]
    chunk1_calls = seen[per_chunk : 2 * per_chunk]
    assert len(chunk1_calls) == per_chunk and all(h.shape[2] == 6 for h, _ in chunk1_calls)  # 1 + 2 + 3 new
    for h, mask in chunk1_calls:
        assert torch.equal(h[0, :, 0], first[:, 0])  # the anchor
        assert torch.equal(h[0, :, 1:3], first[:, -2:])  # motion frames: chunk 0's last latents
        assert mask is not None and mask[0].tolist() == [False] * 3 + [True] * 3  # the prefix hears no audio


def _state(out: Path):  # type: ignore[no-untyped-def]
    from soul.jobs.resume import ResumeState

    data = json.loads((state_dir_for(out) / "progress.json").read_text())
    return ResumeState(state_dir_for(out), data["fingerprint"], data["chunks"])


def test_crash_then_rerun_gives_identical_frames_and_never_a_partial_output(media: Path, tmp_path: Path) -> None:
    audio = write_wav(tmp_path / "a.wav", speech(media, 7.0))
    fields = dict(preset="tiny", image=media / PORTRAIT, audio=[audio], steps=2, chunk_frames=33, seed=5)
    ref = run_generate(build_request(output=tmp_path / "ref.mp4", **fields))
    assert [c["resumed"] for c in ref.chunks] == [False] * len(ref.chunks) and len(ref.chunks) >= 3
    assert not state_dir_for(tmp_path / "ref.mp4").exists()  # cleaned up after success

    out = tmp_path / "out.mp4"
    out.write_bytes(b"an older finished video")

    class Crash(RuntimeError):
        pass

    def crash_after_two(record: dict) -> None:
        if record["index"] == 1:
            raise Crash

    with pytest.raises(Crash):
        run_generate(build_request(output=out, **fields), on_chunk=crash_after_two)
    assert out.read_bytes() == b"an older finished video"  # never replaced by a partial video
    assert not list(tmp_path.glob(".out.partial-*"))
    resumed = run_generate(build_request(output=out, **fields))
    assert [c["resumed"] for c in resumed.chunks][:2] == [True, True] and not resumed.chunks[2]["resumed"]
    assert np.array_equal(read_video(out).read_all(), read_video(tmp_path / "ref.mp4").read_all())
    assert [c["replaced_fraction"] for c in resumed.chunks] == [c["replaced_fraction"] for c in ref.chunks]

    # a different request does not reuse the state; --no-resume starts over
    with pytest.raises(Crash):
        run_generate(build_request(output=out, **fields), on_chunk=crash_after_two)
    other = run_generate(build_request(output=out, **{**fields, "seed": 6}))
    assert not any(c["resumed"] for c in other.chunks)
    with pytest.raises(Crash):
        run_generate(build_request(output=out, **fields), on_chunk=crash_after_two)
    fresh = run_generate(build_request(output=out, resume=False, **fields))
    assert not any(c["resumed"] for c in fresh.chunks)
    assert np.array_equal(read_video(out).read_all(), read_video(tmp_path / "ref.mp4").read_all())


def test_sigkill_at_a_random_moment_then_rerun_matches_uninterrupted(media: Path, tmp_path: Path) -> None:
    audio = write_wav(tmp_path / "a.wav", speech(media, 12.0))
    common = ["-m", "soul", "generate", "--preset", "tiny", "--image", str(media / PORTRAIT), "--audio", str(audio), "--steps", "2",
              "--chunk-frames", "33", "--seed", "11", "--json"]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

    def run(out: Path) -> dict:
        res = subprocess.run([sys.executable, *common, "-o", str(out)], capture_output=True, text=True, timeout=120, env=env)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    ref = run(tmp_path / "ref.mp4")
    out = tmp_path / "out.mp4"
    proc = subprocess.Popen([sys.executable, *common, "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    first = state_dir_for(out) / "chunk-00000.safetensors"
    deadline = time.monotonic() + 90
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(random.uniform(0.0, 0.4))  # somewhere inside the next chunks: sampling, saving or decoding
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed; make the audio longer"
    assert not out.exists()
    summary = run(out)
    assert any(c["resumed"] for c in summary["chunks"])
    assert summary["num_frames"] == ref["num_frames"] == 192
    assert np.array_equal(read_video(out).read_all(), read_video(tmp_path / "ref.mp4").read_all())
    assert not state_dir_for(out).exists() and not list(tmp_path.glob(".out.partial-*"))


def test_sixty_seconds_of_audio_give_sixty_seconds_of_video(media: Path, tmp_path: Path) -> None:
    audio = write_wav(tmp_path / "minute.wav", speech(media, 60.0))
    out = tmp_path / "minute.mp4"
    res = run_generate(build_request(preset="tiny", image=media / PORTRAIT, audio=[audio], output=out, steps=1, guidance=False))
    video = read_video(out)
    assert video.has_audio
    assert abs(video.num_frames / video.fps - 60.0) <= 1 / video.fps
    assert abs(video.read_audio().duration - 60.0) <= 1 / video.fps
    assert res.num_frames == video.num_frames == 960
    assert len(res.chunks) == 14 and sum(c["frames"] for c in res.chunks) == 960
    for c in res.chunks[1:]:
        assert 0.0 <= c["replaced_fraction"] <= 1.0 and c["threshold"] == res.info["codebook_threshold"]


def test_two_people_across_chunks(media: Path, tmp_path: Path) -> None:
    a = write_wav(tmp_path / "a.wav", speech(media, 5.0))
    b = write_wav(tmp_path / "b.wav", speech(media, 9.0)[-16000 * 5 :])
    left, right = np.zeros((64, 64), np.uint8), np.zeros((64, 64), np.uint8)
    left[:, :32], right[:, 32:] = 255, 255
    Image.fromarray(left).save(tmp_path / "l.png")
    Image.fromarray(right).save(tmp_path / "r.png")
    res = run_generate(build_request(
        preset="tiny", image=media / PORTRAIT, audio=[a, b], masks=[tmp_path / "l.png", tmp_path / "r.png"], output=tmp_path / "duo.mp4",
        steps=1, chunk_frames=33,
    ))
    assert res.info["num_streams"] == 2 and len(res.chunks) >= 2
    assert read_video(tmp_path / "duo.mp4").num_frames == 80


def test_long_video_options_are_checked(media: Path, tmp_path: Path) -> None:
    audio = write_wav(tmp_path / "a.wav", speech(media, 3.0))
    base = dict(preset="tiny", image=media / PORTRAIT, audio=[audio], output=tmp_path / "x.mp4")
    with pytest.raises(InputError, match="maximum"):
        run_generate(build_request(max_duration=2.0, **base))
    with pytest.raises(InputError, match="motion"):
        run_generate(build_request(chunk_frames=9, motion_latents=2, **base))
    with pytest.raises(InputError, match="codebook-blend"):
        build_request(codebook_blend=1.5, **base)
    assert not (tmp_path / "x.mp4").exists()


def test_python_api_streams_frames_of_any_length(media: Path) -> None:
    from soul.pipelines.soul_pipeline import SoulPipeline

    pipe = SoulPipeline.from_preset("tiny")
    track = speech(media, 4.0).astype(np.float32)
    got: list[np.ndarray] = []
    res = pipe.long_video(Image.open(media / PORTRAIT), track, "a man talking", sink=got.append, seed=1, steps=1, chunk_frames=21)
    frames = np.concatenate(got)
    assert frames.shape == (64, 64, 64, 3) and res.frames == 64 and len(res.chunks) == 5  # 17 latents: 6 + 3 + 3 + 3 + 2
    again: list[np.ndarray] = []
    pipe.long_video(Image.open(media / PORTRAIT), track, "a man talking", sink=again.append, seed=1, steps=1, chunk_frames=21)
    assert np.array_equal(frames, np.concatenate(again))
