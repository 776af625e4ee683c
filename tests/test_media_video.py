"""Video: lazy reading, MP4 round trip with audio, frame-exact length, atomic writes."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from soul.errors import InputError
from soul.media.audio import Audio, load_audio
from soul.media.video import VideoWriter, read_video, write_video


def _frames(n: int, h: int = 48, w: int = 64) -> np.ndarray:
    frames = np.zeros((n, h, w, 3), np.uint8)
    for i in range(n):
        frames[i, :, : (i * 3) % w] = (40 + 7 * i) % 255  # a moving edge, different per frame
    return frames


def test_round_trip_with_audio(media: Path, tmp_path: Path) -> None:
    speech = load_audio(media / "audio" / "wan_talk.wav", sample_rate=None, mono=False, normalize=False)
    fps = 25
    n = int(round(speech.duration * fps))  # 125 frames for 5.0 s
    out = write_video(tmp_path / "talk.mp4", _frames(n), fps, audio=speech)
    reader = read_video(out)
    assert reader.num_frames == n
    assert reader.fps == fps
    assert reader.has_audio
    assert reader.read_all().shape == (n, 48, 64, 3)
    back = reader.read_audio(sample_rate=16000)
    assert abs(back.duration - n / fps) <= 1 / fps
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
        assert c.streams.audio[0].codec_context.name == "aac"


def test_audio_longer_than_video_is_cut_to_the_frames(tmp_path: Path) -> None:
    audio = Audio(np.zeros(16000 * 3, np.float32), 16000)
    out = write_video(tmp_path / "cut.mp4", _frames(24), 24, audio=audio)
    back = read_video(out).read_audio()
    assert abs(back.duration - 1.0) <= 1 / 24


def test_fractional_fps_and_odd_sides(tmp_path: Path) -> None:
    frames = _frames(30, h=47, w=65)
    out = write_video(tmp_path / "odd.mp4", frames, 30000 / 1001)
    reader = read_video(out)
    assert reader.num_frames == 30
    assert reader.fps == pytest.approx(29.97, abs=0.01)
    assert (reader.width, reader.height) == (66, 48)
    decoded = reader.read_all()
    # the replicated padding leaves the picture itself intact (up to compression)
    assert np.abs(decoded[:, :47, :65].astype(int) - frames.astype(int)).mean() < 4


def test_lazy_frame_selection(media: Path) -> None:
    reader = read_video(media / "clips" / "talking_face_2.mp4")
    picked = list(reader.frames(start=10, stop=30, step=5))
    assert len(picked) == 4 and picked[0].shape == (reader.height, reader.width, 3)


def test_streaming_writer_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "final.mp4"
    write_video(target, _frames(10), 10)
    before = target.read_bytes()
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(target, 10) as writer:
            writer.write(_frames(5))
            raise RuntimeError("boom")
    assert target.read_bytes() == before  # the old finished file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["final.mp4"]  # no partial file left
    with VideoWriter(tmp_path / "streamed.mp4", 10, audio=Audio(np.zeros(32000, np.float32), 16000)) as writer:
        for batch in np.array_split(_frames(20), 4):
            writer.write(batch)
            assert not (tmp_path / "streamed.mp4").exists()
    assert read_video(tmp_path / "streamed.mp4").num_frames == 20


def test_writer_rejects_bad_frames(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        with VideoWriter(tmp_path / "x.mp4", 10) as writer:
            writer.write(np.zeros((2, 8, 8, 3), np.float32))
    assert not list(tmp_path.iterdir())


def test_bad_videos(tmp_path: Path) -> None:
    fake = tmp_path / "clip.mp4"
    fake.write_text("definitely not a video")
    with pytest.raises(InputError, match="not a readable video"):
        read_video(fake)
    with pytest.raises(InputError, match="not found"):
        read_video(tmp_path / "missing.mp4")


def _psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).reshape(len(a), -1).mean(axis=1)
    return 10 * np.log10(255.0**2 / np.maximum(mse, 1e-12))


def test_writer_owns_what_it_encodes_when_the_caller_reuses_its_buffer(media: Path, tmp_path: Path) -> None:
    """The long-video path hands the writer batches from memory that is reused once `write()` returns.

    Written in the long-video path's batch sizes, once from fresh copies and once from one buffer
    scribbled over after every call, the two videos must decode to the same frames, close to the
    source. With PyAV 18 and frames converted inside `encode()`, they differed by up to 34 levels.
    """
    source = read_video(media / "clips" / "talking_face_1.mp4")
    frames = np.stack([f[::4, ::4] for f in source.frames(stop=112)])  # 175x175: odd sides, padded
    rng = np.random.default_rng(0)

    def write(path: Path, reuse: bool) -> np.ndarray:
        buffer = np.empty((33, *frames.shape[1:]), np.uint8)
        start = 0
        with VideoWriter(path, 25) as writer:
            for size in (33, 24, 24, 24, 7):
                if reuse:
                    buffer[:size] = frames[start : start + size]
                    writer.write(buffer[:size])
                    buffer[:] = rng.integers(0, 256, buffer.shape, dtype=np.uint8)
                else:
                    writer.write(frames[start : start + size].copy())
                start += size
        return read_video(path).read_all()[:, : frames.shape[1], : frames.shape[2]]

    fresh, reused = write(tmp_path / "fresh.mp4", False), write(tmp_path / "reused.mp4", True)
    assert np.array_equal(fresh, reused), f"max difference {np.abs(fresh.astype(int) - reused).max()} levels"
    assert _psnr(reused, frames).min() > 35.0
    assert np.percentile(np.abs(reused.astype(int) - frames), 99.9) <= 16


def _key_frame_indices(path: Path) -> list[int]:
    with av.open(str(path)) as c:
        packets = sorted((p for p in c.demux(c.streams.video[0]) if p.size), key=lambda p: p.pts)
    return [i for i, p in enumerate(packets) if p.is_keyframe]


def test_fragmented_preview_is_readable_while_it_grows(tmp_path: Path) -> None:
    """The live preview: moov first, fragments flushed as they finish, read before it is closed."""
    path = tmp_path / "preview.mp4"
    fps, n = 25, 125
    t = np.arange(48000 * 5) / 48000
    audio = Audio(np.stack([0.3 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 220 * t)], 1).astype(np.float32), 48000)
    frames = _frames(n)
    readable: list[np.ndarray] = []
    with VideoWriter(path, fps, audio=audio, fragmented=True) as writer:
        assert not path.exists()  # the preview appears with its first frames, not before
        for batch in np.array_split(frames, 5):
            writer.write(batch)
            assert path.exists()
            reader = read_video(path)  # still being written: no trailer, only whole fragments
            assert reader.has_audio
            readable.append(reader.read_all() if reader.num_frames else np.zeros((0, 48, 64, 3), np.uint8))
            assert not len(readable[-1]) or reader.fps == fps  # (only the moov before the first fragment: no rate yet)
    counts = [len(r) for r in readable]
    assert counts == sorted(counts), counts  # it only grows
    assert 0 < counts[1] and counts[-1] < n, counts  # a second is visible after two batches; not all before close
    final = read_video(path)
    assert final.num_frames == n
    decoded = final.read_all()
    assert decoded.shape == (n, 48, 64, 3)
    for early in readable:  # what was readable early is what the finished file holds
        assert np.array_equal(early, decoded[: len(early)])
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 4
    back = final.read_audio(sample_rate=None, mono=False)
    assert back.sample_rate == 48000 and back.channels == 2
    assert abs(back.duration - n / fps) <= 2 * 1024 / 48000 + 1 / fps  # cut to the frames, up to AAC framing
    keys = _key_frame_indices(path)
    assert keys[0] == 0 and max(np.diff(keys + [n])) <= fps  # a keyframe (and fragment) at least every second
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name == "h264" and c.streams.audio[0].codec_context.name == "aac"
    assert [p.name for p in tmp_path.iterdir()] == ["preview.mp4"]  # written in place: no temporary file


def test_fragmented_preview_keeps_what_was_written_on_error(tmp_path: Path) -> None:
    path = tmp_path / "preview.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(path, 10, fragmented=True) as writer:
            writer.write(_frames(23))
            raise RuntimeError("boom")
    assert read_video(path).num_frames == 23  # finished with every frame written, encoder delay flushed
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(tmp_path / "never.mp4", 10, fragmented=True):
            raise RuntimeError("boom")
    assert [p.name for p in tmp_path.iterdir()] == ["preview.mp4"]
    with pytest.raises(ValueError, match="no frames"):
        with VideoWriter(tmp_path / "empty.mp4", 10, fragmented=True):
            pass
    assert not (tmp_path / "empty.mp4").exists()
