"""Encode frames on a thread of their own while the model makes the next chunk.

Writing an MP4 is libx264 + colour conversion + AAC: about a third of a second per 20 s of 64x64
video, a third of the fast path's whole time on the miniature model (benchmarks/speed.py). PyAV
releases the GIL while it converts and encodes, so a second thread overlaps that cost with the
next chunk's sampling and decoding instead of adding to it. Frames still arrive in order, and
nothing else changes for the files: the writer's own guarantees (temporary name until ``close``,
abort on error) hold, because ``close`` here waits for every queued frame first.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import TracebackType

import numpy as np

_DONE = object()


class BackgroundSink:
    """``sink(frames)`` queues a batch; a worker thread calls ``write(frames)`` for each, in order.

    Use as a context manager: on a clean exit every batch is written before it returns; an
    exception raised by ``write`` is raised again in the caller (at the next call, at ``drain`` or
    on exit), and after one the remaining batches are dropped. ``max_batches`` bounds the memory
    held by batches waiting to be written (the producer waits when it is full): at 720p a chunk is
    ~0.3 GB of frames, and one batch queued is enough for the overlap.
    """

    def __init__(self, write: Callable[[np.ndarray], None], max_batches: int = 1) -> None:
        self._write = write
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_batches)
        self._error: BaseException | None = None
        self._dropping = False
        self._thread = threading.Thread(target=self._run, name="soul-frame-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _DONE:
                    return
                if self._error is None and not self._dropping:
                    self._write(item)  # type: ignore[arg-type]
            except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
                self._error = err
            finally:
                self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def __call__(self, frames: np.ndarray) -> None:
        self._raise()
        self._queue.put(frames)

    def drain(self) -> None:
        """Wait until every queued batch is written (e.g. before telling anyone the frames exist)."""
        self._queue.join()
        self._raise()

    def close(self) -> None:
        """Write what is queued, stop the thread; raise the writer's error if it had one."""
        if self._thread.is_alive():
            self._queue.put(_DONE)
            self._thread.join()
        self._raise()

    def __enter__(self) -> BackgroundSink:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
            return
        self._dropping = True  # the caller is failing: drop what is queued, keep its exception
        if self._thread.is_alive():
            self._queue.put(_DONE)
            self._thread.join()
