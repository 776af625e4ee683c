"""Training samples from what `soul data` writes: WebDataset shards (mp4 + wav + json per clip).

Shards are read by random access (a tar member index built once), not streamed, because exact
resume needs "sample n of epoch e" to be the same clip and window every time: the sample plan is a
pure function of (seed, epoch, index), so the data position in a checkpoint is one integer.
WebDataset's streaming readers cannot give that guarantee with shuffling.
"""

from __future__ import annotations

import io
import json
import math
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import soundfile as sf
from PIL import Image

from soul.config import MODEL_SAMPLE_RATE
from soul.errors import InputError
from soul.media.image import Fit, fit_image
from soul.training.config import DataConfig



@dataclass(frozen=True)
class ClipEntry:
    """Where one clip's members sit inside a shard, and its annotations."""

    key: str
    shard: Path
    video_member: str
    audio_member: str | None
    meta: dict[str, Any]
    speaker_members: tuple[str, ...] = ()  # each person's own voice (`<key>.<k>.wav`), left to right

    @property
    def duration(self) -> float:
        return float(self.meta.get("duration_s") or 0.0)


@dataclass
class TrainSample:
    """One training window: frames in [-1, 1] as float32 [T, H, W, 3], its audio and its text."""

    frames: np.ndarray
    reference: np.ndarray  # [H, W, 3] float32 in [-1, 1]: the anchor frame
    audio: np.ndarray  # 16 kHz mono float32 covering exactly the window
    caption: str
    mouth_box: tuple[float, float, float, float] | None  # normalised (x0, y0, x1, y1) or None
    key: str
    speakers: list[Speaker] = field(default_factory=list)  # several people: one voice and place each

    @property
    def mouth_boxes(self) -> list[tuple[float, float, float, float]]:
        """Every annotated mouth of the window: each speaker's, or the one person's."""
        boxes = [s.mouth_box for s in self.speakers] if self.speakers else [self.mouth_box]
        return [b for b in boxes if b is not None]


def box_slices(box: tuple[float, float, float, float], height: int, width: int) -> tuple[slice, slice]:
    """Rows and columns of a normalised ``(x0, y0, x1, y1)`` box on a ``height`` x ``width`` grid
    (latent cells or pixels): every cell the box touches, at least one each way."""
    x_a, y_a, x_b, y_b = box
    top, left = int(y_a * height), int(x_a * width)
    return slice(top, max(top + 1, math.ceil(y_b * height))), slice(left, max(left + 1, math.ceil(x_b * width)))


@dataclass
class Speaker:
    """One person of a multi-person window: their own voice (covering the window, 16 kHz) and
    where they are (normalised boxes of the frame): the region their voice drives, their mouth."""

    audio: np.ndarray
    box: tuple[float, float, float, float]
    mouth_box: tuple[float, float, float, float] | None


def find_shards(path: str | Path) -> list[Path]:
    """Shards of a `soul data` output directory, a shard directory, or one shard file."""
    p = Path(path)
    if p.is_file() and p.suffix == ".tar":
        return [p]
    for candidate in (p / "shards", p):
        if candidate.is_dir():
            found = sorted(candidate.glob("*.tar"))
            if found:
                return found
    raise InputError(p, "no WebDataset shards (*.tar) found", "run `soul data annotate ... --out DIR` and pass DIR")


def index_shards(shards: list[Path], categories: list[str] | None = None) -> list[ClipEntry]:
    """Read every shard's member list and metadata once; clips sorted by key for a stable order."""
    entries: list[ClipEntry] = []
    for shard in shards:
        with tarfile.open(shard) as tar:
            groups: dict[str, dict[str, str]] = {}
            for member in tar.getmembers():
                if not member.isfile() or "." not in Path(member.name).name:
                    continue
                key, ext = member.name.split(".", 1)
                groups.setdefault(key, {})[ext] = member.name
            for key, members in groups.items():
                if "mp4" not in members or "json" not in members:
                    continue
                meta = json.loads(tar.extractfile(members["json"]).read())  # type: ignore[union-attr]
                if categories and meta.get("category") not in categories:
                    continue
                voices = tuple(members[f"{k}.wav"] for k in range(len(meta.get("speakers") or [])) if f"{k}.wav" in members)
                if meta.get("speakers") and len(voices) != len(meta["speakers"]):
                    raise InputError(shard, f"clip {key} lists {len(meta['speakers'])} speakers but holds {len(voices)} voices", "rewrite the shard (soul mini clips)")
                entries.append(ClipEntry(key, shard, members["mp4"], members.get("wav"), meta, voices))
    if not entries:
        raise InputError(shards[0].parent, "the shards hold no usable clips", "check the categories filter and the data run's drop reasons")
    return sorted(entries, key=lambda e: e.key)


