"""Drawn (miniature-world) portraits told apart from every real portrait in ../shared/media."""

from __future__ import annotations

from pathlib import Path

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
