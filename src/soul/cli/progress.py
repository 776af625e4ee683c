"""Progress bars that respect --quiet and --json (machine output must stay clean)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from soul.jobs.generate import ProgressFn


@contextmanager
def step_progress(description: str, enabled: bool) -> Iterator[ProgressFn]:
    """Yield a `(done, total)` callback that drives a bar on stderr, or does nothing when disabled."""
    if not enabled:
        yield lambda done, total: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
