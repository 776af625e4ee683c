"""A live stream: fragmented MP4 (H.264 + AAC) handed out as whole boxes while it is being made.

Browsers play it with Media Source Extensions: an init segment (``ftyp`` + ``moov``) first, then
media segments (``moof`` + ``mdat``) appended as they come. FFmpeg's MP4 muxer closes a fragment
when the next video keyframe arrives, and PyAV has no call to flush one, so every frame is a
keyframe (x264 ``keyint=1``, ``zerolatency``: no look-ahead, no B-frames): each frame leaves as
soon as the next one is encoded, and the last frame of a chunk goes out with the next chunk's
first (one frame of lag). The price is bitrate (all-intra H.264), small at the miniature's 64x64.
Cutting fragments on every packet instead (``frag_every_frame``) was tried: with an audio track,
FFmpeg 8.1 gets the first video sample's duration wrong and a frame is lost per fragment flush.
A player that joins late (a reconnect) can start at any fragment: every one opens with an IDR.

Timing: the muxer's default shift of negative timestamps (the AAC encoder's priming packet)
moved the video by a frame against the sound, so it is off (``avoid_negative_ts``), and the first
``AAC_PRIMING`` samples given to the encoder are dropped so that the decoded sound lines up with
the frames (a click and a flash at the same instant play at the same instant: tested).

The muxer's byte stream is split here into whole top-level boxes (``BoxSplitter``) because a
player must be given the init segment alone and media segments whole; PyAV writes bytes, not boxes.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from fractions import Fraction
from typing import Literal

import av
import numpy as np

from soul.media.video import _owned_video_frame

UnitKind = Literal["init", "media"]
UnitSink = Callable[[bytes, UnitKind], None]
"""Receives the init segment once, then every media segment (``moof`` + ``mdat``), in order."""

LIVE_MP4_OPTIONS = {
    # a fragment per keyframe (= per frame), moov first with no samples, offsets from each moof (what
    # MSE expects); no trailer: its index of every fragment (mfra) is what players of a live stream
    # never read, and collecting it grew the muxer's memory by ~90 bytes a frame (2 MB in 23 minutes)
    "movflags": "frag_keyframe+empty_moov+default_base_moof+skip_trailer",
    "avoid_negative_ts": "disabled",
    "flush_packets": "1",
}
AUDIO_AHEAD_FRAMES = 3
"""Codec frames of sound encoded past the last video frame: the AAC encoder hands a packet out
only frames later, and the muxer holds video until it has sound as late (measured: with one frame
ahead, the stream lagged by 3 video frames instead of 1)."""
AAC_PRIMING = 1024
"""Samples of delay FFmpeg's AAC encoder puts before the sound (fragmented MP4 has no edit list to hide it)."""
MIME = 'video/mp4; codecs="avc1.42E01E, mp4a.40.2"'
"""What a player's ``MediaSource.addSourceBuffer`` is given (H.264 constrained baseline, AAC-LC)."""


class BoxSplitter:
    """Bytes in any pieces -> whole top-level MP4 boxes ``(type, bytes)``."""

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        self._pending += data
        boxes = []
        while len(self._pending) >= 8:
            size, kind = struct.unpack(">I4s", self._pending[:8])
            header = 8
            if size == 1:  # a 64-bit size follows the type
                if len(self._pending) < 16:
                    break
                size, header = struct.unpack(">Q", self._pending[8:16])[0], 16
            if size < header:
                raise ValueError(f"MP4 box {kind!r} of size {size}: the muxer wrote something that is not a box")
            if len(self._pending) < size:
                break
            boxes.append((kind.decode("latin-1"), bytes(self._pending[:size])))
            del self._pending[:size]
        return boxes


class _Output(io.RawIOBase):
    """The file object PyAV writes to: not seekable, so the muxer never goes back."""

    def __init__(self, on_bytes: Callable[[bytes], None]) -> None:
        self.on_bytes = on_bytes

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.on_bytes(bytes(data))
        return len(data)


