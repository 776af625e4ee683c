"""Synthesised babble: speech-like audio made from nothing, so demos and tests need no recordings.

Additive source-filter synthesis: a glottal harmonic series on a wandering pitch, shaped by vowel
formant envelopes, syllable amplitude envelopes, fricative noise bursts and pauses between words
and phrases. It has the structure a lip-sync model keys on (syllabic energy at 3-6 Hz, silences,
spectral change between vowels) without being any language.
"""

from __future__ import annotations

import numpy as np

from soul.media.audio import MODEL_SAMPLE_RATE

# (F1, F2, F3) in Hz for five cardinal vowels, adult-average values.
VOWEL_FORMANTS = {
    "a": (730.0, 1090.0, 2440.0),
    "e": (530.0, 1840.0, 2480.0),
    "i": (270.0, 2290.0, 3010.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (300.0, 870.0, 2240.0),
}
_BANDWIDTHS = (90.0, 110.0, 170.0)


def _formant_gain(freqs: np.ndarray, formants: np.ndarray) -> np.ndarray:
    """Sum of resonance peaks (Lorentzian in frequency) at each harmonic's frequency."""
    gain = np.zeros_like(freqs)
    for k, bw in enumerate(_BANDWIDTHS):
        f = formants[:, k][None, :]
        gain += 1.0 / (1.0 + ((freqs - f) / (bw / 2)) ** 2)
    return gain


def synthesize_babble(
    seconds: float,
    sample_rate: int = MODEL_SAMPLE_RATE,
    seed: int = 0,
    *,
    pitch_hz: float | None = None,
    pause_ratio: float = 0.2,
) -> np.ndarray:
    """Return `seconds` of speech-like mono float32 audio at `sample_rate`, deterministic by seed."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    if n <= 0:
        return np.zeros(0, np.float32)
    base_pitch = pitch_hz if pitch_hz is not None else float(rng.uniform(95, 230))

    # Syllable plan: each syllable is (start, length, vowel, loudness); words are runs of syllables
    # separated by short gaps, phrases by longer pauses.
    envelope = np.zeros(n, np.float32)
    formants = np.tile(np.array(VOWEL_FORMANTS["a"]), (n, 1))
    fricative = np.zeros(n, np.float32)
    t = float(rng.uniform(0.05, 0.3))
    vowels = list(VOWEL_FORMANTS)
    while t < seconds:
        for _ in range(int(rng.integers(1, 5))):  # syllables in a word
            length = float(rng.uniform(0.12, 0.28))
            a, b = int(t * sample_rate), min(n, int((t + length) * sample_rate))
            if a >= n:
                break
            m = b - a
            x = np.linspace(0, 1, m, endpoint=False)
            env = np.sin(np.pi * x) ** 0.7 * float(rng.uniform(0.5, 1.0))
            envelope[a:b] = np.maximum(envelope[a:b], env)
            v1, v2 = VOWEL_FORMANTS[vowels[rng.integers(5)]], VOWEL_FORMANTS[vowels[rng.integers(5)]]
            formants[a:b] = np.outer(1 - x, v1) + np.outer(x, v2)  # diphthong glide
            if rng.random() < 0.4:  # a consonant onset: short noise burst before the vowel
                fa = max(0, a - int(0.05 * sample_rate))
                fricative[fa:a] = float(rng.uniform(0.2, 0.5))
            t += length
        t += float(rng.uniform(0.04, 0.12))
        if rng.random() < pause_ratio:
            t += float(rng.uniform(0.25, 0.7))

    time = np.arange(n) / sample_rate
    drift = 1 + 0.08 * np.sin(2 * np.pi * 0.7 * time + rng.uniform(0, 6)) + 0.03 * np.sin(2 * np.pi * 3.1 * time)
    f0 = base_pitch * drift
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    n_harm = int(4000 // base_pitch)
    voiced = np.zeros(n, np.float64)
    block = 8192  # harmonics x samples in blocks keeps memory small for minutes of audio
    for s in range(0, n, block):
        e = min(n, s + block)
        h = np.arange(1, n_harm + 1)[:, None]
        freqs = h * f0[None, s:e]
        gain = _formant_gain(freqs, formants[s:e]) / h ** 0.8
        gain[freqs > sample_rate / 2 - 200] = 0
        voiced[s:e] = (gain * np.sin(h * phase[None, s:e])).sum(axis=0)
    voiced *= envelope
    noise = rng.standard_normal(n)
    noise = np.diff(noise, prepend=0.0) * fricative  # differenced noise: a crude high-pass hiss
    out = voiced / (np.abs(voiced).max() + 1e-9) * 0.5 + 0.15 * noise
    out += 0.002 * rng.standard_normal(n)  # room noise: real recordings are never digital silence
    return (out / (np.abs(out).max() + 1e-9) * 0.7).astype(np.float32)
