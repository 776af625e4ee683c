"""Identity and colour drift of a generated video of a known drawn face, window by window.

Why not the benchmark's dlib identity: dlib does not fire on 64x64 drawn faces. A drawn person's
identity is their colours and shapes (skin, hair, head outline, eyes' placement), all known from
the portrait's parameters, so it is measured straight on the pixels:
- identity descriptor: the inner head box at 16x16 (area average), the mouth box and the eye band
  masked out, because speech and blinks move them and that is not identity; a window's
  descriptor is the mean over its frames, which also averages the small head sway away.
  Identity distance = RMS difference (0..1 pixel scale) between a window's descriptor and the
  first window's.
- colour: the mean CIELAB of the inner head box; colour drift = CIEDE2000 between a window's
  mean and the first window's. This is Soul-Bench's `color_drift` (inner 80 % of the face box),
  kept the same so the miniature numbers read like the benchmark's.
- palette: the face box alone misses most of a drawn frame. Each flat region the portrait paints
  (skin without mouth, eyes and nose; the hair's crown; the background; the shirt) is located from
  the geometry, shrunk by the sway's reach and the VAE's blur, and its mean CIELAB compared with
  the first window's; palette drift is the largest of these CIEDE2000s, because a drift of any one
  region is visible and averaging regions lets one hide behind the others. (Measured on the
  mini model over 5 minutes: the face box moved <= 1 dE while the background reached 5 dE and
  the shirt 15 dE.)

Scale (drawn clips, so the truth is no drift): with 10 s windows identity stays at 0.003-0.013,
colour at 0.1-0.3 dE and palette under 0.01 dE; another person is 0.2-0.3 away. Windows of 1-2 s
do not average the sway (periods 4-5.6 s) out, and identity alone then reaches 0.04-0.11.

Every measure is linear in the frames or averages per-pixel Lab, so a window is summed frame by
frame and a 5-minute video can stream from its MP4.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from soul.bench.signal import ciede2000, rgb_to_lab
from soul.miniature.portrait import FaceParams, mouth_box

DESCRIPTOR_SIZE = 16
# Shrink of each palette region, fraction of the image: the drawn sway reaches 0.015, and the mini
# VAE (16x spatial) smears an edge over 2-3 px at 64 px.
PALETTE_MARGIN = 0.05
MIN_REGION_PIXELS = 8
PALETTE_REGIONS = ("skin", "hair", "background", "shirt")


def face_box(face: FaceParams, size: int) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1) inside the drawn head at rest (80 % of it: little background or hair)."""
    cx, cy = size * 0.5, size * 0.54
    hw, hh = size * face.head_width / 2 * 0.8, size * face.head_height / 2 * 0.8
    return (max(0, int(cx - hw)), max(0, int(cy - hh)), min(size, int(np.ceil(cx + hw))), min(size, int(np.ceil(cy + hh))))


def _eye_band(face: FaceParams, size: int, pad: float) -> tuple[float, float]:
    """(centre y, half height) of the band holding both eyes and brows, grown by `pad` pixels."""
    eye_y = size * 0.54 - size * face.head_height / 2 * 0.12
    return eye_y, size * face.head_width / 2 * face.eye_size * 1.6 + pad


def _descriptor_mask(face: FaceParams, size: int) -> np.ndarray:
    """[16, 16] weights over the face box: 0 where the mouth or the eyes are, 1 elsewhere."""
    x0, y0, x1, y1 = face_box(face, size)
    ys = y0 + (np.arange(DESCRIPTOR_SIZE) + 0.5) * (y1 - y0) / DESCRIPTOR_SIZE
    xs = x0 + (np.arange(DESCRIPTOR_SIZE) + 0.5) * (x1 - x0) / DESCRIPTOR_SIZE
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    mask = np.ones((DESCRIPTOR_SIZE, DESCRIPTOR_SIZE), np.float32)
    mx0, my0, mx1, my1 = mouth_box(face.with_state(dx=0.0, dy=0.0), size)
    pad = 0.03 * size
    mask[(xx >= mx0 - pad) & (xx <= mx1 + pad) & (yy >= my0 - pad) & (yy <= my1 + pad)] = 0.0
    eye_y, eye_r = _eye_band(face, size, pad)
    mask[np.abs(yy - eye_y) <= eye_r] = 0.0
    return mask


