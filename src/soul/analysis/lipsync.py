"""`lmsync`: a weight-free audio-visual offset estimator (lip aperture vs speech-band energy).

SyncNet needs weights no package ships; this estimator needs only dlib's 68 landmarks, so every clip
gets an offset and a confidence offline. It correlates the articulation of a face (the inner-lip gap,
upper to lower inner lip over the eye-corner distance from `soul.analysis.mouth.inner_mouth_gap`,
plus the speed at which it changes: `articulation`) with the log energy of the speech band
(300-3400 Hz) at every lag within ±`max_offset` frames. Both series are lightly smoothed (a
3-frame Hann window) and z-scored.

Three choices keep it from reporting what it cannot see:

- **Fixed overlap.** Every lag correlates the same mouth frames (all but `max_offset` at each end)
  with the energy shifted under them, so the lags are compared on equal terms. With the old
  design (the overlap shrank towards the ends of the range) short clips often peaked at the edge.
- **A confidence on a known scale.** `confidence` is the Fisher z of the peak correlation,
  ``atanh(r) * sqrt(n_eff - 3)``, with ``n_eff`` the overlap corrected for the autocorrelation of
  both series (Bartlett: ``n / (1 + 2 sum_k rho_mouth(k) rho_energy(k))``): smooth series of a few
  seconds have few independent samples, and a peak r that is chance on 5 s is strong on 30 s.
  `MIN_CONFIDENCE` (2.1) was chosen on a tuning set (below) as the 95th percentile of foreign-audio
  pairs: an unrelated voice cleared it about one time in twenty there (clips of 5-34 s), and in 6
  of 44 pairs on the 5 s clips of the test set (the search takes the best of 25 lags).
- **The edge is no estimate.** A peak at ±`max_offset` says the best alignment lies at or beyond
  the search, not where: ``offset`` is None there (`reason` says why).

**Tuning and test sets.** The design (signal, fixed overlap, confidence, threshold) was chosen on
clips that are not in the project: eight talking or singing clips with their own audio from two
public repositories (KwaiVGI/LivePortrait ``assets/examples/driving`` d6, d9, d10, d11, d12, d20;
OpenTalker/video-retalking ``examples/face`` 4, 5) against 11 foreign voices; on those, the
articulation from dlib's lips ranked the clip's own audio above a foreign voice in 83 of 88 pairs
(in the exploratory pass that chose it: the gap alone 81, mediapipe's face-mesh lip gap 81, the
mouth darkness this replaced 78). The test set is the talking clips of ../shared/media
(`tests/test_analysis_lipsync.py`). It leaked in twice: the fixed overlap was first tried on two
of its clips, and the lip gap alone failed on it (talking_face_2's lips rest half open through
pauses), which is what suggested adding the speed; the tuning set then preferred it. docs/data.md
gives the order of the choices and both sets' figures.

Sign convention (SyncNet's): ``offset > 0`` means the video lags the audio by that many frames
(the sound of a syllable comes before the mouth shows it). To cancel a measured offset, delay the
audio by ``offset`` frames: ``shift_audio(samples, sr, fps, offset)``. Fields are named
``lmsync_offset``/``lmsync_conf`` and never mixed with SyncNet's ``syncnet_offset``/``syncnet_conf``.
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
DEFAULT_MAX_OFFSET = 12
MIN_CONFIDENCE = 2.1  # 95th percentile of foreign-audio pairs on the tuning set (module doc)


@dataclass(frozen=True)
class SyncEstimate:
    """One estimate: the offset (frames, SyncNet sign; None when the peak is at the edge of the
    search), its confidence (Fisher z, see the module doc), the peak r and the lag curve."""

    offset: int | None
    confidence: float
    peak_r: float
    lags: np.ndarray
    correlations: np.ndarray
    reason: str | None = None

    def confident(self, threshold: float = MIN_CONFIDENCE) -> bool:
        """An offset worth acting on: inside the search and clearing the threshold."""
        return self.offset is not None and self.confidence >= threshold

    def as_fields(self, prefix: str = "lmsync") -> dict[str, float | int | None]:
        return {f"{prefix}_offset": None if self.offset is None else int(self.offset), f"{prefix}_conf": float(self.confidence)}


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


def min_frames(max_offset: int) -> int:
    """Frames a clip needs for a search of ±`max_offset`: an overlap of 2 * max_offset + 8 frames."""
    return 4 * max_offset + 8


def _effective_samples(a: np.ndarray, b: np.ndarray, n: int, max_lag: int) -> float:
    """Bartlett's effective sample size of a correlation between two autocorrelated series."""
    def acf(s: np.ndarray, k: int) -> float:
        x, y = s[:-k], s[k:]
        sx, sy = x.std(), y.std()
        return float(((x - x.mean()) * (y - y.mean())).mean() / (sx * sy)) if sx > 1e-12 and sy > 1e-12 else 0.0

    rho = sum(acf(a, k) * acf(b, k) for k in range(1, max(1, max_lag) + 1))
    return n / max(1.0, 1.0 + 2.0 * rho)


