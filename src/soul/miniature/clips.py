"""Drawn talking clips whose mouths follow their audio: training data with a known truth.

Each clip is a drawn person (`portrait.random_face`) speaking a stretch of audio: the mouth opens
with the speech-band energy and rounds with low spectral centroid, with the mouth moving slightly
ahead of the sound as real speakers do; the head sways and the eyes blink. Clips are written in
`soul data`'s shard format (mp4 + wav + json), so training reads them like curated real data.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from soul.media.audio import MODEL_SAMPLE_RATE, Audio
from soul.media.video import write_video
from soul.miniature.portrait import FaceParams, draw_face, mouth_box, random_face
from soul.miniature.speech import synthesize_babble
from soul.miniature.speech_pool import SpeechPool

AUDIO_RATE = MODEL_SAMPLE_RATE
CAPTION = "a drawn person talking to the camera, head and shoulders"
"""The one caption of the miniature world: every training clip carries it, so generation uses it too."""
MOUTH_LEAD_S = 0.04  # the mouth shapes a sound slightly before it is heard
LIP_INERTIA_S = 0.06  # lips do not jump: the opening follows the energy through a 60 ms lag


@dataclass
class DrawnClip:
    frames: np.ndarray  # [T, S, S, 3] uint8
    audio: np.ndarray  # 16 kHz mono float32
    fps: float
    face: FaceParams
    mouth_open: np.ndarray  # [T] the drawn truth, 0..1
    mouth_box: tuple[float, float, float, float]  # normalised (x0, y0, x1, y1), at rest pose


def speech_features(audio: np.ndarray, num_frames: int, fps: float, lead_s: float = MOUTH_LEAD_S) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame mouth opening (0..1) and roundness (0..1) driven by the audio.

    Opening follows the 300-3400 Hz band's log energy in a 50 ms window, scaled between a floor
    (silence) and the clip's loud speech, smoothed by the lips' inertia (first order,
    `LIP_INERTIA_S`); roundness follows a low spectral centroid (o/u vowels).
    """
    win = int(0.05 * AUDIO_RATE)
    hann = np.hanning(win)
    freqs = np.fft.rfftfreq(win, 1 / AUDIO_RATE)
    band = (freqs >= 300) & (freqs <= 3400)
    energy = np.zeros(num_frames)
    centroid = np.zeros(num_frames)
    for i in range(num_frames):
        centre = int(round((i / fps + lead_s) * AUDIO_RATE))
        a, b = centre - win // 2, centre + win // 2
        seg = audio[max(a, 0) : max(b, 0)]
        if seg.shape[0] < win:
            seg = np.pad(seg, (0, win - seg.shape[0]))
        spec = np.abs(np.fft.rfft(seg * hann)) ** 2
        energy[i] = spec[band].sum()
        centroid[i] = (spec[band] * freqs[band]).sum() / (spec[band].sum() + 1e-12)
    log_e = 10 * np.log10(energy + 1e-10)
    loud = np.percentile(log_e, 95) if num_frames else 0.0
    floor = loud - 30.0
    opening = np.clip((log_e - floor) / (loud - floor), 0, 1) ** 1.5
    keep = float(np.exp(-1.0 / max(LIP_INERTIA_S * fps, 1e-6)))
    for i in range(1, num_frames):
        opening[i] = keep * opening[i - 1] + (1 - keep) * opening[i]
    roundness = np.clip((1800 - centroid) / 1000, 0, 1) * (opening > 0.1)
    return opening.astype(np.float32), roundness.astype(np.float32)


def draw_clip(
    seed: int, seconds: float, fps: float = 16.0, size: int = 64, audio: np.ndarray | None = None, heard: np.ndarray | None = None,
) -> DrawnClip:
    """One talking clip, deterministic by seed; `audio` (16 kHz) replaces the synthesised speech.

    The mouth follows `audio`; the clip's soundtrack is `heard` when given (the same speech through
    noise and a channel: `SpeechPool.hear`), else `audio`.
    """
    rng = np.random.default_rng([seed, 7])
    face = random_face(seed)
    if audio is None:
        audio = synthesize_babble(seconds, AUDIO_RATE, seed=seed)
    n = int(round(seconds * fps))
    samples = int(round(seconds * AUDIO_RATE))
    audio = np.pad(audio, (0, max(0, samples - audio.shape[0])))[:samples]
    opening, roundness = speech_features(audio, n, fps)
    if heard is not None:
        audio = np.pad(heard, (0, max(0, samples - heard.shape[0])))[:samples]
    t = np.arange(n) / fps
    sway = rng.uniform(0, 2 * np.pi, 2)
    dx = 0.015 * np.sin(2 * np.pi * 0.25 * t + sway[0])
    dy = 0.01 * np.sin(2 * np.pi * 0.18 * t + sway[1])
    eye = np.ones(n)
    blink_t = rng.uniform(1.0, 4.0)
    while blink_t < seconds:
        i = int(blink_t * fps)
        eye[i : i + max(1, int(0.12 * fps))] = 0.05
        blink_t += rng.uniform(2.0, 5.0)
    frames = np.stack([
        np.asarray(draw_face(face.with_state(mouth_open=float(opening[i]), mouth_round=float(roundness[i]), eye_open=float(eye[i]), dx=float(dx[i]), dy=float(dy[i])), size))
        for i in range(n)
    ])
    x0, y0, x1, y1 = mouth_box(face, size)
    box = (max(x0 / size, 0.0), max(y0 / size, 0.0), min(x1 / size, 1.0), min(y1 / size, 1.0))
    return DrawnClip(frames, audio.astype(np.float32), fps, face, opening, box)


