"""Worker threads: take queued jobs oldest first and run them through `run_generate`.

Each worker keeps its pipeline loaded between jobs (`warm_pipelines`), writes progress into the
store from `run_generate`'s callbacks, and stops a job only between chunks (the one point where
its resume state is complete): a cancel marks it cancelled there; a server shutdown puts it back
in the queue, to resume at the next start. Any other exception fails that job with one line and
the worker goes on with the next: one bad job never takes the server down.
"""

from __future__ import annotations

import inspect
import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from soul.errors import SoulError
from soul.jobs.generate import GenerateRequest, run_generate, warm_pipelines
from soul.serve.intake import PREVIEW_NAME, public_text
from soul.serve.metrics import ServeMetrics
from soul.serve.store import Job, JobStore

if TYPE_CHECKING:
    from soul.serve.group import WorkerGroup

log = logging.getLogger("soul.serve")


class JobCancelled(Exception):
    """Raised between chunks when the job's cancel flag is set: the job ends as ``cancelled``."""


class ServerStopping(Exception):
    """Raised between chunks while the server shuts down: the job goes back to ``queued``."""


class GroupBroken(Exception):
    """The processes sharing jobs (`soul serve --parallel`) lost one another: a collective failed.

    The running job goes back to ``queued`` and the server stops (nothing more can run on this
    group); a restarted group resumes the job from its last finished chunk.
    """


def preload_job_modules() -> None:
    """Import everything a job imports, once, in the calling thread, before any worker starts.

    transformers and diffusers load their classes lazily, and two threads importing them for the
    first time at once (a worker loading a model, a request checking an upload's preset) can see a
    half-initialised module: "cannot import name 'UMT5Config'". Importing up front rules that out
    and takes the import time off the first job.
    """
    import importlib

    from soul.config import available_presets, load_preset

    for module in ("soul.pipelines.soul_pipeline", "soul.pipelines.long_video", "soul.pipelines.shipped", "soul.jobs.resume", "soul.media.video", "soul.sampling.settings", "soul.media.spool"):
        importlib.import_module(module)
    for name in available_presets():  # their validators import transformers' config classes
        load_preset(name)


def _takes_preview() -> bool:
    """Whether this `run_generate` can write a growing preview MP4 (it gained ``preview=`` later)."""
    return "preview" in inspect.signature(run_generate).parameters


