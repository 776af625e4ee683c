"""Several drawn people in one clip, each mouth driven by its own voice: multi-person training data
with a known truth, and the layout that scores who moved with which voice.

People stand side by side, one square slot each (a frame of ``size`` x ``people * size``), so every
face keeps the scale the miniature VAE was trained on; a person may be drawn smaller than the slot
(different sizes, as people at different distances) and stands at its bottom. Each person speaks
in their own bursts of babble or real speech with their own pauses, so the clip has turns, overlap
and silence; the mouths follow their own voice only. The binding measure is then the lip sync of a
slot's mouth against its own voice and against each other voice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from soul.miniature.clips import AUDIO_RATE, draw_clip
from soul.miniature.portrait import FaceParams
from soul.miniature.speech import synthesize_babble
from soul.miniature.speech_pool import SpeechPool

MAX_PEOPLE = 4
SIZE_CHOICES = (1.0, 0.875, 0.75)  # a person's drawn size, as a share of the slot


@dataclass(frozen=True)
class Slot:
    """Where person k is drawn: the square ``[y, y + size) x [x, x + size)`` of the frame."""

    x: int
    y: int
    size: int

    def crop(self, frames: np.ndarray) -> np.ndarray:
        """The person's own square of ``frames`` ``[T, H, W, 3]`` (what `score_lipsync` reads)."""
        return frames[:, self.y : self.y + self.size, self.x : self.x + self.size]

    def box(self, width: int, height: int) -> tuple[float, float, float, float]:
        """The slot as a normalised ``(x0, y0, x1, y1)`` box of a ``width`` x ``height`` frame."""
        return (self.x / width, self.y / height, (self.x + self.size) / width, (self.y + self.size) / height)


@dataclass
class DrawnGroup:
    frames: np.ndarray  # [T, S, N * S, 3] uint8
    audios: list[np.ndarray]  # one 16 kHz stream per person, left to right
    fps: float
    faces: list[FaceParams]
    slots: list[Slot]
    mouth_open: list[np.ndarray]  # per person, [T] the drawn truth, 0..1
    mouth_boxes: list[tuple[float, float, float, float]]  # per person, normalised to the whole frame

    @property
    def people(self) -> int:
        return len(self.faces)

    def mixed_audio(self) -> np.ndarray:
        """What a microphone in the room hears: the voices summed (kept within [-1, 1])."""
        mix = np.sum(self.audios, axis=0)
        peak = float(np.abs(mix).max()) if mix.size else 0.0
        return (mix / peak if peak > 1.0 else mix).astype(np.float32)

    def portrait(self, scale: int = 8) -> np.ndarray:
        """The group at rest, drawn ``scale`` times larger than the clip (uint8 ``[S*scale, N*S*scale, 3]``):
        what a user hands `soul generate`, which fits it back to the clip's size. Each person stands
        where their slot puts them, on their own background."""
        from soul.miniature.portrait import draw_face

        size = self.frames.shape[1]
        canvas = np.empty((size * scale, self.people * size * scale, 3), np.uint8)
        for k, (face, slot) in enumerate(zip(self.faces, self.slots)):
            canvas[:, k * size * scale : (k + 1) * size * scale] = face.background
            y, x = slot.y * scale, slot.x * scale
            canvas[y : y + slot.size * scale, x : x + slot.size * scale] = np.asarray(draw_face(face, slot.size * scale))
        return canvas

    def person_masks(self) -> np.ndarray:
        """``bool [N, H, W]``: each person's slot (disjoint; together they cover the frame)."""
        _, height, width, _ = self.frames.shape
        masks = np.zeros((self.people, height, width), bool)
        for k in range(self.people):  # slot k is the k-th square column of the frame
            masks[k, :, k * height : (k + 1) * height] = True
        return masks