def estimate_offset(
    mouth: np.ndarray,
    energy: np.ndarray,
    *,
    max_offset: int = DEFAULT_MAX_OFFSET,
    smooth: int = 3,
) -> SyncEstimate:
    """Offset and confidence from a mouth-aperture series and a per-frame audio energy series.

    At lag L the correlation pairs mouth[t] with energy[t - L] over the same mouth frames t for
    every L: a positive best lag means the mouth follows the sound, i.e. the video lags the audio.
    """
    m = np.asarray(mouth, dtype=np.float64)
    e = np.asarray(energy, dtype=np.float64)
    if m.ndim != 1 or e.ndim != 1 or m.shape != e.shape:
        raise InputError("lmsync", f"mouth and energy must be 1-D and equal in length, got {m.shape} and {e.shape}", None)
    if not np.all(np.isfinite(m)) or not np.all(np.isfinite(e)):
        raise InputError("lmsync", "mouth or energy series contains NaN/inf", "check the landmarks and audio")
    if max_offset < 1:
        raise InputError("max_offset", f"must be >= 1, got {max_offset}", None)
    n = m.shape[0]
    if n < min_frames(max_offset):
        raise InputError("lmsync", f"needs at least {min_frames(max_offset)} frames for ±{max_offset}, got {n}", "use a longer clip or a smaller max_offset")
    a, b = _prepare(m, smooth), _prepare(e, smooth)
    lags = np.arange(-max_offset, max_offset + 1)
    core = a[max_offset : n - max_offset]
    xs = core - core.mean()
    corr = np.empty(lags.shape[0], dtype=np.float64)
    for i, lag in enumerate(lags):
        y = b[max_offset - lag : n - max_offset - lag]
        ys = y - y.mean()
        denom = np.sqrt((xs * xs).sum() * (ys * ys).sum())
        corr[i] = (xs * ys).sum() / denom if denom > 1e-12 else 0.0
    best = int(np.argmax(corr))
    r = float(corr[best])
    n_eff = _effective_samples(a, b, core.shape[0], min(core.shape[0] // 4, 2 * max_offset))
    conf = float(np.arctanh(np.clip(r, -0.999, 0.999)) * np.sqrt(max(n_eff - 3.0, 1.0)))
    if best in (0, lags.shape[0] - 1):
        return SyncEstimate(None, conf, r, lags, corr, f"the best lag is at the edge of the ±{max_offset}-frame search")
    return SyncEstimate(int(lags[best]), conf, r, lags, corr)


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


def articulation(gap: np.ndarray) -> np.ndarray:
    """The lip gap's level plus its speed, each z-scored: what lmsync correlates with the sound.

    Why both: a speaker's lips can rest half open through a pause (the level alone then says
    "speaking") and close for a plosive in mid-word, while in a pause they do not move; the speed
    catches that. On the tuning clips the sum ranked own audio over foreign in 83 of 88 pairs
    (the level alone 81, the speed alone 76).
    """
    g = np.asarray(gap, dtype=np.float64)
    speed = np.abs(np.diff(g, prepend=g[:1]))

    def z(s: np.ndarray) -> np.ndarray:
        std = s.std()
        return (s - s.mean()) / std if std > 1e-12 else np.zeros_like(s)

    return z(g) + z(speed)


def lmsync(
    mouth: np.ndarray,
    samples: np.ndarray,
    sample_rate: int,
    fps: float,
    *,
    max_offset: int = DEFAULT_MAX_OFFSET,
) -> SyncEstimate:
    """The whole estimator from an inner-lip gap series (one value per video frame) and the clip's audio."""
    energy = speech_band_energy(samples, sample_rate, fps, len(mouth))
    return estimate_offset(articulation(mouth), energy, max_offset=max_offset)


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
    confidence names the likely speaker; whether its offset is worth acting on is `confident()`.
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
