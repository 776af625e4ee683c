"""Shared test fixtures.

Tiny models run fastest on this 2-core machine with one torch thread, so every test process sets it.
Tests that need the real media in ../shared/media fail under CI=true when it is missing (CI must
test what the README promises) and skip elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover - torch is a core dependency
    pass

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_MEDIA = PROJECT_ROOT.parent / "shared" / "media"


@pytest.fixture(scope="session")
def media() -> Path:
    """Path of ../shared/media; fails under CI when absent, skips otherwise."""
    if not SHARED_MEDIA.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{SHARED_MEDIA} is missing: CI must run with ../shared/media beside the checkout")
        pytest.skip(f"{SHARED_MEDIA} not present")
    return SHARED_MEDIA