def speaking_turns(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A 0/1 activity envelope at 16 kHz: bursts of 0.4-2.0 s with pauses of 0.3-1.5 s, ramped
    over 20 ms so a voice never clicks on. Independent per person: turns, overlap and silence."""
    n = int(round(seconds * AUDIO_RATE))
    env = np.zeros(n, np.float32)
    t = float(rng.uniform(0.0, 0.8))
    while t < seconds:
        burst = float(rng.uniform(0.4, 2.0))
        a, b = int(t * AUDIO_RATE), min(n, int((t + burst) * AUDIO_RATE))
        env[a:b] = 1.0
        t += burst + float(rng.uniform(0.3, 1.5))
    ramp = np.hanning(int(0.04 * AUDIO_RATE))
    return np.clip(np.convolve(env, ramp / ramp.sum(), mode="same"), 0.0, 1.0).astype(np.float32)


def unrelated_voices(seconds: float, seed: int, count: int = 4) -> list[np.ndarray]:
    """``count`` voices shaped like a group's (babble in bursts with pauses) that nobody in any
    drawn clip speaks: the chance level of the cross-voice measure. Why not continuous babble: a
    mouth that is still in pauses correlates with any other voice that also pauses, so the chance
    level has to be measured with voices that pause too."""
    voices = []
    for k in range(count):
        rng = np.random.default_rng([seed, 101, k])
        babble = synthesize_babble(seconds, AUDIO_RATE, seed=7919 + 104_729 * seed + 64 + k)  # as score_mismatched's, shifted
        voices.append((babble * speaking_turns(seconds, rng)).astype(np.float32))
    return voices


def draw_group_clip(
    seed: int, people: int, seconds: float, fps: float = 16.0, size: int = 64, speech: SpeechPool | None = None,
) -> DrawnGroup:
    """``people`` (1-4) drawn people side by side, each speaking in their own turns; deterministic
    by seed. With a ``speech`` pool voices are pieces of real speech, else babble of their own seed."""
    if not 1 <= people <= MAX_PEOPLE:
        raise ValueError(f"people must be 1..{MAX_PEOPLE}, got {people}")
    rng = np.random.default_rng([seed, 23])
    n_samples = int(round(seconds * AUDIO_RATE))
    frames, audios, faces, slots, openings, boxes = [], [], [], [], [], []
    for k in range(people):
        person_seed = seed * MAX_PEOPLE + k
        voice = speech.segment(seconds, rng) if speech is not None else synthesize_babble(seconds, AUDIO_RATE, seed=person_seed)
        voice = np.pad(voice, (0, max(0, n_samples - voice.shape[0])))[:n_samples] * speaking_turns(seconds, rng)
        heard = speech.hear(voice.astype(np.float32), rng) if speech is not None else None
        drawn = max(16, int(round(size * SIZE_CHOICES[int(rng.integers(len(SIZE_CHOICES)))] / 2)) * 2)
        clip = draw_clip(person_seed, seconds, fps, drawn, audio=voice.astype(np.float32), heard=heard)
        canvas = np.empty((clip.frames.shape[0], size, size, 3), np.uint8)
        canvas[:] = clip.frames[:, :1, :1]  # the person's own background colour
        x_in = (size - drawn) // 2
        canvas[:, size - drawn :, x_in : x_in + drawn] = clip.frames
        slot = Slot(k * size + x_in, size - drawn, drawn)
        x0, y0, x1, y1 = clip.mouth_box  # normalised to the drawn square
        width = people * size
        boxes.append(((slot.x + x0 * drawn) / width, (slot.y + y0 * drawn) / size, (slot.x + x1 * drawn) / width, (slot.y + y1 * drawn) / size))
        frames.append(canvas)
        audios.append(clip.audio)
        faces.append(clip.face)
        slots.append(slot)
        openings.append(clip.mouth_open)
    return DrawnGroup(np.concatenate(frames, axis=2), audios, fps, faces, slots, openings, boxes)


__all__ = ["MAX_PEOPLE", "DrawnGroup", "Slot", "draw_group_clip", "speaking_turns", "unrelated_voices"]
