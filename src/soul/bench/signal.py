"""Audio and image signal helpers the metrics share: MFCC, onsets, CIEDE2000, sharpness, noise.

Written with numpy (and OpenCV for colour conversion) so the offline metrics need no librosa or
python_speech_features; each follows the published recipe its metric's protocol names.
"""

from __future__ import annotations

import numpy as np


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(num_filters: int, nfft: int, sample_rate: int, low: float = 0.0, high: float | None = None) -> np.ndarray:
    """Triangular mel filters [num_filters, nfft//2+1] (HTK mel scale, as python_speech_features)."""
    high = high or sample_rate / 2.0
    mels = np.linspace(_hz_to_mel(low), _hz_to_mel(high), num_filters + 2)
    bins = np.floor((nfft + 1) * _mel_to_hz(mels) / sample_rate).astype(int)
    bank = np.zeros((num_filters, nfft // 2 + 1))
    for j in range(num_filters):
        a, b, c = bins[j], bins[j + 1], bins[j + 2]
        for i in range(a, b):
            bank[j, i] = (i - a) / max(b - a, 1)
        for i in range(b, c):
            bank[j, i] = (c - i) / max(c - b, 1)
    return bank


def _frames(x: np.ndarray, length: int, step: int) -> np.ndarray:
    n = 1 + max(0, int(np.ceil((x.shape[0] - length) / step)))
    padded = np.pad(x, (0, max(0, (n - 1) * step + length - x.shape[0])))
    return padded[np.arange(n)[:, None] * step + np.arange(length)[None, :]]


def mfcc(samples: np.ndarray, sample_rate: int = 16000, *, num_ceps: int = 13, win: float = 0.025, step: float = 0.01,
         num_filters: int = 26, nfft: int = 512, preemph: float = 0.97, ceplifter: int = 22) -> np.ndarray:
    """MFCC [T, num_ceps] at 100 frames/s: the audio input SyncNet was trained on.

    The recipe of python_speech_features' defaults (pre-emphasis, 25 ms frames every 10 ms, 26 mel
    filters, log, DCT-II, lifter 22, first coefficient replaced by log frame energy), because
    SyncNet's published weights expect exactly that input.
    """
    x = np.asarray(samples, dtype=np.float64)
    x = np.append(x[0], x[1:] - preemph * x[:-1]) if x.size > 1 else x
    frames = _frames(x, int(round(win * sample_rate)), int(round(step * sample_rate)))
    power = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft
    energy = np.maximum(power.sum(axis=1), np.finfo(float).eps)
    feat = np.maximum(power @ mel_filterbank(num_filters, nfft, sample_rate).T, np.finfo(float).eps)
    logfeat = np.log(feat)
    n = num_filters
    k = np.arange(n)
    dct = np.cos(np.pi / n * (k[None, :] + 0.5) * np.arange(n)[:, None]) * np.sqrt(2.0 / n)
    dct[0] /= np.sqrt(2.0)
    ceps = (logfeat @ dct.T)[:, :num_ceps]
    lift = 1 + (ceplifter / 2.0) * np.sin(np.pi * np.arange(num_ceps) / ceplifter)
    ceps = ceps * lift
    ceps[:, 0] = np.log(energy)
    return ceps.astype(np.float32)


def onset_times(samples: np.ndarray, sample_rate: int, *, n_mels: int = 128, delta: float = 0.07) -> np.ndarray:
    """Audio onset times in seconds: spectral-flux onset strength with librosa-style peak picking.

    AV-Align (Soul-Bench) uses librosa's default onset detector: positive first difference of the
    log-mel spectrogram averaged over bands, normalised to [0, 1], and a peak is kept when it is
    not below the previous frame, exceeds the local mean (-4..+4 frames) by `delta`, and comes
    more than one frame after the previous onset.
    """
    # librosa's frame geometry (2048-point FFT, hop 512 at 22.05 kHz) scaled to this sample rate,
    # and its peak-picking windows in frames at that rate: pre_max 1, pre_avg 4, post_avg 5, wait 1.
    hop = max(1, int(round(512 * sample_rate / 22050)))
    nfft = max(64, int(round(2048 * sample_rate / 22050)))
    x = np.asarray(samples, dtype=np.float64)
    if x.size < nfft:
        return np.zeros(0)
    frames = _frames(np.pad(x, (nfft // 2, nfft // 2), mode="reflect"), nfft, hop) * np.hanning(nfft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = power @ mel_filterbank(n_mels, nfft, sample_rate).T
    logmel = 10.0 * np.log10(np.maximum(mel, 1e-10))
    logmel = np.maximum(logmel, logmel.max() - 80.0)
    flux = np.maximum(0.0, np.diff(logmel, axis=0)).mean(axis=1)
    env = np.concatenate([[0.0], flux])
    span = env.max() - env.min()
    if span <= 0:
        return np.zeros(0)
    env = (env - env.min()) / span
    pre_max, pre_avg, post_avg, wait = 1, 4, 5, 1
    peaks: list[int] = []
    for i in range(len(env)):
        if env[i] < env[max(0, i - pre_max) : i + 1].max():
            continue
        if env[i] < env[max(0, i - pre_avg) : i + post_avg].mean() + delta:
            continue
        if peaks and i - peaks[-1] <= wait:
            continue
        peaks.append(i)
    return np.asarray(peaks, dtype=np.float64) * hop / sample_rate


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65) of uint8 sRGB pixels [..., 3], float64 (L in 0..100)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference (Sharma, Wu, Dalal 2005) between Lab arrays [..., 3]."""
    L1, a1, b1 = np.moveaxis(np.asarray(lab1, dtype=np.float64), -1, 0)
    L2, a2, b2 = np.moveaxis(np.asarray(lab2, dtype=np.float64), -1, 0)
    C1, C2 = np.hypot(a1, b1), np.hypot(a2, b2)
    Cm = (C1 + C2) / 2
    G = 0.5 * (1 - np.sqrt(Cm**7 / (Cm**7 + 25.0**7)))
    a1p, a2p = (1 + G) * a1, (1 + G) * a2
    C1p, C2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    dLp = L2 - L1
    dCp = C2p - C1p
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(C1p * C2p == 0, 0.0, dh)
    dHp = 2 * np.sqrt(C1p * C2p) * np.sin(np.radians(dh) / 2)
    Lpm = (L1 + L2) / 2
    Cpm = (C1p + C2p) / 2
    hsum = h1p + h2p
    hpm = np.where(np.abs(h1p - h2p) > 180, np.where(hsum < 360, (hsum + 360) / 2, (hsum - 360) / 2), hsum / 2)
    hpm = np.where(C1p * C2p == 0, hsum, hpm)
    T = (1 - 0.17 * np.cos(np.radians(hpm - 30)) + 0.24 * np.cos(np.radians(2 * hpm))
         + 0.32 * np.cos(np.radians(3 * hpm + 6)) - 0.20 * np.cos(np.radians(4 * hpm - 63)))
    dtheta = 30 * np.exp(-(((hpm - 275) / 25) ** 2))
    Rc = 2 * np.sqrt(Cpm**7 / (Cpm**7 + 25.0**7))
    Sl = 1 + 0.015 * (Lpm - 50) ** 2 / np.sqrt(20 + (Lpm - 50) ** 2)
    Sc = 1 + 0.045 * Cpm
    Sh = 1 + 0.015 * Cpm * T
    Rt = -np.sin(np.radians(2 * dtheta)) * Rc
    return np.sqrt((dLp / Sl) ** 2 + (dCp / Sc) ** 2 + (dHp / Sh) ** 2 + Rt * (dCp / Sc) * (dHp / Sh))


def gray(frame: np.ndarray) -> np.ndarray:
    """BT.601 luma as float64 (0..255)."""
    f = np.asarray(frame, dtype=np.float64)
    return f[..., 0] * 0.299 + f[..., 1] * 0.587 + f[..., 2] * 0.114


def sharpness(frame: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of luma: blur lowers it, detail raises it."""
    g = gray(frame)
    if min(g.shape) < 3:
        return 0.0
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4 * g[1:-1, 1:-1]
    return float(lap.var())


def noise_sigma(frame: np.ndarray) -> float:
    """Gaussian noise level of luma (Immerkaer 1996): sharpness alone rewards noise, this tells them apart."""
    g = gray(frame)
    h, w = g.shape
    if h < 3 or w < 3:
        return 0.0
    m = (g[:-2, :-2] - 2 * g[:-2, 1:-1] + g[:-2, 2:] - 2 * g[1:-1, :-2] + 4 * g[1:-1, 1:-1] - 2 * g[1:-1, 2:]
         + g[2:, :-2] - 2 * g[2:, 1:-1] + g[2:, 2:])
    return float(np.sqrt(np.pi / 2) * np.abs(m).sum() / (6.0 * (w - 2) * (h - 2)))
