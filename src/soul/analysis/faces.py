"""Face detection, landmarks and tracking with the dlib models that ship inside a PyPI package.

dlib's HOG detector, its 5- and 68-point shape predictors and its 128-d ResNet descriptor come
with `face_recognition_models`, so this module works offline with no download. The HOG detector
is the default because it runs at tens of milliseconds per frame on a CPU; the MMOD CNN detector
in the same package is ~100x slower here and is not used. Detection runs on a downscaled copy
of the frame and boxes are mapped back to full resolution, so landmarks keep their precision.

Licences differ per model (see docs/data.md): the 68-point predictor is trained on iBUG 300-W
and is for non-commercial use only; the 5-point predictor and the descriptor are CC0 / public
domain. `FaceAnalyzer.landmarks5` and `descriptor` never touch the 68-point model.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from soul.errors import InputError

MODEL_FILES = {
    "landmarks68": "shape_predictor_68_face_landmarks.dat",
    "landmarks5": "shape_predictor_5_face_landmarks.dat",
    "descriptor": "dlib_face_recognition_resnet_model_v1.dat",
    "mmod": "mmod_human_face_detector.dat",
}


def model_path(name: str) -> Path:
    """Path of one of dlib's model files inside the installed `face_recognition_models` package.

    The package's own `__init__` imports the deprecated `pkg_resources`; finding the file through
    the import system avoids that import and its warning.
    """
    if name not in MODEL_FILES:
        raise InputError(name, "is not a known face model", f"use one of {sorted(MODEL_FILES)}")
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise InputError("face_recognition_models", "is not installed", "pip install 'soul-avatar[data]'")
    path = Path(spec.origin).parent / "models" / MODEL_FILES[name]
    if not path.is_file():
        raise InputError(path, "model file is missing from face_recognition_models", "reinstall face_recognition_models")
    return path


def _import_dlib():  # noqa: ANN202 - dlib has no type stubs
    try:
        import dlib
    except ImportError:
        raise InputError("dlib", "is not installed", "pip install dlib-bin (or soul-avatar[data])") from None
    return dlib


@lru_cache(maxsize=None)
def _load(name: str):  # noqa: ANN202 - dlib objects
    dlib = _import_dlib()
    if name == "hog":
        return dlib.get_frontal_face_detector()
    path = str(model_path(name))
    if name in ("landmarks68", "landmarks5"):
        return dlib.shape_predictor(path)
    if name == "descriptor":
        return dlib.face_recognition_model_v1(path)
    return dlib.cnn_face_detection_model_v1(path)


@dataclass(frozen=True)
class FaceBox:
    """A face rectangle in full-resolution pixel coordinates, with the detector's score."""

    left: float
    top: float
    right: float
    bottom: float
    score: float = 0.0

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def center(self) -> tuple[float, float]:
        return ((self.left + self.right) / 2.0, (self.top + self.bottom) / 2.0)

    def iou(self, other: "FaceBox") -> float:
        """Intersection over union: how trackers decide two detections are the same face."""
        iw = max(0.0, min(self.right, other.right) - max(self.left, other.left))
        ih = max(0.0, min(self.bottom, other.bottom) - max(self.top, other.top))
        inter = iw * ih
        union = self.width * self.height + other.width * other.height - inter
        return inter / union if union > 0 else 0.0

    def to_dlib(self):  # noqa: ANN201 - dlib.rectangle
        dlib = _import_dlib()
        return dlib.rectangle(int(round(self.left)), int(round(self.top)), int(round(self.right)), int(round(self.bottom)))


def _check_frame(frame: np.ndarray) -> np.ndarray:
    """An RGB [H, W, 3] or grey [H, W] uint8 frame in the memory layout dlib accepts.

    Grey frames are what bulk analysis decodes (the luma plane, no colour conversion); HOG on
    grey skips the per-channel gradients and runs about 1.5x faster.
    """
    rgb = isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3
    grey = isinstance(frame, np.ndarray) and frame.ndim == 2
    if not (rgb or grey) or frame.dtype != np.uint8:
        shape = getattr(frame, "shape", None)
        raise InputError("frame", f"must be a uint8 RGB [H, W, 3] or grey [H, W] array, got {shape}", "decode frames with soul.media")
    # dlib's numpy overloads need C-contiguous, writeable memory (numpy 2 views fail to convert).
    if not frame.flags.c_contiguous or not frame.flags.writeable:
        frame = np.ascontiguousarray(frame).copy()
    return frame


