"""Drawn (miniature-world) portraits told apart from every real portrait in ../shared/media."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from soul.analysis.drawing import looks_drawn
from soul.media.image import load_image
from soul.miniature.portrait import HELD_OUT_SEED, draw_face, random_face


@pytest.mark.parametrize("seed", [0, 1, 2, HELD_OUT_SEED, HELD_OUT_SEED + 1, HELD_OUT_SEED + 17, 987_654_321])
@pytest.mark.parametrize("size", [64, 512])
def test_drawn_faces_look_drawn(seed: int, size: int) -> None:
    assert looks_drawn(draw_face(random_face(seed), size=size))


def test_no_real_portrait_looks_drawn(media: Path) -> None:
    portraits = sorted((media / "portraits").iterdir())
    assert len(portraits) >= 10
    drawn = [p.name for p in portraits if looks_drawn(load_image(p))]
    assert drawn == []


@pytest.mark.parametrize("people", [2, 3, 4])
def test_drawn_groups_look_drawn_and_a_photo_beside_drawn_faces_does_not(people: int, media: Path) -> None:
    from PIL import Image

    from soul.miniature.group import draw_group_clip

    group = draw_group_clip(HELD_OUT_SEED + people, people, 0.25)
    portrait = group.portrait(8)
    assert looks_drawn(Image.fromarray(portrait))
    side = portrait.shape[0]
    photo = np.asarray(load_image(media / "portraits" / "hallo_1.jpg").convert("RGB").resize((side, side)))
    portrait[:, -side:] = photo  # the last person is a photo
    assert not looks_drawn(Image.fromarray(portrait))
