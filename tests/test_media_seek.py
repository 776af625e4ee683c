"""Seeking reads: a clip read by seeking is exactly the clip read from the start, frame for frame."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from soul.media.audio import load_audio, read_audio_range
from soul.media.video import VideoReader, VideoWriter, read_video


def _reencode(src: Path, dst: Path, *, keyint: int, gap_at: int | None = None) -> Path:
    """`src` as H.264 with a keyframe every `keyint` frames and B-frames (and its sound as AAC).

    `gap_at` leaves out one timestamp there (a variable-frame-rate file): indices by timestamp
    and by count then disagree, and the reader must count.
    """
    reader = read_video(src)
    audio = reader.read_audio(48000)
    with av.open(str(dst), "w") as out:
        v = out.add_stream("libx264", rate=reader.fps_fraction)
        v.width, v.height, v.pix_fmt = reader.width // 2 * 2, reader.height // 2 * 2, "yuv420p"
        v.time_base = 1 / reader.fps_fraction
        v.options = {"crf": "28", "preset": "ultrafast", "x264-params": f"keyint={keyint}:min-keyint={keyint}:bframes=2"}
        a = out.add_stream("aac", rate=48000)
        a.layout = "mono"
        for i, rgb in enumerate(reader.frames()):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[: v.height, : v.width]), format="rgb24").reformat(format="yuv420p")
            frame.pts = i + (1 if gap_at is not None and i >= gap_at else 0)
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
        for pos in range(0, audio.samples.shape[0], 1024):
            chunk = np.ascontiguousarray(audio.samples[pos : pos + 1024][None])
            af = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            af.sample_rate, af.pts = 48000, pos
            out.mux(a.encode(af))
        out.mux(a.encode(None))
    return dst


@pytest.fixture(scope="module")
def gop12(media: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _reencode(media / "clips" / "talking_face_2.mp4", tmp_path_factory.mktemp("seek") / "gop12.mp4", keyint=12)


def _from_start(reader: VideoReader, start: int, stop: int, **kw) -> list[np.ndarray]:  # noqa: ANN003
    return [f for i, f in enumerate(reader.frames(**kw)) if start <= i < stop]


def test_a_clip_read_by_seeking_equals_the_same_frames_read_from_the_start(gop12: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reader = read_video(gop12)
    n = reader.num_frames
    assert n == 125
    counted: list[int] = []
    original = VideoReader._decoded_by_counting

    def spy(self, start, stop):  # noqa: ANN001, ANN202
        counted.append(start)
        return original(self, start, stop)

    monkeypatch.setattr(VideoReader, "_decoded_by_counting", spy)
    full = list(reader.frames())
    # on a keyframe, just after / before one, mid-GOP across keyframes, one frame, the very end, past it
    for start, stop in [(12, 20), (13, 14), (11, 40), (50, 77), (97, 98), (120, 125), (118, 140)]:
        seeked = list(reader.frames(start, stop))
        assert len(seeked) == min(stop, n) - start, (start, stop)
        assert all(np.array_equal(a, b) for a, b in zip(seeked, full[start:stop])), (start, stop)
    assert counted == [0], "every read after the first must seek, not count from the start"
    # scaled grey frames (what analysis decodes) come from the same frames
    grey = list(reader.frames(50, 60, size=(200, 200), format="gray"))
    assert np.array_equal(np.stack(grey), np.stack(_from_start(reader, 50, 60, size=(200, 200), format="gray")))
    assert grey[0].shape == (200, 200) and grey[0].dtype == np.uint8


def test_variable_frame_rate_falls_back_to_counting(media: Path, tmp_path: Path) -> None:
    path = _reencode(media / "clips" / "talking_face_3.mp4", tmp_path / "vfr.mp4", keyint=10, gap_at=60)
    reader = read_video(path)
    full = list(reader.frames())
    for start, stop in [(30, 50), (55, 70), (80, 90)]:  # before, across and after the missing timestamp
        seeked = list(reader.frames(start, stop))
        assert len(seeked) == stop - start and all(np.array_equal(a, b) for a, b in zip(seeked, full[start:stop])), (start, stop)


def test_audio_range_by_seeking_matches_the_whole_track(gop12: Path) -> None:
    whole = load_audio(gop12, 16000, normalize=False)
    for start, end in [(0.0, 1.0), (1.52, 3.96), (4.0, 6.0)]:  # the last one runs past the end: zero-padded
        part = read_audio_range(gop12, start, end, 16000).samples
        ref = whole.slice(start, end).samples
        assert part.shape == ref.shape == (round(end * 16000) - round(start * 16000),)
        # same samples up to the resampler's start-up (it starts a second earlier here)
        assert np.abs(part - ref).max() < 0.02, (start, end)
        assert np.corrcoef(part[:16000], ref[:16000])[0, 1] > 0.999


def test_clip_writer_takes_decoded_frames_without_conversion(gop12: Path, tmp_path: Path) -> None:
    reader = read_video(gop12)
    out = tmp_path / "clip.mp4"
    with VideoWriter(out, reader.fps_fraction, preset="ultrafast") as writer:
        for _, frame in reader.decoded(40, 65):
            writer.write_decoded(frame)
    clip = read_video(out)
    assert clip.num_frames == 25 and clip.fps_fraction == Fraction(25)
    a, b = np.stack(list(clip.frames())).astype(np.float64), np.stack(list(reader.frames(40, 65))).astype(np.float64)
    psnr = 10 * np.log10(255.0**2 / ((a - b) ** 2).mean())
    assert psnr > 35, psnr


def test_clips_are_copied_exactly_from_any_start_and_end_at_most_three_frames_early(gop12: Path, tmp_path: Path) -> None:
    """Copied clips decode to exactly the source's frames (the lead-in from the previous IDR hidden
    by an edit list), for starts on and between keyframes; their readers count only those frames
    (ours and OpenCV's); ends move back only as far as the B-frame runs require."""
    import cv2

    from soul.media.audio import Audio
    from soul.media.video import MAX_COPY_TRIM, copy_clip

    reader = read_video(gop12)
    full = list(reader.frames())
    with av.open(str(gop12)) as c:
        pts = sorted(p.pts for p in c.demux(c.streams.video[0]) if p.size)
    with av.open(str(gop12)) as c:
        keys = sorted(pts.index(p.pts) for p in c.demux(c.streams.video[0]) if p.size and p.is_keyframe)
    sound = Audio(np.zeros(16000 * 5, np.float32), 16000)
    cases = [(keys[1], keys[3]), (keys[1] + 1, keys[3]), (keys[1] + 5, keys[2] + 7), (0, 41), (keys[-1] + 3, len(full))]
    trims = []
    for n, (start, stop) in enumerate(cases):
        out = tmp_path / f"clip{n}.mp4"
        end = copy_clip(reader, start, stop, out, audio=sound)
        assert end is not None and stop - MAX_COPY_TRIM <= end <= stop, (start, stop, end)
        trims.append(stop - end)
        copied = read_video(out)
        frames = list(copied.frames())
        assert copied.num_frames == len(frames) == end - start and copied.has_audio, (start, stop, end)
        assert all(np.array_equal(a, b) for a, b in zip(frames, full[start:end], strict=True)), (start, stop)
        assert abs(copied.read_audio().duration - (end - start) / reader.fps) <= 1024 / 16000
        capture, seen = cv2.VideoCapture(str(out)), 0
        while capture.read()[0]:
            seen += 1
        assert seen == end - start
    assert trims[0] == 0 and trims[-1] == 0  # a whole-GOP clip, and one running to the source's end
    assert max(trims) > 0  # the mid-GOP ends of this B-frame source do need a trim somewhere


def test_a_copy_of_another_codec_is_refused(tmp_path: Path) -> None:
    from soul.media.video import copy_clip

    mpeg4 = tmp_path / "mpeg4.mp4"
    with av.open(str(mpeg4), "w") as out:
        v = out.add_stream("mpeg4", rate=25)
        v.width = v.height = 32
        v.pix_fmt = "yuv420p"
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
    assert copy_clip(read_video(mpeg4), 2, 8, tmp_path / "no.mp4") is None  # not H.264: the caller re-encodes
    assert not (tmp_path / "no.mp4").exists()
