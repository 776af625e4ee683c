"""Audio loading with PyAV: any container FFmpeg reads (WAV, FLAC, MP3, OGG, M4A, a video's track).

PyAV is used instead of soundfile/librosa because one decoder then covers every format and the
audio track of videos, with no system ffmpeg, and it resamples while decoding.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

from soul.config import MODEL_SAMPLE_RATE  # noqa: F401  (media users take the one audio rate from here)
from soul.errors import InputError

TARGET_LOUDNESS_DB = -23.0
PEAK_CEILING_DB = -1.0


@dataclass
class Audio:
    """Decoded audio: float32 samples in [-1, 1], shape [n] (mono) or [n, channels]."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration(self) -> float:
        return self.samples.shape[0] / float(self.sample_rate)

    @property
    def channels(self) -> int:
        return 1 if self.samples.ndim == 1 else self.samples.shape[1]

    def mono(self) -> np.ndarray:
        return self.samples if self.samples.ndim == 1 else self.samples.mean(axis=1).astype(np.float32)

    def slice(self, start_s: float, end_s: float) -> "Audio":
        """A time range, zero-padded past the end so callers get exactly the span they asked for."""
        a, b = round(start_s * self.sample_rate), round(end_s * self.sample_rate)
        part = self.samples[max(a, 0) : max(b, 0)]
        want = b - a
        if part.shape[0] < want:
            pad = [(0, want - part.shape[0])] + [(0, 0)] * (self.samples.ndim - 1)
            part = np.pad(part, pad)
        return Audio(np.ascontiguousarray(part, dtype=np.float32), self.sample_rate)


@dataclass(frozen=True)
class AudioInfo:
    """What `soul probe` reports about an audio input."""

    path: str
    container: str
    codec: str
    channels: int
    sample_rate: int
    duration: float
    loudness_db: float
    peak_db: float

    def as_dict(self) -> dict:
        return {"kind": "audio", **asdict(self)}


def _open_audio_stream(path: Path) -> tuple[av.container.InputContainer, av.audio.stream.AudioStream]:
    if not path.exists():
        raise InputError(path, "file not found", "check the path")
    if path.is_dir():
        raise InputError(path, "is a directory, not an audio file", "give the path of an audio file")
    if path.stat().st_size == 0:
        raise InputError(path, "is empty (0 bytes)", "give a real audio file")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as err:
        raise InputError(path, f"is not a readable audio or video file ({err.__class__.__name__})", "use WAV, FLAC, MP3, OGG, M4A or a video with sound") from None
    if not container.streams.audio:
        container.close()
        raise InputError(path, "has no audio track", "give a file that contains sound, e.g. a WAV or a video with audio")
    return container, container.streams.audio[0]


def _decode(path: Path, sample_rate: int | None, mono: bool) -> tuple[np.ndarray, int, av.audio.stream.AudioStream, str]:
    container, stream = _open_audio_stream(path)
    codec = stream.codec_context.name
    rate = sample_rate or stream.codec_context.sample_rate or stream.sample_rate
    layout = "mono" if mono else ("stereo" if (stream.codec_context.channels or 1) >= 2 else "mono")
    resampler = av.AudioResampler(format="flt", layout=layout, rate=rate)
    chunks: list[np.ndarray] = []
    try:
        with container:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except av.error.FFmpegError as err:
        if not chunks:
            raise InputError(path, f"audio cannot be decoded ({err.__class__.__name__})", "re-export the audio") from None
        # A damaged tail keeps what decoded; that is what players do too.
    n_channels = 1 if layout == "mono" else 2
    data = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    data = data.astype(np.float32, copy=False)
    if n_channels > 1:
        data = data.reshape(-1, n_channels)
    if data.shape[0] == 0:
        raise InputError(path, "contains no audio samples (zero length)", "give a recording with sound in it")
    return data, rate, stream, codec


def read_audio_range(path: str | Path, start_s: float, end_s: float, sample_rate: int = MODEL_SAMPLE_RATE, *, mono: bool = True) -> Audio:
    """Exactly `end_s - start_s` seconds of a file's sound (zero-padded past its end), reached by seeking.

    What `load_audio(path).slice(start_s, end_s)` gives, without decoding the track up to
    `start_s`: clips deep inside an hour-long source cost the same as the first one. The decoder
    seeks a second before the range (AAC frames depend on their predecessor, and the resampler
    needs a run-up), places each decoded frame by its timestamp and resamples the stretch in one
    piece, so the result depends only on the file and the range, never on what was read before.
    """
    path = Path(path)
    preroll = 1.0
    container, stream = _open_audio_stream(path)
    src_rate = int(stream.codec_context.sample_rate or stream.sample_rate)
    layout = "mono" if mono else ("stereo" if (stream.codec_context.channels or 1) >= 2 else "mono")
    channels = 1 if layout == "mono" else 2
    rate = sample_rate or src_rate
    # Source-rate samples from `first` (a multiple of the rate ratio keeps the resampler's phase fixed).
    first = max(0, int(math.floor((start_s - preroll) * src_rate)))
    ratio = src_rate // math.gcd(src_rate, rate)
    first -= first % ratio
    last = int(math.ceil((end_s + 0.1) * src_rate))
    pieces: list[tuple[int, np.ndarray]] = []
    try:
        with container:
            pts0 = _first_audio_pts(path)
            tb = stream.time_base
            if first > 0 and tb is not None:
                container.seek(pts0 + int(first / src_rate / tb), stream=stream, backward=True, any_frame=False)
            resampler = av.AudioResampler(format="flt", layout=layout, rate=src_rate)
            for frame in container.decode(stream):
                pos = int(round((frame.pts - pts0) * tb * src_rate)) if frame.pts is not None and tb is not None else None
                if pos is None:
                    raise InputError(path, "audio frames carry no timestamps", "re-encode the file")
                if pos >= last:
                    break
                data = [f.to_ndarray().reshape(-1, channels) for f in resampler.resample(frame)]
                if data and pos + sum(d.shape[0] for d in data) > first:
                    pieces.append((pos, np.concatenate(data)))
    except av.error.FFmpegError as err:
        if not pieces:
            raise InputError(path, f"audio cannot be decoded ({err.__class__.__name__})", "re-export the audio") from None
    length = last - first
    stretch = np.zeros((length, channels), np.float32)
    for pos, data in pieces:  # place by timestamp: a seek that lands early or late changes nothing
        a, b = max(pos, first), min(pos + data.shape[0], last)
        if b > a:
            stretch[a - first : b - first] = data[a - pos : b - pos]
    if rate != src_rate:
        stretch = _resample_block(stretch, src_rate, rate, layout)
    offset = int(round(first * rate / src_rate))
    a, b = round(start_s * rate) - offset, round(end_s * rate) - offset
    part = stretch[max(a, 0) : max(b, 0)]
    if part.shape[0] < b - a:
        part = np.pad(part, [(0, b - a - part.shape[0]), (0, 0)])
    part = part[:, 0] if channels == 1 else part
    return Audio(np.ascontiguousarray(part, dtype=np.float32), rate)


