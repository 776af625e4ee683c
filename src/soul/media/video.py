"""Video reading (lazy) and MP4 writing (H.264 + AAC, atomic) with PyAV.

Writing is streaming: frames go to the encoder as they are produced and the matching stretch of
audio is encoded alongside them, so a ten-minute video never sits in memory. The file appears
under its final name only when complete (temporary name, then `os.replace`), so a crash never
leaves a truncated MP4 that looks finished.

The one exception is the live preview (`VideoWriter(..., fragmented=True)`): a fragmented MP4
written in place, moov first and then one fragment per keyframe (at least one a second), flushed
as it goes, so it can be read and played while it grows.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from soul.errors import InputError
from soul.media.audio import MODEL_SAMPLE_RATE, Audio, load_audio

AAC_SAMPLE_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)


@dataclass(frozen=True)
class VideoInfo:
    """What `soul probe` reports about a video."""

    path: str
    container: str
    codec: str
    fps: float
    num_frames: int
    width: int
    height: int
    duration: float
    has_audio: bool
    audio_sample_rate: int | None
    audio_channels: int | None

    def as_dict(self) -> dict:
        return {"kind": "video", **asdict(self)}


class VideoReader:
    """A video file opened for lazy reading: frames are decoded only while iterating."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(self.path, "file not found", "check the path")
        if self.path.stat().st_size == 0:
            raise InputError(self.path, "is empty (0 bytes)", "give a real video file")
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise InputError(self.path, "has no video track", "give a video file (MP4, MOV, MKV, WebM)")
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate or stream.base_rate
                if not rate:
                    raise InputError(self.path, "has no frame rate", "re-encode it with a constant frame rate")
                self.fps_fraction = Fraction(rate)
                self.width = stream.codec_context.width
                self.height = stream.codec_context.height
                self.codec = stream.codec_context.name
                self.container_format = container.format.name
                self._declared_frames = int(stream.frames or 0)
                if stream.duration is not None and stream.time_base is not None:
                    self._declared_duration = float(stream.duration * stream.time_base)
                elif container.duration:
                    self._declared_duration = container.duration / av.time_base
                else:
                    self._declared_duration = 0.0
                if self._declared_frames > round(self._declared_duration * self.fps_fraction) and stream.duration is not None:
                    # An edit list hides leading frames (a copied clip, `copy_clip`): the sample
                    # count includes them, the stream's duration does not. Count what decodes (by
                    # demuxing: exact, and only for files whose two counts disagree).
                    self._declared_frames = 0
                self.has_audio = bool(container.streams.audio)
                if self.has_audio:
                    acc = container.streams.audio[0].codec_context
                    self.audio_sample_rate: int | None = int(acc.sample_rate or 0) or None
                    self.audio_channels: int | None = int(acc.layout.nb_channels)
                else:
                    self.audio_sample_rate = self.audio_channels = None
        except av.error.FFmpegError as err:
            raise InputError(self.path, f"is not a readable video ({err.__class__.__name__})", "re-encode it as MP4 (H.264)") from None
        self._counted_frames: int | None = None

    @property
    def fps(self) -> float:
        return float(self.fps_fraction)

    @property
    def num_frames(self) -> int:
        """Frame count from the container, or by demuxing (no decoding) when it is not declared
        or an edit list hides some of the stream's frames (packets marked discard are not counted)."""
        if self._declared_frames > 0:
            return self._declared_frames
        if self._counted_frames is None:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                self._counted_frames = sum(1 for p in container.demux(stream) if p.size > 0 and not p.is_discard)
        return self._counted_frames

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps if self.num_frames else self._declared_duration

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames()

    def frames(
        self,
        start: int = 0,
        stop: int | None = None,
        step: int = 1,
        *,
        size: tuple[int, int] | None = None,
        format: str = "rgb24",
    ) -> Iterator[np.ndarray]:
        """Yield frames with index in range(start, stop, step): RGB uint8 [H, W, 3] by default.

        `size=(width, height)` scales and `format` ("gray", "bgr24", ...) converts inside FFmpeg's
        swscale, in one pass from the decoder's YUV: far cheaper than converting full-size RGB
        and resizing it afterwards, which is what analysis at a low resolution needs.
        """
        if step < 1:
            raise ValueError("step must be >= 1")
        for index, frame in self.decoded(start, stop):
            if (index - start) % step == 0:
                yield _to_array(frame, size, format)

    def decoded(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, av.VideoFrame]]:
        """(index, decoded frame) for frames start..stop-1, reached by seeking, frame-exact.

        A clip deep inside a long source would otherwise decode everything before it, so the
        cost of a source's clips would grow with the square of its length. The reader seeks to
        the keyframe at or before `start` and decodes forward, numbering frames by their
        timestamps. Indices are the decode-order count of the frames (what reading from the
        start gives); when timestamps do not land on the frame grid (variable frame rate,
        missing or duplicated timestamps) the reader falls back to counting from the start.
        """
        if stop is not None and stop <= start:
            return
        if start > 0:
            try:
                yield from self._decoded_by_seeking(start, stop)
                return
            except _OffGrid as off:
                start = off.next_index  # frames before it were yielded already
        yield from self._decoded_by_counting(start, stop)

    def _decoded_by_counting(self, start: int, stop: int | None) -> Iterator[tuple[int, av.VideoFrame]]:
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            try:
                for index, frame in enumerate(container.decode(stream)):
                    if stop is not None and index >= stop:
                        break
                    if index >= start:
                        yield index, frame
            except av.error.FFmpegError as err:
                raise InputError(self.path, f"video data is corrupt ({err.__class__.__name__})", "re-encode the file") from None

    def _first_pts(self) -> int | None:
        """Timestamp of frame 0 (found once per reader by decoding the first frame)."""
        if not hasattr(self, "_pts0"):
            self._pts0: int | None = None
            with av.open(str(self.path)) as container:
                try:
                    for frame in container.decode(container.streams.video[0]):
                        self._pts0 = frame.pts
                        break
                except av.error.FFmpegError:
                    pass
        return self._pts0

    def _decoded_by_seeking(self, start: int, stop: int | None) -> Iterator[tuple[int, av.VideoFrame]]:
        pts0 = self._first_pts()
        if pts0 is None:
            raise _OffGrid(start)
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            tb = stream.time_base
            if tb is None:
                raise _OffGrid(start)
            frame_ticks = 1 / (self.fps_fraction * tb)  # timestamp units per frame
            # Aim a little before `start` so rounding never lands past its keyframe.
            target = pts0 + int(math.floor((start - 0.5) * frame_ticks))
            expected = start
            try:
                container.seek(max(target, pts0), stream=stream, backward=True, any_frame=False)
                for frame in container.decode(stream):
                    if frame.pts is None:
                        raise _OffGrid(expected)
                    exact = (frame.pts - pts0) / frame_ticks
                    index = round(exact)
                    if abs(exact - index) > 0.25:
                        raise _OffGrid(expected)
                    if index < expected:
                        continue  # pre-roll from the keyframe up to `start`
                    if index != expected:  # seeked past start, or a frame is missing: count instead
                        raise _OffGrid(expected)
                    if stop is not None and index >= stop:
                        return
                    yield index, frame
                    expected += 1
            except av.error.FFmpegError as err:
                raise InputError(self.path, f"video data is corrupt ({err.__class__.__name__})", "re-encode the file") from None
            if stop is not None and expected < stop and expected < self.num_frames:
                raise _OffGrid(expected)  # the stream ended early by its timestamps: let counting decide

    def read_all(self, step: int = 1) -> np.ndarray:
        """All frames as one array [T, H, W, 3]; only for short clips."""
        frames = list(self.frames(step=step))
        if not frames:
            raise InputError(self.path, "contains no decodable frames", "re-encode the file")
        return np.stack(frames)

    def read_audio(self, sample_rate: int | None = MODEL_SAMPLE_RATE, normalize: bool = False, mono: bool = True) -> Audio:
        if not self.has_audio:
            raise InputError(self.path, "has no audio track", "give a video with sound, or a separate audio file")
        return load_audio(self.path, sample_rate, normalize=normalize, mono=mono)

    def info(self) -> VideoInfo:
        return VideoInfo(
            path=str(self.path),
            container=self.container_format,
            codec=self.codec,
            fps=round(self.fps, 4),
            num_frames=self.num_frames,
            width=self.width,
            height=self.height,
            duration=round(self.duration, 4),
            has_audio=self.has_audio,
            audio_sample_rate=self.audio_sample_rate,
            audio_channels=self.audio_channels,
        )


