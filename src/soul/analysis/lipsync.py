"""`lmsync`: a weight-free audio-visual offset estimator (mouth signal vs speech-band energy).

SyncNet needs weights no package ships; this estimator needs only dlib's landmarks, so every clip
gets an offset and a confidence offline. It correlates a per-frame mouth signal of a face (by
default the darkness of the mouth's centre, see `soul.analysis.mouth`) with the log energy of the
speech band (300-3400 Hz, where articulation lives) at every lag within ±`max_offset` frames.

Both series are lightly smoothed (a 3-frame Hann window, which absorbs the 0-100 ms by which lips
lead the sound and per-frame jitter) and z-scored so loud and quiet speakers compare alike.
Levels are correlated, not first differences: on the real talking clips in shared/media the
differences (which drop the slow speech/pause structure and amplify jitter) separated own from
foreign audio far less often.

Sign convention (SyncNet's): ``offset > 0`` means the video lags the audio by that many frames
(the sound of a syllable comes before the mouth shows it). To cancel a measured offset, delay the
audio by ``offset`` frames: ``shift_audio(samples, sr, fps, offset)``.

Confidence is the peak correlation minus the median correlation over all lags: foreign audio has
no distinct peak and scores lower; synced real clips score ~0.2-0.5. It is not on SyncNet's
scale, which is why the fields are named ``lmsync_offset``/``lmsync_conf`` and never mixed with
``syncnet_offset``/``syncnet_conf``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from soul.errors import InputError

if TYPE_CHECKING:
    from soul.analysis.faces import FaceAnalyzer, FaceTrack

SPEECH_BAND_HZ = (300.0, 3400.0)
DEFAULT_MAX_OFFSET = 15


@dataclass(frozen=True)
class SyncEstimate:
    """Result of one estimate: the offset (frames, SyncNet sign), confidence, and the lag curve."""

    offset: int
    confidence: float
    lags: np.ndarray
    correlations: np.ndarray

    def as_fields(self, prefix: str = "lmsync") -> dict[str, float | int]:
        return {f"{prefix}_offset": int(self.offset), f"{prefix}_conf": float(self.confidence)}


def speech_band_energy(
    samples: np.ndarray,
    sample_rate: int,
    fps: float,
    num_frames: int,
    *,
    band: tuple[float, float] = SPEECH_BAND_HZ,
) -> np.ndarray:
    """Log energy of the speech band in a window centred on each video frame, one value per frame.

    The window spans two frame periods (Hann), so each value sees its neighbours' edges and the
    series is not aliased by the frame rate; frames past the end of the audio get silence.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.ndim != 1:
        raise InputError("audio", f"must be mono [n] or [n, channels], got shape {x.shape}", "decode with soul.media.audio")
    if sample_rate <= 0 or fps <= 0 or num_frames <= 0:
        raise InputError("audio", f"needs positive sample_rate, fps and num_frames, got {sample_rate}, {fps}, {num_frames}", None)
    hop = sample_rate / fps
    win = int(2 ** np.ceil(np.log2(max(32, 2 * hop))))
    window = np.hanning(win)
    freqs = np.fft.rfftfreq(win, 1.0 / sample_rate)
    in_band = (freqs >= band[0]) & (freqs <= band[1])
    padded = np.pad(x, (win, win + int(np.ceil(hop * num_frames))))
    centres = (np.arange(num_frames) + 0.5) * hop + win
    starts = np.round(centres - win / 2).astype(np.int64)
    segments = padded[starts[:, None] + np.arange(win)[None, :]] * window
    power = np.abs(np.fft.rfft(segments, axis=1)) ** 2
    band_power = power[:, in_band].sum(axis=1)
    # A floor 40 dB under the clip's mean keeps silence (or the zero padding of a shifted track)
    # from turning into huge negative logs whose edges would dominate the correlation.
    floor = max(float(band_power.mean()) * 1e-4, 1e-10)
    return np.log(band_power + floor)


def _prepare(series: np.ndarray, smooth: int) -> np.ndarray:
    s = np.asarray(series, dtype=np.float64)
    if smooth > 1:
        kernel = np.hanning(smooth + 2)[1:-1]
        kernel /= kernel.sum()
        s = np.convolve(np.pad(s, smooth, mode="edge"), kernel, mode="same")[smooth:-smooth]
    std = s.std()
    return (s - s.mean()) / std if std > 1e-12 else np.zeros_like(s)


