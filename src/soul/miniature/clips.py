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


def draw_clip(seed: int, seconds: float, fps: float = 16.0, size: int = 64, audio: np.ndarray | None = None) -> DrawnClip:
    """One talking clip, deterministic by seed; `audio` (16 kHz) replaces the synthesised speech."""
    rng = np.random.default_rng([seed, 7])
    face = random_face(seed)
    if audio is None:
        audio = synthesize_babble(seconds, AUDIO_RATE, seed=seed)
    n = int(round(seconds * fps))
    audio = np.pad(audio, (0, max(0, int(round(seconds * AUDIO_RATE)) - audio.shape[0])))[: int(round(seconds * AUDIO_RATE))]
    opening, roundness = speech_features(audio, n, fps)
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


@dataclass
class DrawnPair:
    """Two drawn people side by side, each mouth driven by its own audio stream."""

    frames: np.ndarray  # [T, S, S, 3] uint8: person 0 on the left half, person 1 on the right
    audios: list[np.ndarray]  # one 16 kHz stream per person (silent while the other speaks)
    fps: float
    faces: list[FaceParams]
    mouth_open: list[np.ndarray]  # per person, [T] 0..1

    def person_mask(self, index: int) -> np.ndarray:
        """[S, S] bool: the half of the frame that shows person `index` (multi-person conditioning)."""
        size = self.frames.shape[1]
        mask = np.zeros((size, size), bool)
        mask[:, (size // 2) * index : (size // 2) * (index + 1)] = True
        return mask


def draw_pair_clip(seed: int, seconds: float, fps: float = 16.0, size: int = 64, turn_seconds: float = 1.5) -> DrawnPair:
    """Two people taking turns: each speaks every other `turn_seconds`, the listener's mouth rests.

    Each person is drawn as a full portrait and the centre half of it is kept, so both halves
    have the single-person layout (the mouth box of a face, shifted by a quarter of the frame).
    """
    n = int(round(seconds * fps))
    total = int(round(seconds * AUDIO_RATE))
    speech = np.pad(synthesize_babble(seconds, AUDIO_RATE, seed=seed), (0, total))[:total]
    turn = int(round(turn_seconds * AUDIO_RATE))
    speaker = (np.arange(total) // turn) % 2
    audios = [np.where(speaker == k, speech, 0.0).astype(np.float32) for k in (0, 1)]
    faces = [random_face(seed * 2 + k + 1) for k in (0, 1)]
    halves, openings = [], []
    for k, (face, audio) in enumerate(zip(faces, audios)):
        clip = draw_clip(seed * 2 + k + 1, seconds, fps, size, audio=audio)
        halves.append(clip.frames[:, :, size // 4 : size // 4 + size // 2])
        openings.append(clip.mouth_open)
    frames = np.concatenate(halves, axis=2)
    assert frames.shape == (n, size, 2 * (size // 2), 3)
    if frames.shape[2] != size:  # odd sizes: repeat the last column
        frames = np.concatenate([frames, frames[:, :, -1:]], axis=2)
    return DrawnPair(frames, audios, fps, faces, openings)


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
) -> list[Path]:
    """Write drawn clips as `soul data`-style shards: `<key>.mp4`, `<key>.wav`, `<key>.json`.

    With a `speech` pool, a `speech_fraction` of the clips (chosen by seed) speak chopped real
    speech instead of synthesised babble.
    """
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
                audio = speech.segment(seconds, pick) if speech is not None and pick.random() < speech_fraction else None
                clip = draw_clip(clip_seed, seconds, fps, size, audio=audio)
                write_video(tmp_video, clip.frames, fps, audio=Audio(clip.audio, AUDIO_RATE))
                wav = io.BytesIO()
                sf.write(wav, clip.audio, AUDIO_RATE, format="WAV", subtype="FLOAT")
                meta = {
                    "clip_id": f"drawn-{seed}-{i:06d}",
                    "category": "portrait",
                    "fps": fps,
                    "duration_s": clip.frames.shape[0] / fps,
                    "width": size,
                    "height": size,
                    "caption": "a drawn person talking to the camera, head and shoulders",
                    "caption_source": "miniature",
                    "audio_source": "babble" if audio is None else "speech",
                    "mouth_box": list(clip.mouth_box),
                    "kept": True,
                }
                for ext, data in (("mp4", tmp_video.read_bytes()), ("wav", wav.getvalue()), ("json", json.dumps(meta).encode())):
                    info = tarfile.TarInfo(f"{meta['clip_id']}.{ext}")
                    info.size = len(data)
                    info.mtime = 0
                    tar.addfile(info, io.BytesIO(data))
        tmp.replace(path)
        paths.append(path)
    tmp_video.unlink(missing_ok=True)
    return paths
