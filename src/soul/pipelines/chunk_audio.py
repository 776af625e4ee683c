"""Audio features of one chunk's latent frames, read by absolute time from a whole or a growing track.

One code path serves offline runs (the whole track is known) and live sessions (audio arrives as
the session goes, ``GrowingTrack``): ``ChunkAudio.features`` reads the same samples and computes the
same numbers in both, so a live session equals an offline run with the same layout frame for frame
(tested). What a live session cannot have, two settings make explicit (``SamplingSettings``):

- ``audio_norm``: the encoder's input normalisation (zero mean, unit variance) uses the whole
  track's statistics offline (``track``; per-chunk statistics would make chunk borders audible to
  the model) or, live, those of everything up to the end of what the chunk reads (``causal``),
  accumulated in fixed blocks of absolute samples so the sums do not depend on how the audio was
  delivered;
- ``audio_lookahead``: how far past a chunk's last audio window the encoder may look (offline: its
  whole context margin, ``context_seconds``; live, every second of it is a second of latency).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from soul.media.spool import track_stats
from soul.models.audio_encoder import SoulAudioEncoder, resample_to_video, window_features

STATS_BLOCK = 4000
"""Samples per block of the causal statistics (0.25 s at 16 kHz)."""
CAUSAL_VAR_FLOOR = 1e-6
"""Least variance the causal normalisation divides by (an RMS of -60 dBFS): a session that opens
on near-silence must not blow its noise floor up to the level of speech."""


class Track(Protocol):
    """Samples by absolute index; past the known end, digital silence."""

    @property
    def received(self) -> int: ...

    @property
    def ended(self) -> bool: ...

    def read(self, start: int, length: int) -> np.ndarray: ...


class ArrayTrack:
    """A whole track held in memory (offline)."""

    def __init__(self, samples: np.ndarray) -> None:
        self.samples = np.asarray(samples, dtype=np.float32)

    @property
    def received(self) -> int:
        return int(self.samples.shape[0])

    @property
    def ended(self) -> bool:
        return True

    def read(self, start: int, length: int) -> np.ndarray:
        part = self.samples[start : start + length]
        return np.pad(part, (0, length - part.shape[0])) if part.shape[0] < length else part


class GrowingTrack:
    """A track that arrives in pieces and forgets what no later chunk reads (memory flat in length)."""

    def __init__(self) -> None:
        self._buffer = np.zeros(0, dtype=np.float32)
        self._offset = 0  # absolute index of _buffer[0]
        self._ended = False

    @property
    def received(self) -> int:
        return self._offset + int(self._buffer.shape[0])

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def held(self) -> int:
        """Samples in memory."""
        return int(self._buffer.shape[0])

    def append(self, samples: np.ndarray) -> None:
        if self._ended:
            raise ValueError("the track has ended: no more audio can be added")
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if x.size and not np.all(np.isfinite(x)):
            raise ValueError("audio samples must be finite")
        self._buffer = np.concatenate([self._buffer, x])

    def end(self) -> None:
        self._ended = True

    def forget_before(self, index: int) -> None:
        """Drop samples before absolute ``index`` (a reader that asks for them again is a bug)."""
        cut = min(max(0, index - self._offset), self._buffer.shape[0])
        if cut:
            self._buffer = self._buffer[cut:].copy()
            self._offset += cut

    def read(self, start: int, length: int) -> np.ndarray:
        if start < self._offset:
            raise ValueError(f"samples from {start} were already forgotten (held from {self._offset})")
        if not self._ended and start + length > self.received:
            raise ValueError(f"samples up to {start + length} are not here yet ({self.received} received)")
        part = self._buffer[start - self._offset : start - self._offset + length]
        return np.pad(part, (0, length - part.shape[0])) if part.shape[0] < length else part


class CausalStats:
    """Mean and variance of a track's samples ``[0, end)`` for growing ``end``, in constant memory.

    Whole blocks of ``STATS_BLOCK`` absolute samples are summed (float64) once, in order; the partial
    block is summed at each query. The same samples give the same float64 sums however they were
    delivered, which is what makes a live session's normalisation equal an offline run's.
    """

    def __init__(self, track: Track) -> None:
        self.track = track
        self.blocks = 0
        self._sum = 0.0
        self._sq = 0.0

    @property
    def keep_from(self) -> int:
        """The first sample a later query may still read."""
        return self.blocks * STATS_BLOCK

    def __call__(self, end: int) -> tuple[float, float]:
        if end < self.keep_from:
            raise ValueError(f"causal statistics only move forward ({end} < {self.keep_from})")
        end = max(1, end)
        while (self.blocks + 1) * STATS_BLOCK <= end:
            block = self.track.read(self.blocks * STATS_BLOCK, STATS_BLOCK).astype(np.float64)
            self._sum += float(block.sum())
            self._sq += float(np.square(block).sum())
            self.blocks += 1
        tail = self.track.read(self.keep_from, end - self.keep_from).astype(np.float64)
        total, sq = self._sum + float(tail.sum()), self._sq + float(np.square(tail).sum())
        mean = total / end
        return mean, max(sq / end - mean * mean, CAUSAL_VAR_FLOOR)


class ChunkAudio:
    """Audio features of a chunk's latent frames, read from the tracks (one per person) by absolute time.

    The encoder's input normalisation is applied to each chunk's stretch as it is read, so no
    normalised copy of a long track exists; tracks are padded with digital silence past their
    end. A chunk encodes only the stretch its windows read, with the encoder's context margin
    before it and ``lookahead`` seconds (default: the same margin) after it, so memory is bounded
    by the chunk, not by the video.
    """

    def __init__(
        self,
        encoder: SoulAudioEncoder,
        streams: Sequence[np.ndarray | Track],
        fps: float,
        *,
        norm: str = "track",
        lookahead: float | None = None,
    ) -> None:
        if norm not in ("track", "causal"):
            raise ValueError(f"norm must be track or causal, got {norm!r}")
        self.encoder = encoder
        self.fps = float(fps)
        self.tracks: list[Track] = [s if hasattr(s, "read") else ArrayTrack(s) for s in streams]  # type: ignore[misc]
        self.norm = norm
        self.lookahead = encoder.context_seconds if lookahead is None else float(lookahead)
        normalize = bool(getattr(encoder.feature_extractor, "do_normalize", True))
        self._causal = [CausalStats(t) for t in self.tracks] if normalize and norm == "causal" else None
        self._stats: list[tuple[float, float]] | None = None
        self.last_seconds = 0.0  # wall time of the last `features` call (a live session's latency budget)
        if not normalize:
            self._stats = [(0.0, 1.0 - 1e-7)] * len(self.tracks)
        elif norm == "track":
            if not all(t.ended for t in self.tracks):
                raise ValueError("whole-track normalisation needs whole tracks: use norm='causal' for live audio")
            self._stats = [track_stats(t.samples) for t in self.tracks]  # type: ignore[attr-defined]

    def span(self, windows: torch.Tensor) -> tuple[int, int, int]:
        """``(first feature frame, first sample, samples)`` of the stretch ``windows`` read."""
        enc = self.encoder
        sr, hop, field_ = enc.sample_rate, enc.hop, enc.receptive_field
        lo, hi = int(windows.min()), int(windows.max())
        centre = (field_ - 1) / 2.0
        j0 = max(0, math.floor((lo / self.fps * sr - centre) / hop) - 1)
        j1 = max(j0, math.ceil((hi / self.fps * sr - centre) / hop) + 1)
        before = math.ceil(enc.context_seconds * sr / hop)
        after = math.ceil(self.lookahead * sr / hop)
        a, b = max(0, j0 - before), j1 + after + 1
        return a, a * hop, (b - a - 1) * hop + field_

    def needed(self, windows: torch.Tensor) -> int:
        """Samples a track must have received before ``features(windows)`` can be computed."""
        _, start, length = self.span(windows)
        return start + length

    def keep_from(self, windows: torch.Tensor) -> int:
        """The first sample that ``features`` of these or later windows, or the statistics, still read."""
        _, start, _ = self.span(windows)
        return min([start] + ([] if self._causal is None else [c.keep_from for c in self._causal]))

    def features(self, windows: torch.Tensor) -> torch.Tensor:
        """``windows [F, W]`` (absolute video frames) -> ``[N, F, W, L, D]`` float32."""
        began = time.perf_counter()
        enc = self.encoder
        lo, hi = int(windows.min()), int(windows.max())
        a, start, length = self.span(windows)
        out = []
        for i, track in enumerate(self.tracks):
            if self._causal is not None:
                mean, var = self._causal[i](min(start + length, track.received))
            else:
                mean, var = self._stats[i]  # type: ignore[index]
            part = (track.read(start, length) - np.float32(mean)) / np.float32(math.sqrt(var + 1e-7))
            feats = enc.encode(part.astype(np.float32, copy=False), normalized=True)
            rate = resample_to_video(
                feats, hi - lo + 1, self.fps, feature_rate=enc.feature_rate, feature_offset=enc.feature_offset + start / enc.sample_rate - lo / self.fps
            )
            out.append(window_features(rate, windows - lo))
        stacked = torch.stack(out, dim=0)
        self.last_seconds = time.perf_counter() - began
        return stacked


__all__ = ["ArrayTrack", "CAUSAL_VAR_FLOOR", "CausalStats", "ChunkAudio", "GrowingTrack", "STATS_BLOCK", "Track"]
