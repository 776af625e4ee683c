"""The background frame writer: same frames in the same order, errors reach the caller, failures drop the rest."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from soul.media.video import VideoWriter, read_video
from soul.media.writer_thread import BackgroundSink


def _batches(count: int, size: int = 16) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (3, size, size, 3), dtype=np.uint8) for _ in range(count)]


def test_batches_are_written_in_order_on_another_thread() -> None:
    seen: list[tuple[int, str]] = []

    def write(frames: np.ndarray) -> None:
        time.sleep(0.002)  # slower than the producer, so batches queue up
        seen.append((int(frames[0, 0, 0, 0]), threading.current_thread().name))

    batches = _batches(12)
    with BackgroundSink(write, max_batches=2) as sink:
        for b in batches:
            sink(b)
    assert [v for v, _ in seen] == [int(b[0, 0, 0, 0]) for b in batches]
    assert {name for _, name in seen} == {"soul-frame-writer"}


def test_drain_waits_for_every_queued_batch() -> None:
    written: list[np.ndarray] = []

    def write(frames: np.ndarray) -> None:
        time.sleep(0.01)
        written.append(frames)

    with BackgroundSink(write) as sink:
        for b in _batches(3):
            sink(b)
        sink.drain()
        assert len(written) == 3


def test_a_writer_error_is_raised_in_the_caller_and_later_batches_are_dropped() -> None:
    calls: list[int] = []

    def write(frames: np.ndarray) -> None:
        calls.append(1)
        raise OSError("No space left on device")

    sink = BackgroundSink(write)
    sink(_batches(1)[0])
    with pytest.raises(OSError, match="No space left"):
        sink.drain()
    with pytest.raises(OSError):
        sink(_batches(1)[0])
    with pytest.raises(OSError):
        sink.close()
    assert len(calls) == 1


def test_a_failing_caller_leaves_no_finished_mp4(tmp_path: Path) -> None:
    """The job's writer stack: the MP4 appears under its name only when every frame got there."""
    from contextlib import ExitStack

    out = tmp_path / "out.mp4"
    frames = np.zeros((8, 16, 16, 3), np.uint8)
    with pytest.raises(RuntimeError, match="sampling failed"):
        with ExitStack() as stack:
            writer = stack.enter_context(VideoWriter(out, 8))
            sink = stack.enter_context(BackgroundSink(writer.write))
            sink(frames)
            raise RuntimeError("sampling failed")
    assert not out.exists() and not list(tmp_path.iterdir())

    with ExitStack() as stack:
        writer = stack.enter_context(VideoWriter(out, 8))
        sink = stack.enter_context(BackgroundSink(writer.write))
        for k in range(4):
            sink(frames + 40 * k)
    back = read_video(out).read_all()
    assert back.shape[0] == 32
    assert [int(round(back[i].mean() / 40)) for i in (0, 8, 16, 24)] == [0, 1, 2, 3]
