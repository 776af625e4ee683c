"""Audio for long runs without whole-track float64 temporaries or a second copy per use.

A 30-minute job holds its speech for the whole run. Decoding it the simple way (all frames in a
list, concatenated, loudness measured with a float64 cumulative sum, a 48 kHz copy for the MP4 and
a normalised copy for the encoder) costs ~20 bytes of peak memory per sample, which at 10 minutes
outweighs everything the models need. So here:

- every track is decoded frame by frame into a raw float32 file (``spool_audio``), never as a list;
- the model's 16 kHz mono track is read back once and loudness-normalised in place, the loudness
  measured block by block (same gating as ``soul.media.audio.gated_loudness_db``);
- the soundtrack for the MP4 stays on disk: ``FileSamples`` gives ``VideoWriter`` the slices it
  asks for, read from the file as the video advances, so it costs no resident memory at all;
- the encoder's zero-mean/unit-variance input normalisation is applied per chunk with statistics
  of the whole track (``track_stats``), so no normalised copy of the track exists.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from soul.errors import InputError
from soul.media.audio import PEAK_CEILING_DB, TARGET_LOUDNESS_DB, _open_audio_stream
from soul.media.video import AAC_SAMPLE_RATES

_BLOCK = 1 << 20  # samples per pass over a long array: bounded temporaries


@dataclass(frozen=True)
class SpooledAudio:
    """Float32 samples in a raw file: ``frames`` x ``channels`` at ``sample_rate``, interleaved."""

    path: Path
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / float(self.sample_rate)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start:stop`` (clipped to the track) as ``[n]`` (mono) or ``[n, channels]``."""
        start, stop = max(0, start), min(self.frames, stop)
        count = max(0, stop - start) * self.channels
        with open(self.path, "rb") as f:
            f.seek(start * self.channels * 4)
            data = np.fromfile(f, dtype=np.float32, count=count)
        return data if self.channels == 1 else data.reshape(-1, self.channels)

    def load(self) -> np.ndarray:
        """The whole track in memory (one float32 copy)."""
        return self.read(0, self.frames)


class FileSamples:
    """An array-like over a ``SpooledAudio``: ``shape``, ``ndim``, ``dtype`` and slicing.

    Enough of the ndarray interface for ``VideoWriter``, which only reads consecutive slices as it
    muxes audio in step with the frames, so the soundtrack is never resident as a whole.
    """

    def __init__(self, track: SpooledAudio) -> None:
        self.track = track
        self.dtype = np.dtype(np.float32)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.track.frames,) if self.track.channels == 1 else (self.track.frames, self.track.channels)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.track.frames

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError("FileSamples supports contiguous slices only")
        start, stop, _ = key.indices(self.track.frames)
        return self.track.read(start, stop)

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        data = self.track.load()
        return data if dtype is None else data.astype(dtype)