def _decode_video(data: bytes) -> tuple[list[np.ndarray], float]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    return frames, fps


def _decode_audio(data: bytes | None, seconds: float) -> np.ndarray:
    if data is None:
        return np.zeros(int(round(seconds * MODEL_SAMPLE_RATE)), np.float32)
    audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != MODEL_SAMPLE_RATE:
        t_new = np.arange(int(round(audio.shape[0] * MODEL_SAMPLE_RATE / rate))) / MODEL_SAMPLE_RATE
        audio = np.interp(t_new, np.arange(audio.shape[0]) / rate, audio).astype(np.float32)
    return audio


def choose_bucket(width: int, height: int, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The (height, width) bucket whose aspect ratio is closest to the clip's (log scale)."""
    aspect = np.log(width / height)
    return min(buckets, key=lambda hw: abs(np.log(hw[1] / hw[0]) - aspect))


def _fit_box(box: list[float] | tuple[float, ...], fit: Fit) -> tuple[float, float, float, float]:
    """A normalised ``(x0, y0, x1, y1)`` box of the source frame, normalised in the fitted frame."""
    src_w, src_h = fit.source
    x0, y0 = fit.point(box[0] * src_w, box[1] * src_h)
    x1, y1 = fit.point(box[2] * src_w, box[3] * src_h)
    clip = lambda v, size: min(1.0, max(0.0, v / size))  # noqa: E731
    return (clip(x0, fit.width), clip(y0, fit.height), clip(x1, fit.width), clip(y1, fit.height))


def _to_model_range(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    img = fit_image(Image.fromarray(frame), width, height)
    return np.asarray(img, dtype=np.float32) / 127.5 - 1.0


class ClipWindowDataset:
    """Deterministic training windows: `sample(epoch, index)` is the same every time it is asked."""

    def __init__(self, config: DataConfig, seed: int = 0, reference_from_clip: bool = True) -> None:
        self.config = config
        self.seed = seed
        self.reference_from_clip = reference_from_clip
        self.entries = index_shards(find_shards(config.path), config.categories)

    def __len__(self) -> int:
        return len(self.entries)

    def order(self, epoch: int) -> np.ndarray:
        """The clip order of an epoch: a seeded permutation."""
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.entries))

    def sample(self, epoch: int, index: int) -> TrainSample:
        entry = self.entries[int(self.order(epoch)[index % len(self.entries)])]
        rng = np.random.default_rng([self.seed, epoch, index, 1])
        with tarfile.open(entry.shard) as tar:
            video_bytes = tar.extractfile(entry.video_member).read()  # type: ignore[union-attr]
            audio_bytes = tar.extractfile(entry.audio_member).read() if entry.audio_member else None  # type: ignore[union-attr]
            voice_bytes = [tar.extractfile(m).read() for m in entry.speaker_members]  # type: ignore[union-attr]
        frames, src_fps = _decode_video(video_bytes)
        n_src = len(frames)
        cfg = self.config
        span = (cfg.num_frames - 1) / cfg.fps  # seconds the window covers (first to last frame)
        total = n_src / src_fps
        start_t = float(rng.uniform(0, max(0.0, total - span - 1.0 / cfg.fps)))
        times = start_t + np.arange(cfg.num_frames) / cfg.fps
        src_idx = np.clip(np.round(times * src_fps).astype(int), 0, n_src - 1)
        height, width = choose_bucket(frames[0].shape[1], frames[0].shape[0], cfg.buckets)
        window = np.stack([_to_model_range(frames[i], width, height) for i in src_idx])
        ref_idx = int(rng.integers(n_src)) if self.reference_from_clip else int(src_idx[0])
        reference = _to_model_range(frames[ref_idx], width, height)
        a0 = int(round(start_t * MODEL_SAMPLE_RATE))
        n_audio = int(round(cfg.num_frames / cfg.fps * MODEL_SAMPLE_RATE))

        def window_of(data: bytes | None) -> np.ndarray:
            audio = _decode_audio(data, total)
            out = np.zeros(n_audio, np.float32)
            part = audio[a0 : a0 + n_audio]
            out[: part.shape[0]] = part
            return out

        caption = str(entry.meta.get("caption") or "")
        box = entry.meta.get("mouth_box")
        fit = Fit.of((frames[0].shape[1], frames[0].shape[0]), width, height)  # boxes follow the frames' resize and crop
        speakers = [
            Speaker(window_of(data), _fit_box(info["box"], fit), _fit_box(info["mouth_box"], fit) if info.get("mouth_box") else None)
            for data, info in zip(voice_bytes, entry.meta.get("speakers") or [])
        ]
        return TrainSample(window, reference, window_of(audio_bytes), caption, tuple(box) if box else None, entry.key, speakers)