class FaceAnalyzer:
    """One object that owns the dlib models, loaded once per process and shared across threads.

    dlib's detectors are not documented as thread-safe, so calls are serialised by a lock; use one
    analyzer per process (the curation engines run processes, not threads).
    """

    def __init__(self, *, detect_max_side: int = 640, upsample: int = 1) -> None:
        if detect_max_side < 64:
            raise InputError("detect_max_side", f"must be >= 64, got {detect_max_side}", "use 320..1280")
        self.detect_max_side = detect_max_side
        self.upsample = upsample
        self._lock = threading.Lock()

    def detect(self, frame: np.ndarray) -> list[FaceBox]:
        """Faces in one RGB or grey frame, largest first; boxes in the frame's own pixel coordinates."""
        frame = _check_frame(frame)
        h, w = frame.shape[:2]
        scale = min(1.0, self.detect_max_side / float(max(h, w)))
        small = frame
        if scale < 1.0:
            import cv2

            small = cv2.resize(frame, (max(1, int(round(w * scale))), max(1, int(round(h * scale)))), interpolation=cv2.INTER_AREA)
        with self._lock:
            rects, scores, _ = _load("hog").run(np.ascontiguousarray(small), self.upsample, 0.0)
        boxes = [
            FaceBox(
                max(0.0, r.left() / scale),
                max(0.0, r.top() / scale),
                min(float(w), r.right() / scale),
                min(float(h), r.bottom() / scale),
                float(s),
            )
            for r, s in zip(rects, scores)
        ]
        return sorted(boxes, key=lambda b: -b.width * b.height)

    def _shape(self, model: str, frame: np.ndarray, box: FaceBox) -> np.ndarray:
        frame = _check_frame(frame)
        with self._lock:
            shape = _load(model)(frame, box.to_dlib())
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def landmarks68(self, frame: np.ndarray, box: FaceBox) -> np.ndarray:
        """iBUG 68-point landmarks [68, 2] (x, y). Non-commercial model: see docs/data.md."""
        return self._shape("landmarks68", frame, box)

    def landmarks5(self, frame: np.ndarray, box: FaceBox) -> np.ndarray:
        """5-point landmarks [5, 2] (eye corners, nose base); CC0 model, used for alignment."""
        return self._shape("landmarks5", frame, box)

    def descriptor(self, frame: np.ndarray, box: FaceBox) -> np.ndarray:
        """dlib's 128-d identity descriptor of the face in `box` (aligned with the 5-point model)."""
        frame = _check_frame(frame)
        with self._lock:
            shape = _load("landmarks5")(frame, box.to_dlib())
            vec = _load("descriptor").compute_face_descriptor(frame, shape)
        return np.asarray(vec, dtype=np.float32)


@dataclass
class FaceTrack:
    """One face followed through sampled frames: the frame indices and boxes where it was seen."""

    track_id: int
    frame_indices: list[int] = field(default_factory=list)
    boxes: list[FaceBox] = field(default_factory=list)

    @property
    def median_height(self) -> float:
        return float(np.median([b.height for b in self.boxes])) if self.boxes else 0.0

    def box_at(self, frame_index: int) -> FaceBox:
        """The box at any frame, linearly interpolated between the samples where it was seen.

        Detection runs on sampled frames only; faces move little between samples, and the
        landmark predictor tolerates a box that is off by a few pixels.
        """
        if not self.boxes:
            raise ValueError("empty track")
        idx = np.asarray(self.frame_indices, dtype=np.float64)
        if frame_index <= idx[0]:
            return self.boxes[0]
        if frame_index >= idx[-1]:
            return self.boxes[-1]
        j = int(np.searchsorted(idx, frame_index))
        a, b = self.boxes[j - 1], self.boxes[j]
        t = (frame_index - idx[j - 1]) / (idx[j] - idx[j - 1])
        mix = lambda u, v: u + (v - u) * t  # noqa: E731
        return FaceBox(mix(a.left, b.left), mix(a.top, b.top), mix(a.right, b.right), mix(a.bottom, b.bottom), mix(a.score, b.score))


def track_faces(
    detections: Sequence[Sequence[FaceBox]],
    frame_indices: Sequence[int],
    *,
    iou_threshold: float = 0.2,
    max_gap: int = 3,
) -> list[FaceTrack]:
    """Greedy IoU tracking across sampled frames.

    A detection joins the live track whose last box overlaps it most (IoU above the threshold);
    a track missing for more than `max_gap` samples is closed. Greedy matching is enough because
    talking-human clips hold few faces that rarely cross; tracks are what let the pipeline count
    people (one face flickering in and out is still one person) and pick the active speaker.
    """
    if len(detections) != len(frame_indices):
        raise ValueError("detections and frame_indices differ in length")
    tracks: list[FaceTrack] = []
    last_seen: dict[int, int] = {}
    for sample, (frame_index, boxes) in enumerate(zip(frame_indices, detections)):
        live = [t for t in tracks if sample - last_seen[t.track_id] <= max_gap]
        taken: set[int] = set()
        for box in boxes:
            best, best_iou = None, iou_threshold
            for t in live:
                if t.track_id in taken:
                    continue
                overlap = t.boxes[-1].iou(box)
                if overlap > best_iou:
                    best, best_iou = t, overlap
            if best is None:
                best = FaceTrack(track_id=len(tracks))
                tracks.append(best)
            best.frame_indices.append(int(frame_index))
            best.boxes.append(box)
            last_seen[best.track_id] = sample
            taken.add(best.track_id)
    return tracks


def face_tracks(
    frames: Sequence[np.ndarray],
    analyzer: FaceAnalyzer,
    *,
    detect_every: int = 5,
    min_presence: float = 0.5,
) -> list[FaceTrack]:
    """Tracks of the faces present in at least `min_presence` of the sampled frames, largest first.

    Detecting on every `detect_every`-th frame keeps HOG (the slow part) off most frames; brief
    false detections (a face-like texture in one sample) are dropped by the presence rule.
    """
    if detect_every < 1:
        raise InputError("detect_every", f"must be >= 1, got {detect_every}", None)
    indices = list(range(0, len(frames), detect_every))
    if not indices:
        return []
    tracks = track_faces([analyzer.detect(frames[i]) for i in indices], indices)
    kept = [t for t in tracks if len(t.boxes) >= max(1, min_presence * len(indices))]
    kept.sort(key=lambda t: -t.median_height)
    for new_id, t in enumerate(kept):
        t.track_id = new_id
    return kept
