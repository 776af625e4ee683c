"""Build the small Soul-Bench-layout suite from ../shared/media (real inputs nobody here made).

Framings: portrait, upper body, full body; short cases (the clips' own lengths, 3.5-15 s) and
1-minute long cases whose speech is the shared tracks joined end to end, so long-term drift can be
measured without any download. Images become `<id>.png`, audio 16 kHz mono `<id>.wav`.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soul.bench.suite import Case, write_case_meta
from soul.errors import InputError
from soul.media.audio import MODEL_SAMPLE_RATE

SAMPLE_RATE = MODEL_SAMPLE_RATE
LONG_SECONDS = 60.0


@dataclass(frozen=True)
class CaseSpec:
    id: str
    image: str
    audio: tuple[str, ...]
    prompt: str
    category: str
    seconds: float | None = None  # None: the audio's own length; else loop/cut to this length


CASES: tuple[CaseSpec, ...] = (
    CaseSpec("portrait_painting_talk", "portraits/hallo_1.jpg", ("audio/wan_talk.wav",),
             "A portrait of a person speaking calmly to the camera, natural head motion and blinking.", "portrait"),
    CaseSpec("portrait_photo_talk", "portraits/hallo_6.jpg", ("audio/hallo_1.wav",),
             "A person talks to the camera in a bright room, friendly expression, subtle nods.", "portrait"),
    CaseSpec("portrait_statue_sing", "portraits/hallo_5.jpg", ("audio/wan_sing.mp3",),
             "A face sings expressively, mouth wide on long notes, eyes closing with emotion.", "portrait_singing"),
    CaseSpec("upper_body_elf_talk", "portraits/wan_elf_upper_body.jpg", ("audio/wan_prompt_16k_mono.wav",),
             "An elf character speaks with light hand gestures, upper body in frame, forest light.", "upper_body"),
    CaseSpec("full_body_walk_talk", "portraits/wan_full_body.png", ("audio/hallo_2.wav",),
             "A man stands by a train and talks, full body in frame, relaxed posture and small gestures.", "full_body"),
    CaseSpec("portrait_long_1min", "portraits/hallo_2.jpg", ("audio/hallo_1.wav", "audio/hallo_2.wav", "audio/hallo_3.wav", "audio/wan_talk.wav"),
             "A person gives a one-minute talk to the camera, steady framing, natural expressions.", "portrait", LONG_SECONDS),
    CaseSpec("upper_body_long_1min", "portraits/wan_elf_upper_body.jpg", ("audio/hallo_3.wav", "audio/wan_talk.wav", "audio/hallo_2.wav"),
             "An elf character narrates a story for a minute with hand gestures, upper body in frame.", "upper_body", LONG_SECONDS),
)


def write_wav(path: Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """16-bit PCM mono WAV (Soul-Bench's audio format), clipped to [-1, 1]."""
    pcm = (np.clip(np.asarray(samples, np.float64), -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return path


def _join(media: Path, parts: tuple[str, ...], seconds: float | None) -> np.ndarray:
    from soul.media.audio import load_audio

    gap = np.zeros(int(0.4 * SAMPLE_RATE), np.float32)  # a breath between joined tracks
    pieces = []
    for p in parts:
        pieces += [load_audio(media / p, SAMPLE_RATE, normalize=True).samples.astype(np.float32), gap]
    audio = np.concatenate(pieces[:-1])
    if seconds is not None:
        n = int(round(seconds * SAMPLE_RATE))
        reps = int(np.ceil(n / audio.shape[0]))
        audio = np.concatenate([np.concatenate([audio, gap])] * reps)[:n]
    return audio


def build_media_suite(media: str | Path, out: str | Path, *, include_long: bool = True) -> list[Case]:
    """Write the suite into `out` (idempotent: files are rewritten); returns its cases."""
    from soul.media.image import load_image

    media, out = Path(media), Path(out)
    if not (media / "portraits").is_dir() or not (media / "audio").is_dir():
        raise InputError(media, "is not the shared media folder (no portraits/ and audio/)", "pass ../shared/media")
    out.mkdir(parents=True, exist_ok=True)
    cases = []
    for spec in CASES:
        if spec.seconds and spec.seconds >= 30 and not include_long:
            continue
        image = out / f"{spec.id}.png"
        load_image(media / spec.image).save(image)
        audio = write_wav(out / f"{spec.id}.wav", _join(media, spec.audio, spec.seconds))
        case = Case(id=spec.id, image=image, audio=audio, prompt=spec.prompt, category=spec.category,
                    long=bool(spec.seconds and spec.seconds >= 30),
                    extra={"source_image": spec.image, "source_audio": list(spec.audio)})
        write_case_meta(out, case)
        cases.append(case)
    return cases