def _eye_mask(face: FaceParams, size: int) -> np.ndarray:
    """[16, 16] weights over the face box: 1 in the band of both eyes and brows, 0 elsewhere."""
    x0, y0, x1, y1 = face_box(face, size)
    ys = y0 + (np.arange(DESCRIPTOR_SIZE) + 0.5) * (y1 - y0) / DESCRIPTOR_SIZE
    eye_y, eye_r = _eye_band(face, size, 0.0)
    band = (np.abs(ys - eye_y) <= eye_r).astype(np.float32)
    return np.repeat(band[:, None], DESCRIPTOR_SIZE, axis=1)


def _area_matrix(length: int, out: int) -> np.ndarray:
    """[out, length] averaging weights: row i averages bin i of `length` pixels (at least one pixel)."""
    edges = np.linspace(0, length, out + 1).astype(int)
    m = np.zeros((out, length))
    for i in range(out):
        hi = max(edges[i + 1], edges[i] + 1)
        m[i, edges[i] : hi] = 1.0 / (hi - edges[i])
    return m


def _descriptor_of_mean(mean_crop: np.ndarray) -> np.ndarray:
    """[16, 16, 3] area average of a face-box crop (0..1): linear, so the mean frame's equals the mean of frames'."""
    h, w = mean_crop.shape[:2]
    return np.einsum("ih,hwc,jw->ijc", _area_matrix(h, DESCRIPTOR_SIZE), mean_crop, _area_matrix(w, DESCRIPTOR_SIZE))


