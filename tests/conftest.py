"""Shared test fixtures.

Tiny models run fastest on this 2-core machine with one torch thread, so every test process sets it.
Tests that need the real media in ../shared/media fail under CI=true when it is missing (CI must
test what the README promises) and skip elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_MEDIA = PROJECT_ROOT.parent / "shared" / "media"


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Fail the test that leaves torch on another thread count: later in-process runs would then pick
    other BLAS kernels and differ in the last bit from their references (tests/test_parallel.py)."""
    yield
    threads = torch.get_num_threads()
    if threads != 1:
        torch.set_num_threads(1)
        pytest.fail(f"this test left torch.set_num_threads({threads}); restore 1 (a CLI or benchmark main() sets it)")


@pytest.fixture(scope="session")
def media() -> Path:
    """Path of ../shared/media; fails under CI when absent, skips otherwise."""
    if not SHARED_MEDIA.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{SHARED_MEDIA} is missing: CI must run with ../shared/media beside the checkout")
        pytest.skip(f"{SHARED_MEDIA} not present")
    return SHARED_MEDIA