def _first_audio_pts(path: Path) -> int:
    """Timestamp of the first decoded audio frame: sample 0 of the track, as `load_audio` counts."""
    container, stream = _open_audio_stream(path)
    with container:
        for frame in container.decode(stream):
            if frame.pts is not None:
                return int(frame.pts)
    return 0


def _resample_block(samples: np.ndarray, src_rate: int, rate: int, layout: str) -> np.ndarray:
    """Resample one contiguous block [n, ch] with swresample (the resampler `load_audio` uses)."""
    resampler = av.AudioResampler(format="flt", layout=layout, rate=rate)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples.T), format="fltp", layout=layout)
    frame.sample_rate = src_rate
    frame.pts = 0
    channels = samples.shape[1]
    out = [f.to_ndarray().reshape(-1, channels) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1, channels) for f in resampler.resample(None)]
    return np.concatenate(out) if out else np.zeros((0, channels), np.float32)


def gated_loudness_db(samples: np.ndarray, sample_rate: int) -> float:
    """Programme loudness in dBFS: mean power over 400 ms blocks with BS.1770-style gating.

    Gating (absolute -70 dB, then relative -10 dB) ignores pauses so speech with silences is judged
    by its speech. K-weighting is left out: it changes speech loudness by well under a dB and would
    need a filter library; the target is a consistent input level, not broadcast compliance.
    """
    x = samples if samples.ndim == 1 else samples.mean(axis=1)
    block = max(1, int(0.4 * sample_rate))
    hop = max(1, block // 4)
    if x.shape[0] < block:
        powers = np.array([np.mean(x.astype(np.float64) ** 2)])
    else:
        idx = np.arange(0, x.shape[0] - block + 1, hop)
        csum = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
        powers = (csum[idx + block] - csum[idx]) / block
    powers = powers[powers > 10 ** (-70 / 10)]
    if powers.size == 0:
        return float("-inf")
    relative_gate = np.mean(powers) * 10 ** (-10 / 10)
    gated = powers[powers >= relative_gate]
    return float(10 * np.log10(np.mean(gated)))


def peak_db(samples: np.ndarray) -> float:
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    return float(20 * np.log10(peak)) if peak > 0 else float("-inf")


def normalize_loudness(samples: np.ndarray, sample_rate: int, target_db: float = TARGET_LOUDNESS_DB) -> np.ndarray:
    """Bring speech to a fixed loudness so the audio encoder sees the levels it was trained on.

    The gain is capped so the peak stays under -1 dBFS (no clipping); digital silence is returned as is.
    """
    loudness = gated_loudness_db(samples, sample_rate)
    if not np.isfinite(loudness):
        return samples.astype(np.float32, copy=True)
    gain_db = target_db - loudness
    peak = peak_db(samples)
    if np.isfinite(peak):
        gain_db = min(gain_db, PEAK_CEILING_DB - peak)
    return (samples * np.float32(10 ** (gain_db / 20))).astype(np.float32)


def load_audio(
    path: str | Path, sample_rate: int | None = MODEL_SAMPLE_RATE, *, normalize: bool = True, mono: bool = True
) -> Audio:
    """Decode any audio (or a video's audio track) to float32 at `sample_rate` (None keeps the source rate)."""
    path = Path(path)
    data, rate, _, _ = _decode(path, sample_rate, mono)
    if normalize:
        data = normalize_loudness(data, rate)
    return Audio(np.ascontiguousarray(data), rate)


def audio_info(path: str | Path) -> AudioInfo:
    """Describe an audio input as Soul will use it, validating it the same way generation does."""
    path = Path(path)
    data, rate, stream, codec = _decode(path, None, mono=False)
    with av.open(str(path)) as container:
        container_name = container.format.name
    return AudioInfo(
        path=str(path),
        container=container_name,
        codec=codec,
        channels=int(stream.codec_context.channels or 1),
        sample_rate=int(rate),
        duration=round(data.shape[0] / rate, 4),
        loudness_db=round(gated_loudness_db(data, rate), 2),
        peak_db=round(peak_db(data), 2),
    )