def _wav_bytes(audio: np.ndarray) -> bytes:
    wav = io.BytesIO()
    sf.write(wav, audio, AUDIO_RATE, format="WAV", subtype="FLOAT")
    return wav.getvalue()


def write_clip_shards(
    out: str | Path,
    num_clips: int,
    seconds: float = 3.0,
    fps: float = 16.0,
    size: int = 64,
    seed: int = 0,
    clips_per_shard: int = 16,
    speech: SpeechPool | None = None,
    speech_fraction: float = 0.5,
    people: Sequence[int] = (1,),
) -> list[Path]:
    """Write drawn clips as `soul data`-style shards: `<key>.mp4`, `<key>.wav`, `<key>.json`.

    With a `speech` pool, a `speech_fraction` of the clips (chosen by seed) speak chopped real
    speech instead of synthesised babble. Each clip shows a number of people drawn (by seed) from
    `people`; a clip of several (`soul.miniature.group`, a frame `size` x `N * size`) also holds
    each person's own voice as `<key>.<k>.wav` (`<key>.wav` is the room's mix, as in the MP4) and
    in its JSON `speakers`: per person, the slot (`box`) and the mouth box, normalised, left to
    right: what a multi-person trainer binds each voice to.
    """
    from soul.miniature.group import Slot, draw_group_clip  # group draws with this module's clips

    out = Path(out)
    (out / "shards").mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    tmp_video = out / ".clip.mp4"
    for shard_index in range((num_clips + clips_per_shard - 1) // clips_per_shard):
        path = out / "shards" / f"soul-{shard_index:06d}.tar"
        tmp = path.with_suffix(".tar.tmp")
        with tarfile.open(tmp, "w") as tar:
            for i in range(shard_index * clips_per_shard, min(num_clips, (shard_index + 1) * clips_per_shard)):
                clip_seed = seed * 100_003 + i
                pick = np.random.default_rng([clip_seed, 11])
                count = int(people[int(pick.integers(len(people)))]) if len(people) > 1 else int(people[0])
                use_speech = speech is not None and pick.random() < speech_fraction
                voices: list[np.ndarray] = []
                if count == 1:
                    audio = speech.segment(seconds, pick) if use_speech and speech is not None else None
                    heard = speech.hear(audio, pick) if audio is not None and speech is not None else None
                    clip = draw_clip(clip_seed, seconds, fps, size, audio=audio, heard=heard)
                    frames, mix = clip.frames, clip.audio
                    extra: dict = {"category": "portrait", "caption": CAPTION, "mouth_box": list(clip.mouth_box)}
                else:
                    group = draw_group_clip(clip_seed, count, seconds, fps, size, speech=speech if use_speech else None)
                    frames, mix, voices = group.frames, group.mixed_audio(), group.audios
                    columns = [Slot(k * size, 0, size).box(count * size, size) for k in range(count)]
                    extra = {
                        "category": "multi_person", "caption": f"{count} drawn people side by side, taking turns to talk",
                        "num_faces": count, "speakers": [{"box": list(columns[k]), "mouth_box": list(group.mouth_boxes[k])} for k in range(count)],
                    }
                write_video(tmp_video, frames, fps, audio=Audio(mix, AUDIO_RATE))
                meta = {
                    "clip_id": f"drawn-{seed}-{i:06d}",
                    "fps": fps,
                    "duration_s": frames.shape[0] / fps,
                    "width": frames.shape[2],
                    "height": frames.shape[1],
                    "caption_source": "miniature",
                    "audio_source": "speech" if use_speech else "babble",
                    "kept": True,
                    **extra,
                }
                members = [("mp4", tmp_video.read_bytes()), ("wav", _wav_bytes(mix))]
                members += [(f"{k}.wav", _wav_bytes(voice)) for k, voice in enumerate(voices)]
                for ext, data in (*members, ("json", json.dumps(meta).encode())):
                    info = tarfile.TarInfo(f"{meta['clip_id']}.{ext}")
                    info.size = len(data)
                    info.mtime = 0
                    tar.addfile(info, io.BytesIO(data))
        tmp.replace(path)
        paths.append(path)
    tmp_video.unlink(missing_ok=True)
    return paths
