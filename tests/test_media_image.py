"""Image loading: formats, EXIF, alpha, grayscale, size limits, huge inputs, fitting."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from soul.errors import InputError
from soul.media.image import fit_image, image_info, load_image


def test_huge_portrait_is_downscaled_quickly(media: Path) -> None:
    start = time.perf_counter()
    img = load_image(media / "portraits" / "hallo_7.jpg", max_side=1024)
    elapsed = time.perf_counter() - start
    assert img.mode == "RGB"
    assert max(img.size) == 1024
    assert elapsed < 3.0
    info = image_info(media / "portraits" / "hallo_7.jpg")
    assert (info.original_width, info.original_height) == (3511, 3511)
    assert max(info.loaded_width, info.loaded_height) == 2048


@pytest.mark.parametrize("name", ["hallo_1.jpg", "hallo_3.jpg", "wan_full_body.png", "wan_cat_no_human.jpg"])
def test_shared_portraits_load_as_rgb(media: Path, name: str) -> None:
    img = load_image(media / "portraits" / name)
    assert img.mode == "RGB" and min(img.size) >= 64


def test_cat_without_a_person_is_still_a_valid_image(media: Path) -> None:
    # "no person found" is the model's business (multi-person masks), not the image loader's
    info = image_info(media / "portraits" / "wan_cat_no_human.jpg")
    assert info.format == "JPEG"


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    arr = np.zeros((100, 200, 3), np.uint8)
    arr[:, :100] = 255  # left half white
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif.tobytes(), quality=95)
    loaded = load_image(path)
    assert loaded.size == (100, 200)  # upright: taller than wide
    top = np.asarray(loaded)[:50].mean()
    bottom = np.asarray(loaded)[150:].mean()
    assert top > 200 and bottom < 50  # the white half is now on top
    info = image_info(path)
    assert info.exif_orientation == 6 and (info.width, info.height) == (100, 200)


def test_alpha_is_flattened_on_white_and_gray_becomes_rgb(tmp_path: Path) -> None:
    rgba = np.zeros((80, 80, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:40, :, 3] = 255  # top opaque red, bottom transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = np.asarray(load_image(tmp_path / "a.png"))
    assert tuple(out[10, 10]) == (255, 0, 0)
    assert tuple(out[70, 10]) == (255, 255, 255)

    Image.fromarray(np.full((70, 90), 77, np.uint8), "L").save(tmp_path / "g.webp", lossless=True)
    gray = load_image(tmp_path / "g.webp")
    assert gray.mode == "RGB" and tuple(np.asarray(gray)[5, 5]) == (77, 77, 77)

    Image.fromarray(np.full((70, 90, 3), 9, np.uint8)).convert("P").save(tmp_path / "p.bmp")
    assert load_image(tmp_path / "p.bmp").mode == "RGB"


@pytest.mark.parametrize("size", [(1, 1), (63, 200), (200, 10)])
def test_tiny_images_are_rejected(tmp_path: Path, size: tuple[int, int]) -> None:
    path = tmp_path / "small.png"
    Image.new("RGB", size).save(path)
    with pytest.raises(InputError, match="at least 64"):
        load_image(path)


def test_bad_files_raise_input_errors(tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(InputError, match="not an image"):
        load_image(text)
    with pytest.raises(InputError, match="not found"):
        load_image(tmp_path / "missing.png")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_image(empty)


def test_fit_image_covers_and_centre_crops() -> None:
    arr = np.zeros((100, 300, 3), np.uint8)
    arr[:, 100:200] = 255  # white centre band
    out = fit_image(Image.fromarray(arr), 64, 64)
    assert out.size == (64, 64)
    assert np.asarray(out).mean() > 240  # the centre band fills the square crop
    wide = fit_image(Image.fromarray(arr), 320, 96)
    assert wide.size == (320, 96)
