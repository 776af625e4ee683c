"""Real speech for drawn clips: chopped and spliced segments of recordings, with a held-out split.

Why real speech at all: synthesised babble alone teaches the model one kind of envelope; real
speech has the pauses, plosives and loudness swings the demo and the benchmark will feed it.
Why a fixed split by file: lip sync is judged "on held-out audio" (speech the model never trained
on), so the recordings the evaluation uses must never be chopped into training clips.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from soul.media.audio import MODEL_SAMPLE_RATE, load_audio

AUDIO_RATE = MODEL_SAMPLE_RATE
# Paths relative to a media folder laid out like ../shared/media (see its README).
TRAIN_SPEECH: tuple[str, ...] = (
    "audio/hallo_1.wav",
    "audio/hallo_2.wav",
    "clips/talking_face_1.mp4",
    "clips/talking_face_2.mp4",
    "clips/talking_face_3.mp4",
    "clips/talking_upper_body_host.mp4",
)
HELD_OUT_SPEECH: tuple[str, ...] = ("audio/hallo_3.wav", "audio/wan_talk.wav")


class SpeechPool:
    """Decoded recordings (16 kHz mono, loudness-normalised) to cut clip soundtracks from."""

    def __init__(self, tracks: Sequence[np.ndarray], names: Sequence[str]) -> None:
        usable = [(t, n) for t, n in zip(tracks, names) if t.shape[0] >= AUDIO_RATE]
        if not usable:
            raise ValueError("no recording of at least one second in the speech pool")
        self.tracks = [t for t, _ in usable]
        self.names = [n for _, n in usable]

    @classmethod
    def from_media(cls, media: str | Path, files: Sequence[str] = TRAIN_SPEECH) -> SpeechPool:
        """The recordings in `files` that exist under `media` (missing ones are left out)."""
        media = Path(media)
        found = [media / f for f in files if (media / f).is_file()]
        if not found:
            raise FileNotFoundError(f"{media}: none of {list(files)} found")
        return cls([load_audio(p, AUDIO_RATE).samples for p in found], [str(p) for p in found])

    def segment(self, seconds: float, rng: np.random.Generator) -> np.ndarray:
        """`seconds` of speech: one or two random pieces (a splice between speakers), gain-jittered."""
        n = int(round(seconds * AUDIO_RATE))
        parts, have = [], 0
        pieces = 1 if rng.random() < 0.5 else 2
        for k in range(pieces):
            want = n - have if k == pieces - 1 else int(rng.uniform(0.3, 0.7) * n)
            track = self.tracks[int(rng.integers(len(self.tracks)))]
            start = int(rng.integers(0, max(1, track.shape[0] - want)))
            piece = track[start : start + want]
            parts.append(piece * float(10 ** (rng.uniform(-6, 3) / 20)))
            have += piece.shape[0]
        out = np.concatenate(parts)
        return np.pad(out, (0, max(0, n - out.shape[0])))[:n].astype(np.float32)