class LiveMP4Stream:
    """Frames and mono audio in, fragmented MP4 units out to ``sink``, as they are encoded.

    ``write_audio`` takes samples as they arrive (they may run ahead of the frames; the muxer
    interleaves by time); ``write_frames`` takes one chunk's frames.
    """

    def __init__(self, sink: UnitSink, fps: float, *, sample_rate: int = 16_000, crf: int = 20, size: tuple[int, int] | None = None) -> None:
        """``size`` (width, height), when known, opens the encoders now (the init segment goes out at
        once, and the first frames do not pay for opening x264); otherwise the first frames open them."""
        self.sink = sink
        self.fps = Fraction(fps).limit_denominator(1001)
        self.sample_rate = int(sample_rate)
        self.crf = crf
        self.frames_written = 0
        self.audio_written = 0  # samples given to the encoder
        self.units = 0  # media units handed to the sink
        self.bytes_out = 0
        self._splitter = BoxSplitter()
        self._init: list[bytes] = []
        self._unit: list[bytes] = []
        self._container: av.container.OutputContainer | None = None
        self._video = None
        self._audio = None
        self._audio_pending = np.zeros(0, dtype=np.float32)
        self._skip = AAC_PRIMING  # input samples still to drop so that the decoded sound starts at 0
        self._closed = False
        if size is not None:
            self._open(*size)

    # ------------------------------------------------------------------------------ output

    def _on_bytes(self, data: bytes) -> None:
        self.bytes_out += len(data)
        for kind, box in self._splitter.feed(data):
            if self.units == 0 and kind in ("ftyp", "moov", "free"):
                self._init.append(box)
                if kind == "moov":
                    self.sink(b"".join(self._init), "init")
                continue
            self._unit.append(box)
            if kind == "mdat":
                self.units += 1
                self.sink(b"".join(self._unit), "media")
                self._unit = []

    def _open(self, width: int, height: int) -> None:
        self._container = av.open(_Output(self._on_bytes), mode="w", format="mp4", options=LIVE_MP4_OPTIONS)
        v = self._container.add_stream("libx264", rate=self.fps)
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        v.time_base = Fraction(1, 1) / self.fps
        # baseline profile (no B-frames: nothing waits for a later frame), zero latency, IDR on demand
        v.options = {"crf": str(self.crf), "preset": "veryfast", "tune": "zerolatency", "profile": "baseline", "x264-params": "mbtree=0:keyint=1"}
        a = self._container.add_stream("aac", rate=self.sample_rate)
        a.layout = "mono"
        a.time_base = Fraction(1, self.sample_rate)
        self._video, self._audio = v, a
        self._container.start_encoding()  # open both encoders and write the header (the init segment) now

    # ------------------------------------------------------------------------------ input

    def write_audio(self, samples: np.ndarray) -> None:
        """Mono float samples at ``sample_rate``, in order, as they arrive.

        They are encoded only up to ``AUDIO_AHEAD_FRAMES`` codec frames past the last video frame:
        sound never runs further ahead of the picture in the stream.
        """
        self._check_open()
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        drop = min(self._skip, x.shape[0])
        self._skip -= drop
        self._audio_pending = np.concatenate([self._audio_pending, x[drop:]])
        if self._container is not None:
            self._encode_audio(final=False)

    def _encode_audio(self, final: bool) -> None:
        """Encode pending sound up to the video's end (plus ``AUDIO_AHEAD_FRAMES`` unless ``final``)."""
        assert self._container is not None and self._audio is not None
        size = self._audio.codec_context.frame_size or 1024
        video_end = int(round(self.frames_written / float(self.fps) * self.sample_rate)) - AAC_PRIMING  # in encoder samples
        until = video_end if final else video_end + AUDIO_AHEAD_FRAMES * size
        while self._audio_pending.shape[0] and self.audio_written < until and (final or self._audio_pending.shape[0] >= size):
            part = self._audio_pending[: min(size, until - self.audio_written)]
            if part.shape[0] < size:
                part = np.pad(part, (0, size - part.shape[0]))
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(part[None]), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = self.sample_rate, self.audio_written
            self.audio_written += size
            self._audio_pending = self._audio_pending[size:]
            self._container.mux(self._audio.encode(frame))

    def write_frames(self, frames: np.ndarray) -> None:
        """One chunk of uint8 RGB frames ``[T, H, W, 3]`` (even sides); the first becomes an IDR frame."""
        self._check_open()
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or frames.shape[1] % 2 or frames.shape[2] % 2:
            raise ValueError(f"frames must be uint8 [T, H, W, 3] with even sides, got {frames.dtype} {frames.shape}")
        if self._container is None:
            self._open(frames.shape[2], frames.shape[1])
        assert self._container is not None and self._video is not None
        if (frames.shape[2], frames.shape[1]) != (self._video.width, self._video.height):
            raise ValueError(f"frames are {frames.shape[2]}x{frames.shape[1]}, the stream {self._video.width}x{self._video.height}")
        for rgb in frames:
            vf = _owned_video_frame(rgb, "yuv420p")
            vf.pts = self.frames_written
            self._container.mux(self._video.encode(vf))
            self.frames_written += 1
        self._encode_audio(final=False)

    def close(self) -> None:
        """Flush the encoders; sound not yet encoded past the video's last frame is dropped."""
        if self._closed:
            return
        self._closed = True
        if self._container is None:
            return
        self._encode_audio(final=True)
        self._container.mux(self._video.encode(None))
        self._container.mux(self._audio.encode(None))
        self._container.close()
        self._container = None

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("the live stream is closed")


__all__ = ["AAC_PRIMING", "AUDIO_AHEAD_FRAMES", "BoxSplitter", "LIVE_MP4_OPTIONS", "LiveMP4Stream", "MIME", "UnitKind", "UnitSink"]
