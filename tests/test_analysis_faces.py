"""Face detection, landmarks, tracking and identity on real media with dlib's packaged models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from soul.analysis import (
    FaceAnalyzer,
    FaceBox,
    face_embedding,
    identity_distance,
    model_path,
    mouth_opening,
    same_person,
    track_faces,
)
from soul.errors import InputError
from soul.media.image import load_image
from soul.media.video import read_video


@pytest.fixture(scope="module")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer(detect_max_side=480)


def _frame(media: Path, clip: str, index: int = 10) -> np.ndarray:
    return next(read_video(media / "clips" / clip).frames(start=index, stop=index + 1))


def test_portrait_has_one_face_and_cat_has_none(media: Path, analyzer: FaceAnalyzer) -> None:
    face = np.asarray(load_image(media / "portraits" / "hallo_6.jpg", max_side=640))
    boxes = analyzer.detect(face)
    assert len(boxes) == 1
    pts = analyzer.landmarks68(face, boxes[0])
    assert pts.shape == (68, 2)
    b = boxes[0]
    assert b.left <= pts[:, 0].mean() <= b.right and b.top <= pts[:, 1].mean() <= b.bottom
    assert analyzer.landmarks5(face, boxes[0]).shape == (5, 2)
    cat = np.asarray(load_image(media / "portraits" / "wan_cat_no_human.jpg", max_side=640))
    assert analyzer.detect(cat) == []


def test_identity_same_person_across_clips(media: Path, analyzer: FaceAnalyzer) -> None:
    left = _frame(media, "two_people_left_speaks.mp4")
    boxes = sorted(analyzer.detect(left), key=lambda b: b.center[0])
    assert len(boxes) == 2
    left_emb, right_emb = (face_embedding(analyzer, left, b) for b in boxes)
    f2, f3 = _frame(media, "talking_face_2.mp4"), _frame(media, "talking_face_3.mp4")
    e2 = face_embedding(analyzer, f2, analyzer.detect(f2)[0])
    e3 = face_embedding(analyzer, f3, analyzer.detect(f3)[0])
    assert same_person(e2, left_emb) and same_person(e3, right_emb)
    assert identity_distance(e2, e3) > 0.6
    # A non-contiguous view (numpy 2) must still work.
    view = f2[:, ::-1][:, ::-1]
    assert identity_distance(face_embedding(analyzer, view, analyzer.detect(f2)[0]), e2) < 1e-4


def test_mouth_opening_grows_with_lip_gap() -> None:
    pts = np.zeros((68, 2), dtype=np.float32)
    pts[36], pts[45] = (0, 0), (100, 0)
    for top, bottom in ((50, 58), (51, 57), (52, 56), (61, 67), (62, 66), (63, 65)):
        pts[top], pts[bottom] = (50, 100), (50, 110)
    closed = mouth_opening(pts)
    for _, bottom in ((50, 58), (51, 57), (52, 56)):
        pts[bottom] = (50, 140)
    assert mouth_opening(pts) == pytest.approx(0.4) and closed == pytest.approx(0.1)
    with pytest.raises(InputError):
        mouth_opening(np.zeros((5, 2)))


def test_tracking_keeps_identities_apart() -> None:
    left = [FaceBox(10 + i, 10, 60 + i, 60) for i in range(6)]
    right = [FaceBox(200 - i, 10, 250 - i, 60) for i in range(6)]
    dets = [[l, r] for l, r in zip(left, right)]
    dets[2] = [right[2]]  # the left face is missed once
    tracks = track_faces(dets, list(range(0, 30, 5)))
    assert len(tracks) == 2
    assert [len(t.boxes) for t in tracks] == [5, 6]
    mid = tracks[0].box_at(12)  # interpolated between frames 5 (left 11) and 15 (left 13)
    assert mid.left == pytest.approx(12.4)


def test_bad_inputs(analyzer: FaceAnalyzer) -> None:
    with pytest.raises(InputError):
        model_path("nope")
    with pytest.raises(InputError):
        analyzer.detect(np.zeros((10, 10, 4), dtype=np.uint8))  # RGB [H, W, 3] or grey [H, W] only
    with pytest.raises(InputError):
        analyzer.detect(np.zeros((10, 10), dtype=np.float32))
    assert analyzer.detect(np.zeros((64, 64), dtype=np.uint8)) == []  # grey frames are valid (bulk analysis decodes luma)


def test_mouth_darkness_sees_an_open_mouth() -> None:
    from soul.analysis import mouth_darkness

    pts = np.zeros((68, 2), dtype=np.float32)
    pts[36], pts[45] = (60, 40), (140, 40)  # eye distance 80
    pts[48:68] = (100, 120)  # lip centre
    face = np.full((200, 200, 3), 190, dtype=np.uint8)
    closed = mouth_darkness(face, pts)
    face[106:134, 75:125] = 30  # the dark cavity of an open mouth
    opened = mouth_darkness(face, pts)
    assert closed == pytest.approx(1 - 190 / 255, abs=1e-3) and opened > closed + 0.3
    pts[48:68] = (500, 500)  # outside the frame: nothing to read
    assert mouth_darkness(face, pts) is None