class _OffGrid(Exception):
    """Timestamps do not give frame indices here; continue by counting from `next_index`."""

    def __init__(self, next_index: int) -> None:
        super().__init__(next_index)
        self.next_index = next_index


def _to_array(frame: av.VideoFrame, size: tuple[int, int] | None, format: str) -> np.ndarray:
    """A decoded frame as a numpy array, scaled (area filter) and converted by swscale in one step."""
    if size is None:
        return frame.to_ndarray(format=format)
    return frame.to_ndarray(width=size[0], height=size[1], format=format, interpolation="AREA")


def read_video(path: str | Path) -> VideoReader:
    return VideoReader(path)


def _as_fraction(fps: float | Fraction) -> Fraction:
    fps = Fraction(fps).limit_denominator(1001)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return fps


def temporary_path_for(path: Path) -> Path:
    """Hidden sibling of `path` that writers use before the atomic rename."""
    return path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")


# A fragmented MP4 for reading while it grows: an empty moov first, then moof+mdat fragments cut
# at every video keyframe, each with its own base offset (what browsers' Media Source and
# players of a growing file expect); every packet written is flushed to the file at once.
# Fragmented output has no edit list, so B-frame reordering would start the picture 2 frames
# late (80 ms at 25 fps) while the sound starts at once; negative composition offsets keep the
# first frame at 0 (the AAC priming, 1024 samples, is all that is left between them).
FRAGMENTED_MP4_OPTIONS = {
    "movflags": "frag_keyframe+empty_moov+default_base_moof+negative_cts_offsets",
    "flush_packets": "1",
}