def _ellipse(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    return ((xx - cx) / max(rx, 1e-6)) ** 2 + ((yy - cy) / max(ry, 1e-6)) ** 2 <= 1.0


def palette_masks(face: FaceParams, size: int) -> dict[str, np.ndarray]:
    """[S, S] boolean masks of the flat regions `draw_face` paints, at rest, shrunk by `PALETTE_MARGIN`.

    Skin leaves out the mouth box, each eye with its brow, and the nose line (they move or are
    shaded); hair is the crown above the forehead; the shirt leaves out the neck.

    Regions with fewer than `MIN_REGION_PIXELS` pixels at this size (a low shirt line at 64 px) are
    left out rather than measured on a few edge pixels.
    """
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    m = PALETTE_MARGIN * size
    cx, cy = size * 0.5, size * 0.54
    hw, hh = size * face.head_width / 2, size * face.head_height / 2
    head = _ellipse(xx, yy, cx, cy, hw + m, hh + m)
    hair_back = _ellipse(xx, yy, cx, cy - 0.285 * hh, 1.12 * hw + m, 0.835 * hh + m)
    crown = _ellipse(xx, yy, cx, cy - 0.6 * hh, 1.05 * hw + m, 0.5 * hh + m)
    neck = (np.abs(xx - cx) <= 0.35 * hw + m) & (yy >= cy + 0.5 * hh - m) & (yy <= cy + 1.05 * hh + m)
    shirt_out = _ellipse(xx, yy, cx, cy + 1.725 * hh, 1.9 * hw + m, 0.875 * hh + m)
    mx0, my0, mx1, my1 = mouth_box(face.with_state(dx=0.0, dy=0.0), size)
    mouth = (xx >= mx0 - m) & (xx <= mx1 + m) & (yy >= my0 - m) & (yy <= my1 + m)
    eye_y, er = size * 0.54 - 0.12 * hh, hw * face.eye_size
    eyes = (np.abs(np.abs(xx - cx) - hw * face.eye_spacing) <= 1.2 * er + m) & (yy >= eye_y - 1.6 * er - m) & (yy <= eye_y + 0.75 * er + m)
    nose = (xx >= cx - 0.06 * hw - m) & (xx <= cx + 0.02 * hw + m) & (yy >= cy - 0.02 * hh - m) & (yy <= cy + 0.16 * hh + m)
    masks = {
        "skin": _ellipse(xx, yy, cx, cy, hw - m, hh - m) & (yy >= cy - 0.6 * hh + m) & ~mouth & ~eyes & ~nose,
        "hair": _ellipse(xx, yy, cx, cy - 0.6 * hh, 1.05 * hw - m, 0.5 * hh - m) & (yy <= cy - 0.6 * hh - m),
        "background": ~(head | hair_back | crown | neck | shirt_out),
        "shirt": _ellipse(xx, yy, cx, cy + 1.725 * hh, 1.9 * hw - m, 0.875 * hh - m) & ~neck & ~head,
    }
    return {name: mask for name, mask in masks.items() if mask.sum() >= MIN_REGION_PIXELS}


class _Window:
    """Running sums of one window: the face-box crop, its mean Lab, and each palette region's mean Lab."""

    def __init__(self, face: FaceParams, size: int) -> None:
        self.size = size
        self.box = face_box(face, size)
        self.regions = palette_masks(face, size)
        self.crop_sum: np.ndarray | None = None
        self.lab_sum = np.zeros(3)
        self.region_sums = {name: np.zeros(3) for name in self.regions}
        self.count = 0

    def add(self, frame: np.ndarray) -> None:
        if frame.shape[0] != self.size:
            raise ValueError(f"a {frame.shape[0]} px frame in a window of {self.size} px frames")
        x0, y0, x1, y1 = self.box
        crop = frame[y0:y1, x0:x1]
        self.crop_sum = crop.astype(np.float64) if self.crop_sum is None else self.crop_sum + crop
        self.lab_sum += rgb_to_lab(crop.reshape(-1, 3)).mean(axis=0)
        for name, mask in self.regions.items():
            self.region_sums[name] += rgb_to_lab(frame[mask]).mean(axis=0)
        self.count += 1

    def merge(self, other: "_Window") -> None:
        assert self.crop_sum is not None and other.crop_sum is not None
        self.crop_sum = self.crop_sum + other.crop_sum
        self.lab_sum = self.lab_sum + other.lab_sum
        self.region_sums = {k: v + other.region_sums[k] for k, v in self.region_sums.items()}
        self.count += other.count

    def descriptor(self) -> np.ndarray:
        assert self.crop_sum is not None
        return _descriptor_of_mean(self.crop_sum / (255.0 * self.count))

    def lab(self) -> np.ndarray:
        return self.lab_sum / self.count

    def palette(self) -> dict[str, np.ndarray]:
        return {k: v / self.count for k, v in self.region_sums.items()}


def _frames(frames: np.ndarray | Iterable[np.ndarray]) -> Iterable[np.ndarray]:
    """Each frame checked to be square RGB, so a wrong layout fails loudly instead of measuring noise."""
    for frame in frames:
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[0] != frame.shape[1] or frame.shape[2] != 3:
            raise ValueError(f"frames must be square RGB [S, S, 3], got {frame.shape}")
        yield frame


def _summed(frames: np.ndarray | Iterable[np.ndarray], face: FaceParams) -> _Window:
    if isinstance(frames, np.ndarray) and frames.ndim == 3:  # one frame
        frames = frames[None]
    window = None
    for frame in _frames(frames):
        if window is None:
            window = _Window(face, frame.shape[0])
        window.add(frame)
    if window is None:
        raise ValueError("no frames to measure")
    return window


def _check_sizes(window: _Window, reference: _Window) -> None:
    if window.size != reference.size:
        raise ValueError(f"frames of {window.size} px measured against a reference of {reference.size} px")


def _identity(window: _Window, reference: _Window, mask: np.ndarray) -> float:
    _check_sizes(window, reference)
    diff = (window.descriptor() - reference.descriptor()) ** 2 * mask[..., None]
    return float(np.sqrt(diff.sum() / (mask.sum() * 3)))


def _palette_drift(window: _Window, reference: _Window) -> dict[str, float]:
    _check_sizes(window, reference)
    ref, now = reference.palette(), window.palette()
    return {k: float(ciede2000(ref[k], now[k])) for k in ref}


def identity_descriptor(frames: np.ndarray | Iterable[np.ndarray], face: FaceParams) -> np.ndarray:
    """[16, 16, 3] mean descriptor (0..1) of one frame [S, S, 3] or of frames; masked cells still hold pixels."""
    return _summed(frames, face).descriptor()


def identity_distance(window_frames: np.ndarray | Iterable[np.ndarray], reference_frames: np.ndarray | Iterable[np.ndarray], face: FaceParams) -> float:
    """RMS difference (0..1 pixel scale) of the mean descriptors outside the mouth and eye band.

    Means over each window first: a drawn identity is its colours and shapes, and averaging
    removes head sway and mouth motion, so what is left is what stays put, i.e. the person.
    """
    reference = _summed(reference_frames, face)
    window = _summed(window_frames, face)
    return _identity(window, reference, _descriptor_mask(face, reference.size))


def colour_drift(window_frames: np.ndarray | Iterable[np.ndarray], reference_frames: np.ndarray | Iterable[np.ndarray], face: FaceParams) -> float:
    """CIEDE2000 between the mean Lab of the face box over the window and over the reference."""
    return float(ciede2000(_summed(reference_frames, face).lab(), _summed(window_frames, face).lab()))


def palette_drift(window_frames: np.ndarray | Iterable[np.ndarray], reference_frames: np.ndarray | Iterable[np.ndarray], face: FaceParams) -> dict[str, float]:
    """CIEDE2000 per palette region (skin, hair, background, shirt) between the window and the reference."""
    return _palette_drift(_summed(window_frames, face), _summed(reference_frames, face))


def _rounded(values: list[float], digits: int) -> list[float]:
    return [round(float(v), digits) for v in values]


def drift_curves(frames: np.ndarray | Iterable[np.ndarray], face: FaceParams, fps: float, *, window_seconds: float = 10.0) -> dict:
    """Identity distance, colour drift and palette drift of each `window_seconds` window against the first.

    `frames` is [T, S, S, 3] uint8 or any iterable of such frames (e.g. a video reader), read once.
    A last window shorter than half a window is merged into the one before it.
    """
    per_window = max(1, int(round(window_seconds * fps)))
    windows: list[_Window] = []
    for i, frame in enumerate(_frames(frames)):
        if i % per_window == 0:
            windows.append(_Window(face, frame.shape[0]))
        windows[-1].add(frame)
    if not windows:
        raise ValueError("no frames to measure")
    if len(windows) > 1 and windows[-1].count < per_window / 2:
        last = windows.pop()
        windows[-1].merge(last)
    ref = windows[0]
    mask = _descriptor_mask(face, ref.size)
    identity = [_identity(w, ref, mask) for w in windows]
    colour = [float(ciede2000(ref.lab(), w.lab())) for w in windows]
    by_region = [_palette_drift(w, ref) for w in windows]
    regions = {k: [r[k] for r in by_region] for k in ref.regions}
    palette = [max(r.values(), default=0.0) for r in by_region]
    out: dict = {"window_seconds": window_seconds, "start_seconds": [round(k * per_window / fps, 3) for k in range(len(windows))]}
    for name, curve, digits in (("identity", identity, 5), ("colour", colour, 4), ("palette", palette, 4)):
        later = curve[1:] or [0.0]
        out[f"{name}_distance" if name == "identity" else f"{name}_drift"] = _rounded(curve, digits)
        out[f"{name}_end"] = round(curve[-1], digits)
        out[f"{name}_mean"] = round(float(np.mean(later)), digits)
        out[f"{name}_max"] = round(max(curve), digits)
    out["palette_by_region"] = {k: _rounded(v, 4) for k, v in regions.items()}
    return out


def portrait_curves(frames: np.ndarray, face: FaceParams, portrait: np.ndarray, fps: float, *, window_seconds: float = 10.0) -> dict:
    """Per `window_seconds` window, how far the video is from its portrait: `identity` (the face
    outside the mouth and eyes, as `distance_to_portrait`) and `eyes` (the band of both eyes and
    brows, where the mini VAE loses the portrait first). Both on the mean of the window's frames,
    so blinks and head sway weigh little; read them against a drawn clip of the same face, which
    blinks and sways too (`soul demo` reports both)."""
    per_window = max(1, int(round(window_seconds * fps)))
    reference = _summed(np.asarray(portrait), face)
    starts = list(range(0, frames.shape[0], per_window))
    if len(starts) > 1 and frames.shape[0] - starts[-1] < per_window / 2:
        starts.pop()  # a short last window joins the one before it
    bounds = list(zip(starts, starts[1:] + [frames.shape[0]]))
    identity_mask, eye_mask = _descriptor_mask(face, reference.size), _eye_mask(face, reference.size)
    curves: dict = {"window_seconds": window_seconds, "start_seconds": [round(a / fps, 3) for a, _ in bounds], "identity": [], "eyes": []}
    for a, b in bounds:
        window = _summed(frames[a:b], face)
        curves["identity"].append(round(_identity(window, reference, identity_mask), 5))
        curves["eyes"].append(round(_identity(window, reference, eye_mask), 5))
    return curves


def distance_to_portrait(frames: np.ndarray | Iterable[np.ndarray], face: FaceParams, portrait: np.ndarray) -> dict[str, float]:
    """Identity distance, colour difference (CIEDE2000) and palette difference of a whole video against its portrait.

    The same measures as `drift_curves`, with the portrait (at the video's size) as the
    reference instead of the first window: how far a sampler's output is from the person asked for.
    """
    reference = _summed(np.asarray(portrait), face)
    video = _summed(frames, face)
    palette = _palette_drift(video, reference)
    return {
        "identity_distance": round(_identity(video, reference, _descriptor_mask(face, reference.size)), 5),
        "colour_difference": round(float(ciede2000(reference.lab(), video.lab())), 4),
        "palette_difference": round(max(palette.values(), default=0.0), 4),
    }
