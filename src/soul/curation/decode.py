"""Decoding for analysis: each clip once, small and grey, shared by every stage.

Full-resolution RGB is what a person looks at, not what the stages need: faces are found on a
frame of at most 640 px, landmarks and the mouth crop read luma, blur is measured at 256 px
height and motion at 160 px width. Decoding straight to a small grey frame inside FFmpeg
(swscale from the decoder's YUV, area filter) costs a fraction of a full-size RGB frame and a
quarter of its memory, so one pass feeds every stage; the clip writer decodes the kept clips
again at full size.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from soul.errors import InputError
from soul.media.video import VideoReader

ANALYSIS_MAX_SIDE = 640  # = people.detect_max_side's default: faces are found at this size, no resize


def fit_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled down (never up) so the longer side is at most `max_side`."""
    s = min(1.0, max_side / float(max(width, height)))
    return max(2, round(width * s)), max(2, round(height * s))


def analysis_frames(reader: VideoReader, start: int, stop: int, max_side: int = ANALYSIS_MAX_SIDE) -> list[np.ndarray]:
    """Grey (full-range luma) frames start..stop-1 at most `max_side` px, read by seeking.

    Raises InputError when the clip decodes short (a damaged stretch of the source).
    """
    size = fit_size(reader.width, reader.height, max_side)
    frames = list(reader.frames(start, stop, size=size, format="gray"))
    if len(frames) < stop - start:
        raise InputError(reader.path, f"decoded {len(frames)} of {stop - start} frames of the clip", "re-encode the file")
    return frames


def shot_frames(reader: VideoReader, max_side: int) -> Iterator[np.ndarray]:
    """Every frame of a source as small BGR (what PySceneDetect's detectors take), in one pass."""
    yield from reader.frames(size=fit_size(reader.width, reader.height, max_side), format="bgr24")