class VideoWriter:
    """Streaming MP4 writer: H.264 yuv420p video, AAC audio cut to the video's exact length.

    Odd frame sides are padded by one edge pixel because yuv420p needs even sides; the padding is
    replicated, not black, so it is invisible. Audio is encoded in step with the frames.

    `fragmented=True` writes a live preview instead: a fragmented MP4 (moov first, a keyframe and
    a new fragment at least every second) straight to `path`, no temporary name, flushed after
    every write so readers see each finished fragment. The file appears with the first frames;
    on an error it is finished with what was written (it is a preview of what was made, not a
    promise of a complete video), so its readers never see a file that stops mid-fragment.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float | Fraction,
        *,
        audio: Audio | None = None,
        crf: int = 18,
        preset: str = "medium",
        fragmented: bool = False,
    ) -> None:
        self.path = Path(path)
        self.fps = _as_fraction(fps)
        self.audio = audio
        self.crf = crf
        self.preset = preset
        self.fragmented = fragmented
        self.frames_written = 0
        self._tmp = self.path if fragmented else temporary_path_for(self.path)
        self._entered = False
        self._container: av.container.OutputContainer | None = None
        self._vstream = None
        self._astream = None
        self._audio_pos = 0  # samples of self.audio already given to the encoder
        self._audio_pts = 0
        self._size: tuple[int, int] | None = None

    # context manager: the file only appears under its name when the block ends without error
    def __enter__(self) -> "VideoWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._entered = True
        if not self.fragmented:  # a preview is opened by its first frames: no empty file before them
            self._open_container()
        return self

    def _open_container(self) -> None:
        options = FRAGMENTED_MP4_OPTIONS if self.fragmented else None
        self._container = av.open(str(self._tmp), mode="w", format="mp4", container_options=options)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _open_streams(self, width: int, height: int) -> None:
        assert self._container is not None
        even_w, even_h = width + (width % 2), height + (height % 2)
        self._size = (width, height)
        v = self._container.add_stream("libx264", rate=self.fps)
        v.width, v.height, v.pix_fmt = even_w, even_h, "yuv420p"
        v.time_base = Fraction(1, 1) / self.fps
        # mbtree off: with it, libx264's AVX-512 code gives different bytes for the same frames from
        # one run to the next (measured: 3 distinct outputs in 4 processes on an AVX-512 Xeon; none
        # with mbtree off, or with x264 limited to AVX2). Same-seed runs and resumed jobs must give
        # the same video, so determinism wins over mbtree's bitrate saving.
        params = "mbtree=0"
        if self.fragmented:  # a keyframe, hence a fragment readers can see, at least every second
            params += f":keyint={math.ceil(self.fps)}"
        v.options = {"crf": str(self.crf), "preset": self.preset, "x264-params": params}
        self._vstream = v
        if self.audio is not None:
            rate = self.audio.sample_rate if self.audio.sample_rate in AAC_SAMPLE_RATES else 48000
            if rate != self.audio.sample_rate:
                self.audio = _resample(self.audio, rate)
            layout = "mono" if self.audio.channels == 1 else "stereo"
            a = self._container.add_stream("aac", rate=rate)
            a.layout = layout
            a.time_base = Fraction(1, rate)
            self._astream = a

    def write(self, frames: np.ndarray) -> None:
        """Write one frame [H, W, 3] or a batch [T, H, W, 3] of uint8 RGB."""
        if self._container is None and not (self.fragmented and self._entered):
            raise RuntimeError("VideoWriter must be used as a context manager")
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be [T, H, W, 3], got {frames.shape}")
        if frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {frames.dtype}")
        if self._container is None:
            self._open_container()
        if self._vstream is None:
            self._open_streams(frames.shape[2], frames.shape[1])
        assert self._size is not None
        if (frames.shape[2], frames.shape[1]) != self._size:
            raise ValueError(f"frame size changed from {self._size} to {(frames.shape[2], frames.shape[1])}")
        pad_w, pad_h = self._vstream.width - self._size[0], self._vstream.height - self._size[1]
        for frame in frames:
            if pad_w or pad_h:
                frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
            vf = _owned_video_frame(frame, self._vstream.pix_fmt)
            vf.pts = self.frames_written
            self._container.mux(self._vstream.encode(vf))
            self.frames_written += 1
        self._write_audio_until(self.frames_written / self.fps)

    def write_decoded(self, frame: av.VideoFrame) -> None:
        """Write one frame as a decoder gave it: YUV 4:2:0 goes to the encoder with no conversion.

        Re-encoding a stretch of a video (the curation clip writer) would otherwise convert every
        frame YUV -> RGB -> YUV, which costs about as much as decoding it and blurs the chroma
        twice. Other pixel formats and odd sizes take the RGB path of `write`.
        """
        if self._container is None and not (self.fragmented and self._entered):
            raise RuntimeError("VideoWriter must be used as a context manager")
        direct = frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0
        if not direct or (self._size is not None and self._size != (frame.width, frame.height)):
            self.write(frame.to_ndarray(format="rgb24"))
            return
        if self._container is None:
            self._open_container()
        if self._vstream is None:
            self._open_streams(frame.width, frame.height)
        frame.pts = self.frames_written
        frame.time_base = 1 / self.fps  # the encoder's clock (the muxer may have changed the stream's)
        frame.pict_type = av.video.frame.PictureType.NONE  # let the encoder choose; a source I-frame is no reason here
        self._container.mux(self._vstream.encode(frame))
        self.frames_written += 1
        self._write_audio_until(self.frames_written / self.fps)

    def _write_audio_until(self, seconds: Fraction | float) -> None:
        if self._astream is None or self.audio is None:
            return
        rate = self.audio.sample_rate
        end = min(int(round(float(seconds) * rate)), self.audio.samples.shape[0])
        frame_size = self._astream.codec_context.frame_size or 1024
        while end - self._audio_pos >= frame_size or (end == self.audio.samples.shape[0] and self._audio_pos < end):
            stop = min(self._audio_pos + frame_size, end)
            chunk = self.audio.samples[self._audio_pos : stop]
            if chunk.shape[0] < frame_size:  # the encoder wants full frames; pad the final one with silence
                chunk = np.pad(chunk, [(0, frame_size - chunk.shape[0])] + [(0, 0)] * (chunk.ndim - 1))
            planar = np.ascontiguousarray(chunk.T if chunk.ndim == 2 else chunk[None], dtype=np.float32)
            af = av.AudioFrame.from_ndarray(planar, format="fltp", layout=self._astream.layout.name)
            af.sample_rate = rate
            af.pts = self._audio_pts
            self._audio_pts += frame_size
            self._container.mux(self._astream.encode(af))
            self._audio_pos = stop
            if stop >= end:
                break

    def close(self) -> Path:
        """Flush the encoders and move the finished file to its final name."""
        if self._container is None:
            if self.fragmented and self._entered:
                self._entered = False
                raise ValueError(f"no frames were written to {self.path}")
            return self.path
        if self.frames_written == 0:
            self.abort()
            raise ValueError(f"no frames were written to {self.path}")
        self._finish()
        if not self.fragmented:
            os.replace(self._tmp, self.path)
        return self.path

    def _finish(self) -> None:
        assert self._container is not None
        # Audio past the last frame is cut: the output's length is the video's, frame-exact.
        self._write_audio_until(self.frames_written / self.fps)
        self._container.mux(self._vstream.encode(None))
        if self._astream is not None:
            self._container.mux(self._astream.encode(None))
        self._container.close()
        self._container = None
        self._entered = False

    def abort(self) -> None:
        """Drop the partial file; whatever was at the final path before stays untouched.

        A fragmented preview is finished with the frames written so far instead (and left as is
        if even that fails: every fragment already in the file is whole).
        """
        self._entered = False
        if self.fragmented and self._container is not None and self.frames_written > 0:
            try:
                self._finish()
                return
            except (av.error.FFmpegError, ValueError, OSError):
                pass
        opened = self._container is not None
        if self._container is not None:
            try:
                self._container.close()
            except (av.error.FFmpegError, ValueError, OSError):
                pass
            self._container = None
        if not self.fragmented or (opened and self.frames_written == 0):
            self._tmp.unlink(missing_ok=True)


MAX_COPY_TRIM = 3  # frames a copied clip may end early (x264's B-frame runs: up to 3 with the defaults)
_REORDER_LOOKAHEAD = 32  # frames past the end whose packets are read to see where B-frame runs close


def copy_clip(
    source: VideoReader, start: int, stop: int, path: str | Path, *, audio: Audio | None = None, max_trim: int = MAX_COPY_TRIM,
) -> int | None:
    """Write frames start..stop-1 of an H.264 source to `path` by copying its packets; return the
    end frame actually written, or None (nothing written: the caller re-encodes).

    Re-encoding 720p costs more than everything else a curated clip goes through, and loses
    quality a second time; copied packets decode to exactly the source's frames. The copy starts
    at the IDR frame at or before `start`: the frames before `start` (at most one GOP) go in the
    file with negative timestamps, and the MP4 muxer writes an edit list that hides them, so
    FFmpeg-based readers (PyAV, OpenCV, torchvision) decode exactly start..end-1. (Readers that
    ignore edit lists, e.g. decord, would see those leading frames.) The end: with B-frames a
    frame can depend on a later one, so a clip can only end where every packet up to its last
    frame's shows a frame inside it; when `stop` is not such a point, the clip ends at the latest
    one at most `max_trim` frames earlier (x264's default B-frame runs need up to 3). None for
    another codec, timestamps off the frame grid, no IDR at or before `start`, or no such end.
    `audio` (any rate; cut to the video's length) is encoded as AAC. The file appears atomically,
    as with `VideoWriter`.
    """
    if source.codec != "h264" or start < 0 or stop <= start:
        return None
    pts0 = source._first_pts()
    if pts0 is None:
        return None
    plan = _copy_run(source, start, stop, pts0, max_trim)
    if plan is None:
        return None
    packets, end = plan
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path_for(path)
    try:
        with av.open(str(source.path)) as src, av.open(str(tmp), mode="w", format="mp4") as out:
            template = src.streams.video[0]
            vs = out.add_stream_from_template(template)
            sound = _aac_stream(out, audio) if audio is not None else None  # every stream before the first packet
            tb = template.time_base
            frame_ticks = 1 / (source.fps_fraction * tb)
            base = pts0 + round(start * frame_ticks)  # `start` at time 0; the pre-roll before it, hidden
            for packet in packets:
                packet.stream = vs
                packet.pts, packet.dts = packet.pts - base, packet.dts - base
                packet.time_base = tb
                out.mux(packet)
            if sound is not None:
                _encode_audio(out, *sound, Fraction(end - start) / source.fps_fraction)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return end


def _copy_run(source: VideoReader, start: int, stop: int, pts0: int, max_trim: int) -> tuple[list[av.Packet], int] | None:
    """The packets from the IDR at or before `start` through the last one frames start..end-1
    need, with the largest end in stop-max_trim..stop where no included packet shows a frame at or
    after end; else None."""
    with av.open(str(source.path)) as container:
        stream = container.streams.video[0]
        tb = stream.time_base
        if tb is None:
            return None
        frame_ticks = 1 / (source.fps_fraction * tb)
        if start > 0:
            container.seek(pts0 + int(math.floor((start - 0.5) * frame_ticks)), stream=stream, backward=True, any_frame=False)
        run: list[tuple[int, av.Packet]] = []
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None or packet.dts is None:
                continue
            exact = (packet.pts - pts0) / frame_ticks
            index = round(exact)
            if abs(exact - index) > 0.25:
                return None
            if not run and (index > start or not packet.is_keyframe or not _is_idr(bytes(packet))):
                return None  # the copy must open on an IDR frame at or before `start`
            run.append((index, packet))
            if index >= stop + _REORDER_LOOKAHEAD:
                break
    for end in range(stop, max(start + 1, stop - max_trim) - 1, -1):
        needed = [k for k, (index, _) in enumerate(run) if start <= index < end]
        if len(needed) != end - start:
            continue  # a frame is missing in the source
        last = needed[-1]
        if all(index < end for index, _ in run[: last + 1]):
            return [packet for _, packet in run[: last + 1]], end
    return None


def _is_idr(data: bytes) -> bool:
    """Whether an H.264 packet (length-prefixed NAL units, as in MP4) holds an IDR slice (type 5)."""
    pos = 0
    while pos + 5 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        if data[pos + 4] & 0x1F == 5:
            return True
        pos += 4 + size
    return False


def _aac_stream(out: av.container.OutputContainer, audio: Audio) -> tuple[av.audio.stream.AudioStream, Audio]:
    """An AAC stream for `audio` (resampled to 48 kHz when AAC cannot take its rate)."""
    if audio.sample_rate not in AAC_SAMPLE_RATES:
        audio = _resample(audio, 48000)
    stream = out.add_stream("aac", rate=audio.sample_rate)
    stream.layout = "mono" if audio.channels == 1 else "stereo"
    stream.time_base = Fraction(1, audio.sample_rate)
    return stream, audio


def _encode_audio(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream, audio: Audio, seconds: Fraction) -> None:
    """Encode `audio` into `stream`, cut (or padded with silence) to `seconds`."""
    rate = audio.sample_rate
    n = int(round(seconds * rate))
    samples = audio.samples[:n]
    if samples.shape[0] < n:
        samples = np.pad(samples, [(0, n - samples.shape[0])] + [(0, 0)] * (samples.ndim - 1))
    size = stream.codec_context.frame_size or 1024
    for pos in range(0, n, size):
        chunk = samples[pos : pos + size]
        if chunk.shape[0] < size:
            chunk = np.pad(chunk, [(0, size - chunk.shape[0])] + [(0, 0)] * (chunk.ndim - 1))
        planar = np.ascontiguousarray(chunk.T if chunk.ndim == 2 else chunk[None], dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=stream.layout.name)
        frame.sample_rate, frame.pts = rate, pos
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def _resample(audio: Audio, rate: int) -> Audio:
    """Resample with PyAV's swresample so the writer can take any input rate."""
    layout = "mono" if audio.channels == 1 else "stereo"
    resampler = av.AudioResampler(format="flt", layout=layout, rate=rate)
    planar = np.ascontiguousarray(audio.samples.T if audio.samples.ndim == 2 else audio.samples[None], dtype=np.float32)
    frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=layout)
    frame.sample_rate = audio.sample_rate
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    data = np.concatenate(out).astype(np.float32)
    if audio.channels > 1:
        data = data.reshape(-1, 2)
    return Audio(data, rate)


def write_video(path: str | Path, frames: Iterable[np.ndarray] | np.ndarray, fps: float | Fraction, *, audio: Audio | None = None) -> Path:
    """Write a whole clip at once (frames as an array [T, H, W, 3] or any iterable of frames/batches)."""
    with VideoWriter(path, fps, audio=audio) as writer:
        if isinstance(frames, np.ndarray):
            writer.write(frames)
        else:
            for f in frames:
                writer.write(f)
    return Path(path)


def _owned_video_frame(rgb: np.ndarray, pix_fmt: str) -> av.VideoFrame:
    """An encoder-ready frame whose pixels live in memory FFmpeg allocated and owns.

    The encoder may read a frame after `encode()` returns (x264 keeps look-ahead frames). With
    PyAV 18 a frame converted inside `encode()` can still point at memory the caller reuses, so
    videos came out with pixels that were never generated. Converting here, while the caller's
    array is alive, hands the encoder a frame of its own.
    """
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return frame.reformat(format=pix_fmt)
