"""Person masks for multi-speaker binding, on real portraits and real two-person footage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from soul.errors import InputError
from soul.models.person_masks import (
    Box,
    Expand,
    detect_people,
    head_and_shoulders,
    load_mask_images,
    masks_from_boxes,
    person_masks_for,
)


def _side_by_side(media: Path, left: str = "hallo_4.jpg", right: str = "hallo_5.jpg", height: int = 384) -> Image.Image:
    parts = []
    for name in (left, right):
        img = Image.open(media / "portraits" / name).convert("RGB")
        parts.append(img.resize((round(img.width * height / img.height), height)))
    canvas = Image.new("RGB", (sum(p.width for p in parts), height))
    canvas.paste(parts[0], (0, 0))
    canvas.paste(parts[1], (parts[0].width, 0))
    return canvas


def _assert_disjoint_left_to_right(masks: np.ndarray, n: int) -> None:
    assert masks.dtype == np.float32 and masks.shape[0] == n
    assert set(np.unique(masks)) <= {0.0, 1.0}
    assert masks.sum(axis=0).max() <= 1.0  # disjoint
    cols = [np.nonzero(m.any(axis=0))[0].mean() for m in masks]
    assert all(m.sum() > 0 for m in masks) and cols == sorted(cols)


def test_masks_from_boxes_split_overlaps_by_nearest_face() -> None:
    boxes = [Box(100, 100, 200, 200), Box(230, 110, 330, 210), Box(600, 50, 606, 56)]
    masks = masks_from_boxes(boxes, (640, 480), (30, 40))
    _assert_disjoint_left_to_right(masks, 3)
    # The first two regions overlap (each reaches 90 px sideways); the border lies between faces.
    row = masks[:, 200 * 30 // 480]  # both regions cover this row: together they span it
    first, second = np.nonzero(row[0])[0], np.nonzero(row[1])[0]
    assert first.max() + 1 == second.min()
    assert 200 / 16 <= second.min() <= 230 / 16 + 1  # the border lies between the two faces
    assert row[0].sum() + row[1].sum() == 25  # cell centres 24..408 px lie in 100-90 .. 330+90
    # Head and shoulders: the region reaches well below the chin and above the brows.
    rows = np.nonzero(masks[0].any(axis=1))[0]
    assert rows.min() * 16 <= 100 - 0.5 * 100 and (rows.max() + 1) * 16 >= 200 + 1.5 * 100
    # A face smaller than a latent cell still owns the cell under its centre.
    assert masks[2].sum() >= 1 and masks[2][53 * 30 // 480, 603 * 40 // 640] == 1
    assert head_and_shoulders(boxes[0], (640, 480), Expand(0, 0, 0)) == (100, 100, 200, 200)
    assert masks_from_boxes([], (64, 64), (4, 4)).shape == (0, 4, 4)


def test_each_hallo_portrait_holds_exactly_one_face(media: Path) -> None:
    for n in range(1, 8):
        image = Image.open(media / "portraits" / f"hallo_{n}.jpg")
        boxes = detect_people(image)
        assert len(boxes) == 1, f"hallo_{n}: {boxes}"
        b = boxes[0]
        # Boxes come back in full-resolution coordinates, also for the 3511 px hallo_7.
        assert 0 <= b.left < b.right <= image.width and 0 <= b.top < b.bottom <= image.height
        assert b.width > image.width / 8
    assert person_masks_for(image, 1, (22, 40)) is None  # one speaker: no mask needed


def test_two_people_side_by_side(media: Path) -> None:
    image = _side_by_side(media)
    boxes = detect_people(image)
    assert len(boxes) == 2 and boxes[0].center[0] < image.width / 2 < boxes[1].center[0]
    masks = person_masks_for(image, 2, (24, 44))
    _assert_disjoint_left_to_right(masks, 2)
    # Each mask stays on its own person's side of the midline between the two faces.
    middle = (boxes[0].center[0] + boxes[1].center[0]) / 2 / image.width * 44
    assert masks[0][:, int(np.ceil(middle)) :].sum() == 0 and masks[1][:, : int(middle)].sum() == 0
    assert masks[0][:, :22].sum() > 0.9 * masks[0].sum() and masks[1][:, 22:].sum() > 0.9 * masks[1].sum()
    with pytest.raises(InputError, match="3 audio streams but 2 people found"):
        person_masks_for(image, 3, (24, 44), source="pair.png")


def test_first_frame_of_two_people_clip(media: Path) -> None:
    import av

    with av.open(str(media / "clips" / "two_people_left_speaks.mp4")) as container:
        frame = next(container.decode(video=0)).to_image()
    masks = person_masks_for(frame, 2, (32, 64), source="two_people_left_speaks.mp4")
    _assert_disjoint_left_to_right(masks, 2)
    assert masks[0][:, :32].sum() > 0.9 * masks[0].sum() and masks[1][:, 32:].sum() > 0.9 * masks[1].sum()


def test_cat_has_no_person(media: Path) -> None:
    cat = Image.open(media / "portraits" / "wan_cat_no_human.jpg")
    with pytest.raises(InputError, match="no person found") as err:
        person_masks_for(cat, 1, (22, 40), source=media / "portraits" / "wan_cat_no_human.jpg")
    assert "wan_cat_no_human.jpg" in str(err.value)
    assert person_masks_for(cat, 1, (22, 40), require_person=False) is None


def test_user_masks(tmp_path: Path) -> None:
    left = np.zeros((64, 128), np.uint8)
    left[:, :64] = 255
    Image.fromarray(left).save(tmp_path / "left.png")
    Image.fromarray(255 - left).save(tmp_path / "right.png")
    Image.fromarray(np.zeros((64, 128), np.uint8)).save(tmp_path / "empty.png")
    image = Image.new("RGB", (128, 64))
    masks = person_masks_for(image, 2, (4, 8), [tmp_path / "left.png", tmp_path / "right.png"])
    assert masks.shape == (2, 4, 8) and masks.dtype == np.float32
    assert np.all(masks[0][:, :4] == 1) and np.all(masks[0][:, 4:] == 0) and np.all(masks[1] == 1 - masks[0])
    assert load_mask_images([tmp_path / "left.png"], (3, 3))[0, 0, 1] == pytest.approx(0.5, abs=0.02)
    with pytest.raises(InputError, match="2 masks for 3"):
        person_masks_for(image, 3, (4, 8), [tmp_path / "left.png", tmp_path / "right.png"])
    with pytest.raises(InputError, match="empty"):
        load_mask_images([tmp_path / "empty.png"], (4, 8))
    with pytest.raises(InputError, match="not found"):
        load_mask_images([tmp_path / "nope.png"], (4, 8))


def _first_frame(media: Path) -> Image.Image:
    import av

    with av.open(str(media / "clips" / "two_people_left_speaks.mp4")) as container:
        return next(container.decode(video=0)).to_image()


def test_people_are_found_on_the_portrait_and_mapped_through_the_crop(media: Path, tmp_path: Path) -> None:
    frame = _first_frame(media)  # 1024x512, two large frontal faces
    # At the generation size a face is a few pixels wide; found on the portrait, both are placed.
    masks = person_masks_for(frame, 2, (4, 8), frame_size=(128, 64), source="two.png")
    _assert_disjoint_left_to_right(masks, 2)
    assert masks[0][:, :4].sum() == masks[0].sum() and masks[1][:, 4:].sum() == masks[1].sum()
    # A square crop of a 2:1 frame cuts both faces: an error naming the shape that keeps them.
    with pytest.raises(InputError, match=r"fitted to 64x64 the portrait keeps only 0 of them in view") as err:
        person_masks_for(frame, 2, (4, 4), frame_size=(64, 64), source="two.png")
    assert "--width 128 --height 64" in str(err.value) and "two.png" in str(err.value)
    # Masks drawn over the portrait are fitted as the portrait is: the left half of a 1024x512
    # mask under a 512x512 centre crop covers the crop's left half minus the quarter cut away.
    mask = np.zeros((512, 1024), np.uint8)
    mask[:, :512] = 255
    Image.fromarray(mask).save(tmp_path / "left.png")
    fitted = load_mask_images([tmp_path / "left.png"], (4, 4), frame_size=(64, 64))[0]
    assert np.allclose(fitted[:, :2], 1.0, atol=0.01) and np.allclose(fitted[:, 2:], 0.0, atol=0.01)


def test_small_faces_in_a_large_frame_are_found(media: Path) -> None:
    """Two people whose faces are ~3 % of the frame's width (a wide group shot): at the first
    detection size they are ~25 px and HOG misses one; the larger look finds both."""
    canvas = Image.new("RGB", (3200, 1600), (90, 110, 90))
    canvas.paste(_first_frame(media).resize((500, 250)), (1066, 640))
    masks = person_masks_for(canvas, 2, (16, 32), frame_size=(512, 256), source="group.png")
    _assert_disjoint_left_to_right(masks, 2)
    cells = [np.argwhere(m) for m in masks]
    # Each person's cells lie where their face was pasted: x 1066 + (0.12..0.85) * 500 of 3200.
    for c in cells:
        assert 1066 / 3200 * 32 - 1 <= c[:, 1].min() and c[:, 1].max() <= (1066 + 500) / 3200 * 32 + 1
    assert cells[0][:, 1].mean() < cells[1][:, 1].mean()
