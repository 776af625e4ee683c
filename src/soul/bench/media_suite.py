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
from PIL import Image

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
    # A multi-person case: one media file per person, left to right, whose audio is that person's
    # voice (`Case.speaker_audio`); `audio` is then ignored and `<id>.wav` is their mix.
    speakers: tuple[str, ...] = ()


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
    # The two people of two_people_left_speaks.mp4 (its first frame), each with the voice their
    # source clip was recorded with: both talk at once, each must move only with their own.
    CaseSpec("two_people_both_talk", "clips/two_people_left_speaks.mp4", (),
             "Two people side by side talk to the camera at the same time, each with natural head motion.", "multi_person",
             speakers=("clips/talking_face_2.mp4", "clips/talking_face_3.mp4")),
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


def _first_image(path: Path) -> Image.Image:
    """An image file, or a video's first frame (a scene the suite has only as a clip)."""
    from soul.media.image import load_image
    from soul.media.video import read_video

    if path.suffix.lower() in (".mp4", ".mov", ".mkv", ".webm"):
        return Image.fromarray(next(iter(read_video(path).frames(0, 1))))
    return load_image(path)


def _mix(tracks: list[np.ndarray]) -> np.ndarray:
    """Voices summed as one microphone hears them, padded to the longest, kept within [-1, 1]."""
    mix = np.zeros(max(t.shape[0] for t in tracks), np.float32)
    for t in tracks:
        mix[: t.shape[0]] += t
    peak = float(np.abs(mix).max())
    return mix / peak if peak > 1.0 else mix


def build_media_suite(media: str | Path, out: str | Path, *, include_long: bool = True) -> list[Case]:
    """Write the suite into `out` (idempotent: files are rewritten); returns its cases."""
    from soul.media.audio import load_audio

    media, out = Path(media), Path(out)
    if not (media / "portraits").is_dir() or not (media / "audio").is_dir():
        raise InputError(media, "is not the shared media folder (no portraits/ and audio/)", "pass ../shared/media")
    out.mkdir(parents=True, exist_ok=True)
    cases = []
    for spec in CASES:
        if spec.seconds and spec.seconds >= 30 and not include_long:
            continue
        image = out / f"{spec.id}.png"
        _first_image(media / spec.image).save(image)
        speakers = [write_wav(out / f"{spec.id}.{k}.wav", _join(media, (part,), spec.seconds)) for k, part in enumerate(spec.speakers)]
        mix = _mix([load_audio(p, SAMPLE_RATE).samples for p in speakers]) if speakers else _join(media, spec.audio, spec.seconds)
        audio = write_wav(out / f"{spec.id}.wav", mix)
        case = Case(id=spec.id, image=image, audio=audio, prompt=spec.prompt, category=spec.category,
                    long=bool(spec.seconds and spec.seconds >= 30), speaker_audio=speakers,
                    extra={"source_image": spec.image, "source_audio": list(spec.speakers or spec.audio)})
        write_case_meta(out, case)
        cases.append(case)
    return cases