class ProgressTracker:
    """`run_generate`'s ``progress`` and ``on_chunk`` callbacks for one job, written to the store.

    ``eta_s`` extrapolates the sampling steps made in this run (resumed chunks cost nothing, so
    they are left out of the rate).
    """

    def __init__(self, store: JobStore, job_id: str, metrics: ServeMetrics, stopping: threading.Event) -> None:
        self.store, self.job_id, self.metrics, self.stopping = store, job_id, metrics, stopping
        self.started = time.monotonic()
        self.chunks_done = 0
        self.frames = 0
        self._first: tuple[int, float] | None = None  # (step, time) of the first sampled step
        self._steps_per_chunk: int | None = None

    def progress(self, step: int, total: int) -> None:
        now = time.monotonic()
        if self._first is None or step <= self._first[0]:
            self._first = (step, now)
        fields: dict[str, Any] = {"elapsed_s": round(now - self.started, 3)}
        first_step, first_time = self._first
        if step > first_step:
            fields["eta_s"] = round((now - first_time) / (step - first_step) * (total - step), 1)
        if self._steps_per_chunk:
            fields["chunks_total"] = max(1, total // self._steps_per_chunk)
        self.store.update_progress(self.job_id, **fields)

    def on_chunk(self, record: dict[str, Any]) -> None:
        self.chunks_done += 1
        self.frames += int(record.get("frames", 0))
        if not record.get("resumed") and record.get("seconds") is not None:
            self.metrics.chunk_seconds.observe(float(record["seconds"]))
        self.store.update_progress(
            self.job_id, chunks_done=self.chunks_done, frames=self.frames, elapsed_s=round(time.monotonic() - self.started, 3),
        )
        if self.store.cancel_requested(self.job_id):
            raise JobCancelled(self.job_id)
        if self.stopping.is_set():
            raise ServerStopping(self.job_id)

    def know_steps(self, steps_per_chunk: int) -> None:
        """Sampling steps per chunk, so ``progress(step, total)`` also tells the number of chunks."""
        self._steps_per_chunk = steps_per_chunk


class WorkerPool:
    """``count`` daemon threads serving the store's queue.

    With a ``group`` (`soul.serve.group.WorkerGroup`, rank 0 of `soul serve --parallel`) there is
    one worker, and every job runs on all the group's processes. ``on_fatal`` is called (from the
    worker thread) when the group breaks, so the server can exit.
    """

    def __init__(
        self, store: JobStore, metrics: ServeMetrics, count: int = 1, *, group: WorkerGroup | None = None,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        if group is not None and count != 1:
            raise ValueError("a worker group runs one job at a time: count must be 1")
        self.store, self.metrics, self.count, self.group, self.on_fatal = store, metrics, count, group, on_fatal
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.fatal: str | None = None

    def start(self) -> None:
        for n in range(self.count):
            thread = threading.Thread(target=self._loop, name=f"soul-worker-{n}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask workers to stop at their next chunk and wait up to ``timeout`` s in all.

        A job still running after that stays ``running`` in the store; the next start re-queues it.
        """
        self.stopping.set()
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _loop(self) -> None:
        try:
            with warm_pipelines():
                while not self.stopping.is_set() and self.fatal is None:
                    job = self.store.claim()
                    if job is None:
                        if self.group is not None:
                            self.group.heartbeat()
                        self.store.wait_for_change(0.5)
                        continue
                    try:
                        self.run_job(job)
                    except Exception:  # noqa: BLE001 - the store itself failed: keep the thread alive
                        log.exception("worker error on job %s", job.id)
                        time.sleep(1.0)
        except GroupBroken as err:  # lost while idle (a heartbeat failed)
            self._group_lost(str(err))
        finally:
            if self.group is not None:
                self.group.shutdown()

    def _group_lost(self, why: str) -> None:
        self.fatal = f"the worker group broke ({why})"
        log.error("%s: the server stops; start the group again and the queued jobs resume", self.fatal)
        self.stopping.set()
        if self.on_fatal is not None:
            self.on_fatal(self.fatal)

    def run_job(self, job: Job) -> None:
        """Run one claimed job to a final status (or back to the queue when the server stops)."""
        try:
            request = GenerateRequest.model_validate(job.request)
        except ValueError as err:  # a row written by another version of Soul
            self.store.finish(job.id, "failed", error=f"stored request unreadable: {one_line(err)}")
            return
        job_dir = request.output.parent
        tracker = ProgressTracker(self.store, job.id, self.metrics, self.stopping)
        started = time.monotonic()
        try:
            tracker.know_steps(_steps_per_chunk(request))
            kwargs: dict[str, Any] = {"preview": job_dir / PREVIEW_NAME} if _takes_preview() else {}
            if self.group is None:
                result = run_generate(request, progress=tracker.progress, on_chunk=tracker.on_chunk, **kwargs)
            else:
                result = self.group.run(request, progress=tracker.progress, on_chunk=tracker.on_chunk, **kwargs)
            if self.store.cancel_requested(job.id):  # cancelled after its last chunk: honour it
                request.output.unlink(missing_ok=True)
                raise JobCancelled(job.id)
        except JobCancelled:
            status = "cancelled"
            self._cancelled(job, request)
        except ServerStopping:
            self.store.requeue(job.id)
            log.info("job %s back in the queue: the server is stopping", job.id)
            return
        except GroupBroken as err:
            self.store.requeue(job.id)
            self._group_lost(str(err))
            return
        except Exception as err:  # noqa: BLE001 - any failure fails this job only
            status = "failed"
            if not isinstance(err, SoulError):
                log.exception("job %s failed", job.id)
            self.store.finish(job.id, status, error=public_text(one_line(err), job_dir))
        else:
            status = "succeeded"
            summary = json.loads(public_text(json.dumps(result.as_dict(), default=str), job_dir))
            summary["output"] = f"/v1/jobs/{job.id}/video"
            self.store.finish(job.id, status, result=summary)
        self.metrics.job_seconds.labels(status).observe(time.monotonic() - started)

    def _cancelled(self, job: Job, request: GenerateRequest) -> None:
        from soul.jobs.resume import state_dir_for

        self.store.finish(job.id, "cancelled")
        shutil.rmtree(state_dir_for(request.output), ignore_errors=True)  # nobody resumes a cancelled job


def _steps_per_chunk(request: GenerateRequest) -> int:
    from soul.config import load_preset
    from soul.jobs.generate import resolve_request

    return resolve_request(request, load_preset(request.preset)).steps


def one_line(err: BaseException) -> str:
    """The CLI's one-line form of an error: Soul's own message, else its type and first line."""
    text = str(err) if isinstance(err, SoulError) else f"{type(err).__name__}: {err}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


__all__ = ["GroupBroken", "JobCancelled", "ProgressTracker", "ServerStopping", "WorkerPool", "one_line"]