def spool_audio(path: Path, directory: Path, *, sample_rate: int | None = None, mono: bool = True) -> SpooledAudio:
    """Decode ``path`` (any audio or a video's audio track) to a raw float32 file in ``directory``.

    ``sample_rate=None`` keeps the source rate when AAC can carry it, else uses 48 kHz. Bad files
    raise the same InputErrors as ``soul.media.audio.load_audio``.
    """
    container, stream = _open_audio_stream(Path(path))
    source_rate = stream.codec_context.sample_rate or stream.sample_rate or 48000
    rate = sample_rate or (source_rate if source_rate in AAC_SAMPLE_RATES else 48000)
    layout = "mono" if mono or (stream.codec_context.channels or 1) < 2 else "stereo"
    channels = 1 if layout == "mono" else 2
    resampler = av.AudioResampler(format="flt", layout=layout, rate=rate)
    fd, name = tempfile.mkstemp(dir=directory, suffix=".f32")
    values = 0
    with os.fdopen(fd, "wb") as out, container:
        try:
            for frame in container.decode(stream):
                for part in resampler.resample(frame):
                    arr = part.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                    out.write(arr.tobytes())
                    values += arr.size
            for part in resampler.resample(None):
                arr = part.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                out.write(arr.tobytes())
                values += arr.size
        except av.error.FFmpegError as err:
            if not values:
                raise InputError(path, f"audio cannot be decoded ({err.__class__.__name__})", "re-export the audio") from None
            # a damaged tail keeps what decoded, as players do
    if values < channels:
        raise InputError(path, "contains no audio samples (zero length)", "give a recording with sound in it")
    return SpooledAudio(Path(name), rate, channels, values // channels)


def _hop_energies(x: np.ndarray, hop: int) -> np.ndarray:
    """Sum of squares of each whole ``hop`` of ``x`` (float64), computed in bounded blocks."""
    n_hops = x.shape[0] // hop
    out = np.empty(n_hops, np.float64)
    per = max(1, _BLOCK // hop)
    for h0 in range(0, n_hops, per):
        h1 = min(n_hops, h0 + per)
        seg = x[h0 * hop : h1 * hop].astype(np.float64)
        out[h0:h1] = (seg * seg).reshape(h1 - h0, hop).sum(axis=1)
    return out


def loudness_normalize_(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Bring mono speech ``x`` (float32) to the model's input loudness, in place; returns ``x``.

    Same measure and gain as ``soul.media.audio.normalize_loudness`` (400 ms blocks every 100 ms,
    absolute and relative gates, a peak ceiling), computed from per-hop energies so no float64 copy
    of the track is ever made.
    """
    block = max(1, int(0.4 * sample_rate))
    hop = max(1, block // 4)
    if x.shape[0] < block or block != 4 * hop:
        from soul.media.audio import normalize_loudness

        x[:] = normalize_loudness(x, sample_rate)
        return x
    e = _hop_energies(x, hop)
    count = (x.shape[0] - block) // hop + 1
    powers = (e[0:count] + e[1 : count + 1] + e[2 : count + 2] + e[3 : count + 3]) / block
    powers = powers[powers > 10 ** (-70 / 10)]
    if powers.size == 0:
        return x
    gated = powers[powers >= np.mean(powers) * 10 ** (-10 / 10)]
    gain_db = TARGET_LOUDNESS_DB - float(10 * np.log10(np.mean(gated)))
    peak = max(float(np.abs(x[s : s + _BLOCK]).max()) for s in range(0, x.shape[0], _BLOCK))
    if peak > 0:
        gain_db = min(gain_db, PEAK_CEILING_DB - 20 * math.log10(peak))
    x *= np.float32(10 ** (gain_db / 20))
    return x


def track_stats(x: np.ndarray) -> tuple[float, float]:
    """Mean and variance of a long float32 track, accumulated in float64 blocks."""
    n = x.shape[0]
    total = sum(float(x[s : s + _BLOCK].astype(np.float64).sum()) for s in range(0, n, _BLOCK))
    mean = total / n
    sq = sum(float(((x[s : s + _BLOCK].astype(np.float64) - mean) ** 2).sum()) for s in range(0, n, _BLOCK))
    return mean, sq / n


def mix_spooled(tracks: list[SpooledAudio], directory: Path, sample_rate: int) -> SpooledAudio:
    """Several speakers' soundtracks -> one stereo track, summed and limited, streamed on disk.

    Mono tracks go to both channels. If the sum would clip, the whole mix is scaled so its peak
    is 0.99 (a first pass finds the peak), as ``soul.jobs.generate`` always did in memory.
    """
    if any(t.sample_rate != sample_rate for t in tracks):
        raise ValueError("tracks must share the sample rate")
    frames = max(t.frames for t in tracks)
    step = _BLOCK // 2

    def block(s: int) -> np.ndarray:
        out = np.zeros((min(step, frames - s), 2), np.float32)
        for t in tracks:
            part = t.read(s, s + step)
            part = np.repeat(part[:, None], 2, axis=1) if part.ndim == 1 else part[:, :2]
            out[: part.shape[0]] += part
        return out

    peak = max(float(np.abs(block(s)).max()) for s in range(0, frames, step))
    scale = np.float32(0.99 / peak) if peak > 0.99 else None
    fd, name = tempfile.mkstemp(dir=directory, suffix=".f32")
    with os.fdopen(fd, "wb") as out:
        for s in range(0, frames, step):
            b = block(s)
            if scale is not None:
                b *= scale
            out.write(b.tobytes())
    return SpooledAudio(Path(name), sample_rate, 2, frames)
