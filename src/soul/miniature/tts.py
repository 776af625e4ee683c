"""Many voices for drawn clips: espeak-ng (Debian's package) speaking random words in 100+ languages.

Why: the mini model trained on six real recordings (and babble) followed voices like them and few
others (r 0.42-0.76 on held-out real speech; docs/miniature.md). espeak-ng writes speech in 130
languages with dozens of voice variants, any rate and pitch, offline, so the training speech can
vary in exactly what the held-out voices vary in: speaker, language, tempo, pitch, loudness.

The words are drawn, not read from a corpus (nothing is downloaded): pseudo-words of two to four
consonant-vowel syllables spelled in Latin letters, and numbers, which every espeak-ng language
speaks as its own words (so Mandarin, Russian or Hindi voices say real words of their language),
in sentences of 3-12 words whose punctuation makes the pauses. The result is speech-like in its
envelope (syllables, stress, pauses), which is all a drawn mouth follows.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from functools import lru_cache

import numpy as np

from soul.errors import InputError

CONSONANTS = "bcdfghjklmnprstvwz"
VOWELS = "aeiou"
VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "croak", "whisper")


def _espeak() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise InputError("espeak-ng", "is not installed", "apt-get install espeak-ng (Debian), or leave out --tts")
    return path


@lru_cache(maxsize=1)
def espeak_languages() -> tuple[str, ...]:
    """The language voices espeak-ng has here (e.g. 'en-us', 'cmn', 'de')."""
    listing = subprocess.run([_espeak(), "--voices"], capture_output=True, text=True, check=True).stdout.splitlines()[1:]
    return tuple(sorted({line.split()[1] for line in listing if len(line.split()) > 1}))


def random_text(rng: np.random.Generator, words: int) -> str:
    """Sentences of drawn pseudo-words and numbers (see the module doc)."""
    out: list[str] = []
    sentence = 0
    for _ in range(words):
        if rng.random() < 0.25:
            word = str(int(rng.integers(1, 10 ** int(rng.integers(1, 5)))))
        else:
            word = "".join(CONSONANTS[int(rng.integers(len(CONSONANTS)))] + VOWELS[int(rng.integers(len(VOWELS)))]
                           for _ in range(int(rng.integers(2, 5))))
        sentence += 1
        if sentence >= int(rng.integers(3, 13)):
            word += "." if rng.random() < 0.7 else ","
            sentence = 0
        out.append(word)
    return " ".join(out) + "."


def espeak_track(seed: int, seconds: float = 8.0, sample_rate: int = 16_000) -> tuple[np.ndarray, dict]:
    """About `seconds` of speech from a voice drawn by `seed` (language, variant, rate, pitch, gaps).

    Returns the samples (float32 at `sample_rate`) and what was drawn, so a pool can say whose
    voices it holds.
    """
    import soundfile as sf
    from scipy.signal import resample_poly

    rng = np.random.default_rng([seed, 31])
    languages = espeak_languages()
    for _ in range(8):  # a few voices (e.g. some with a variant) make espeak-ng fail: draw another
        voice = {
            "language": languages[int(rng.integers(len(languages)))],
            "variant": VARIANTS[int(rng.integers(len(VARIANTS)))],
            "rate": int(rng.integers(90, 241)),  # words per minute (espeak's default is 175)
            "pitch": int(rng.integers(10, 91)),
            "gap": int(rng.integers(0, 8)),  # extra pause between words, 10 ms units
        }
        words = max(3, int(round(seconds * voice["rate"] / 120)))  # the pseudo-words run about two of espeak's words each
        name = voice["language"] + (f"+{voice['variant']}" if voice["variant"] else "")
        cmd = [_espeak(), "-v", name, "-s", str(voice["rate"]), "-p", str(voice["pitch"]), "-g", str(voice["gap"]), "--stdout", random_text(rng, words)]
        run = subprocess.run(cmd, capture_output=True, timeout=60)
        if run.returncode == 0 and len(run.stdout) > 1000:
            break
    else:
        raise RuntimeError(f"espeak-ng failed for 8 voices in a row (last: {name}): {run.stderr.decode(errors='replace')[-300:]}")
    wav = run.stdout
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if rate != sample_rate:
        g = np.gcd(int(rate), int(sample_rate))
        samples = resample_poly(samples, sample_rate // g, int(rate) // g).astype(np.float32)
    return samples, voice