def estimate_offset(
    mouth: np.ndarray,
    energy: np.ndarray,
    *,
    max_offset: int = DEFAULT_MAX_OFFSET,
    smooth: int = 3,
) -> SyncEstimate:
    """Offset and confidence from a mouth-opening series and a per-frame audio energy series.

    At lag L the correlation pairs mouth[t] with energy[t - L]: a positive best lag means the
    mouth follows the sound, i.e. the video lags the audio (SyncNet's positive offset).
    """
    m = np.asarray(mouth, dtype=np.float64)
    e = np.asarray(energy, dtype=np.float64)
    if m.ndim != 1 or e.ndim != 1 or m.shape != e.shape:
        raise InputError("lmsync", f"mouth and energy must be 1-D and equal in length, got {m.shape} and {e.shape}", None)
    if not np.all(np.isfinite(m)) or not np.all(np.isfinite(e)):
        raise InputError("lmsync", "mouth or energy series contains NaN/inf", "check the landmarks and audio")
    if max_offset < 1:
        raise InputError("max_offset", f"must be >= 1, got {max_offset}", None)
    min_overlap = 2 * max_offset + 8
    if m.shape[0] - max_offset < min_overlap:
        raise InputError("lmsync", f"needs at least {min_overlap + max_offset} frames, got {m.shape[0]}", "use a longer clip")
    a, b = _prepare(m, smooth), _prepare(e, smooth)
    lags = np.arange(-max_offset, max_offset + 1)
    n = a.shape[0]
    corr = np.empty(lags.shape[0], dtype=np.float64)
    for i, lag in enumerate(lags):
        x = a[max(lag, 0) : n + min(lag, 0)]
        y = b[max(-lag, 0) : n - max(lag, 0)]
        xs, ys = x - x.mean(), y - y.mean()
        denom = np.sqrt((xs * xs).sum() * (ys * ys).sum())
        corr[i] = (xs * ys).sum() / denom if denom > 1e-12 else 0.0
    best = int(np.argmax(corr))
    conf = float(corr[best] - np.median(corr))
    return SyncEstimate(offset=int(lags[best]), confidence=conf, lags=lags, correlations=corr)


def shift_audio(samples: np.ndarray, sample_rate: int, fps: float, frames: float) -> np.ndarray:
    """Delay the audio by `frames` video frames (advance it when negative), keeping its length.

    Delaying by a measured lmsync/SyncNet offset cancels it: the gap at the start (or end) is
    filled with silence rather than wrapped, so no sound is moved to the wrong place.
    """
    x = np.asarray(samples)
    shift = int(round(frames * sample_rate / fps))
    if shift == 0:
        return x.copy()
    out = np.zeros_like(x)
    if abs(shift) >= x.shape[0]:
        return out
    if shift > 0:
        out[shift:] = x[: x.shape[0] - shift]
    else:
        out[: x.shape[0] + shift] = x[-shift:]
    return out


def lmsync(
    mouth: np.ndarray,
    samples: np.ndarray,
    sample_rate: int,
    fps: float,
    *,
    max_offset: int = DEFAULT_MAX_OFFSET,
) -> SyncEstimate:
    """The whole estimator from a mouth series (one value per video frame) and the clip's audio."""
    energy = speech_band_energy(samples, sample_rate, fps, len(mouth))
    return estimate_offset(mouth, energy, max_offset=max_offset)


def lmsync_tracks(
    frames: Sequence[np.ndarray],
    samples: np.ndarray,
    sample_rate: int,
    fps: float,
    *,
    analyzer: FaceAnalyzer | None = None,
    detect_every: int = 5,
    max_offset: int = DEFAULT_MAX_OFFSET,
) -> list[tuple[FaceTrack, SyncEstimate]]:
    """lmsync for every face tracked in a clip's frames, best-synced (the likely speaker) first.

    With several people on screen only the speaker's mouth follows the audio, so the highest
    confidence both names the active speaker and gives the clip's offset.
    """
    from soul.analysis.faces import FaceAnalyzer, face_tracks
    from soul.analysis.mouth import mouth_series

    analyzer = analyzer or FaceAnalyzer()
    results = []
    for track in face_tracks(frames, analyzer, detect_every=detect_every):
        mouth = mouth_series(frames, analyzer, track)
        results.append((track, lmsync(mouth, samples, sample_rate, fps, max_offset=max_offset)))
    results.sort(key=lambda r: -r[1].confidence)
    return results
