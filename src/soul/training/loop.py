"""The one training loop: step to a target, log, checkpoint, report progress.

The flow-matching trainer (and its distillers) and the light-decoder distiller differ in what a
step does, not in how steps are sequenced. Keeping the sequencing here means a resumed run, the
metrics log and the checkpoint cadence behave the same for every trainer: a run stopped at step
10 and resumed to 20 logs and checkpoints exactly what a straight run to 20 does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from soul.training.metrics import MetricsLogger

Progress = Callable[[int, int], Any]
"""``progress(step, target)`` after every step."""


class SteppedJob(Protocol):
    """What the loop drives: a step counter the job advances itself, one step, one checkpoint."""

    step: int

    def train_step(self) -> dict[str, float]:
        """Run one optimiser step, advance ``step`` by one and return the step's metrics."""
        ...

    def save_checkpoint(self) -> Any:
        """Write a checkpoint of the current step (collective in multi-process runs)."""
        ...


@dataclass(frozen=True)
class LoopPlan:
    """Where the loop stops and how often it logs and checkpoints.

    ``metrics_dir=None`` writes no ``metrics.jsonl`` (non-main ranks); checkpoints are still
    requested on every rank, since saving may gather state from all of them.
    """

    target: int
    log_every: int
    checkpoint_every: int
    metrics_dir: Path | None = None
    tensorboard: bool = False


def run_steps(
    job: SteppedJob,
    plan: LoopPlan,
    progress: Progress | None = None,
    final_metrics: Callable[[], dict[str, float]] | None = None,
) -> list[dict[str, float]]:
    """Step ``job`` from its current step to ``plan.target``; return one record per step run.

    Metrics are logged every ``log_every`` steps and at the target, checkpoints saved every
    ``checkpoint_every`` steps and at the target (so a finished run can always be resumed or
    extended). ``final_metrics`` (e.g. a held-out evaluation) is merged into the last step's record
    before it is logged. The metrics log is opened at the job's current step, so a resumed run
    drops any lines a crashed run wrote past its last checkpoint.
    """
    logger = MetricsLogger(plan.metrics_dir, resume_step=job.step, tensorboard=plan.tensorboard) if plan.metrics_dir is not None else None
    history: list[dict[str, float]] = []
    try:
        while job.step < plan.target:
            record = job.train_step()
            step = job.step
            if final_metrics is not None and step == plan.target:
                record.update(final_metrics())
            history.append({"step": step, **record})
            if logger is not None and (step % plan.log_every == 0 or step == plan.target):
                logger.log(step, record)
            if step % plan.checkpoint_every == 0 or step == plan.target:
                job.save_checkpoint()
            if progress:
                progress(step, plan.target)
    finally:
        if logger is not None:
            logger.close()
    return history
