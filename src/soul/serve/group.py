"""`soul serve --parallel`: each job shared by every process torchrun launched (a worker group).

Rank 0 is the server (HTTP, the job store, one worker thread) and the group's leader. The other
ranks serve no HTTP: they follow. Each waits for rank 0's next message, makes the same
`run_generate` call on the same inputs (its share of every step: ``soul.parallel``), and waits
again. Messages are broadcasts over the group's default process group:

- ``job``: the request and the bytes of its input files (portrait, audio, masks), so a rank on
  another node needs no shared disk (weights: the same ``--checkpoint`` path on every node);
- ``idle``: a heartbeat every ``HEARTBEAT_S`` while the queue is empty, so no rank waits in a
  collective beyond the backend's timeout and a lost rank is noticed between jobs too;
- ``shutdown``: the server stops; the followers return.

Before a job runs, every rank checks what it can check alone (the preset, the checkpoint path) and
the ranks compare notes, so a node without the weights fails that job instead of stalling the
others in a collective. A job stops only where all ranks can stop with it: after every chunk rank
0 broadcasts its decision (go on, cancelled, server stopping) and every rank acts on it. After the
job, every rank reports how it ended (``all_gather``), so a failure on any rank fails the job.

A collective that fails (a rank died, the network broke) leaves the group unusable:
`GroupBroken` puts the running job back in the queue and the server exits with an error; started
again (by hand or by a supervisor), the group resumes the job from its last finished chunk.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch.distributed as dist

from soul.config import load_preset
from soul.errors import RuntimeFailure, SoulError
from soul.jobs.generate import GenerateRequest, GenerateResult, run_generate, warm_pipelines
from soul.parallel.runtime import ParallelRuntime
from soul.serve.worker import GroupBroken, JobCancelled, ServerStopping, one_line

log = logging.getLogger("soul.serve")

HEARTBEAT_S = 30.0
_GO, _STOP = "go", "stop"
_FILE_FIELDS = ("image", "audio", "masks")


class _Halted(Exception):
    """A follower's job stopped by rank 0's decision at a chunk's end (cancel or server stop)."""


class WorkerGroup:
    """Rank 0's side of the group: what it tells the followers, and when."""

    def __init__(self, runtime: ParallelRuntime) -> None:
        if not runtime.is_writer:
            raise ValueError("the worker group is led by rank 0")
        self.runtime = runtime
        self.broken = False
        self.closed = False
        self._last_message = time.monotonic()

    def run(self, request: GenerateRequest, on_chunk: Callable[[dict[str, Any]], None], **kwargs: Any) -> GenerateResult:
        """`run_generate` on every rank; ``on_chunk`` is the job's own callback (it may raise
        `JobCancelled` / `ServerStopping`, which every rank then obeys)."""
        self._send({"kind": "job", "request": request.model_dump(mode="json"), "files": _file_bytes(request)})
        problems = self._exchange(preflight(request))
        if problems:
            raise RuntimeFailure(problems)
        try:
            result = run_generate(request, on_chunk=self._gate(on_chunk), parallel=self.runtime, **kwargs)
        except GroupBroken:
            raise
        except Exception as err:
            if _is_collective_failure(err):
                self.broken = True
                raise GroupBroken(one_line(err)) from err
            # Every rank raised at the same point (the same bad input, or the gate's decision), so
            # every rank reaches this exchange. A failure on this rank alone inside a chunk (its
            # writer) cannot be told apart here: see docs/serve.md on worker groups.
            self._exchange(None if isinstance(err, (JobCancelled, ServerStopping)) else one_line(err))
            raise
        problems = self._exchange(None)
        if problems:
            raise RuntimeFailure(problems)
        return result

    def heartbeat(self) -> None:
        """Tell idle followers the group lives (at most every ``HEARTBEAT_S``)."""
        if time.monotonic() - self._last_message >= HEARTBEAT_S:
            self._send({"kind": "idle"})

    def shutdown(self) -> None:
        """Let the followers return (once; nothing to say to a broken group)."""
        if self.closed or self.broken:
            return
        self.closed = True
        try:
            self._send({"kind": "shutdown"})
        except GroupBroken as err:
            log.warning("could not tell the worker group to stop: %s", err)

    def _gate(self, on_chunk: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
        def gate(record: dict[str, Any]) -> None:
            stop: Exception | None = None
            try:
                on_chunk(record)
            except Exception as err:  # noqa: BLE001 - cancelled, stopping, or the store failed: all ranks stop here
                stop = err
            self._send(_GO if stop is None else _STOP)
            if stop is not None:
                raise stop

        return gate

    def _send(self, message: Any) -> None:
        broadcast(self.runtime, message, on_error=self._break)
        self._last_message = time.monotonic()

    def _exchange(self, problem: str | None) -> str | None:
        """Every rank's problem (None: fine), as one line naming the ranks that had one."""
        reports = gather(self.runtime, problem, on_error=self._break)
        found = [f"rank {rank}: {text}" for rank, text in enumerate(reports) if text]
        return "; ".join(found) or None

    def _break(self) -> None:
        self.broken = True


def follow(runtime: ParallelRuntime) -> None:
    """Ranks 1..N-1 of `soul serve --parallel`: run rank 0's jobs until it shuts the group down.

    Inputs arrive as bytes and live in a scratch directory of this process for the job's length.
    Returns at ``shutdown``; raises `GroupBroken` when rank 0 is gone.
    """
    with warm_pipelines(), tempfile.TemporaryDirectory(prefix="soul-follower-") as scratch:
        jobs = 0
        while True:
            message = broadcast(runtime, None)
            if message["kind"] == "shutdown":
                return
            if message["kind"] != "job":
                continue
            jobs += 1
            job_dir = Path(scratch) / f"job-{jobs}"
            try:
                request = _local_request(message, job_dir)
                if gather(runtime, preflight(request)).count(None) != runtime.world_size:
                    continue
                gather(runtime, _follow_job(runtime, request))
            finally:
                shutil.rmtree(job_dir, ignore_errors=True)


def _follow_job(runtime: ParallelRuntime, request: GenerateRequest) -> str | None:
    """Run one job as a follower; what went wrong on this rank (None: nothing, or halted by rank 0)."""

    def gate(_record: dict[str, Any]) -> None:
        if broadcast(runtime, None) != _GO:
            raise _Halted

    try:
        run_generate(request, on_chunk=gate, parallel=runtime)
    except _Halted:
        return None
    except GroupBroken:
        raise
    except Exception as err:  # noqa: BLE001 - reported to rank 0, which fails the job with it
        if _is_collective_failure(err):
            raise GroupBroken(one_line(err)) from err
        return one_line(err)
    return None


def preflight(request: GenerateRequest) -> str | None:
    """What this rank can tell is wrong before any collective: the preset, the weights' path."""
    try:
        load_preset(request.preset)
    except SoulError as err:
        return one_line(err)
    if request.checkpoint is not None and not Path(request.checkpoint).is_dir():
        return f"--checkpoint {request.checkpoint} is not a directory on this node (every rank needs the weights at the same path)"
    return None


def broadcast(runtime: ParallelRuntime, message: Any, on_error: Callable[[], None] | None = None) -> Any:
    """Rank 0's ``message`` on every rank (a collective: every rank calls it)."""
    payload = [message]
    try:
        dist.broadcast_object_list(payload, src=0, device=_object_device(runtime))
    except Exception as err:  # noqa: BLE001 - any failure of a collective breaks the group
        if on_error is not None:
            on_error()
        raise GroupBroken(one_line(err)) from err
    return payload[0]


def gather(runtime: ParallelRuntime, item: Any, on_error: Callable[[], None] | None = None) -> list[Any]:
    """Every rank's ``item``, in rank order, on every rank (a collective)."""
    items: list[Any] = [None] * runtime.world_size
    try:
        dist.all_gather_object(items, item)
    except Exception as err:  # noqa: BLE001 - as in broadcast
        if on_error is not None:
            on_error()
        raise GroupBroken(one_line(err)) from err
    return items


def _object_device(runtime: ParallelRuntime) -> Any:
    """Where torch stages pickled objects: the rank's GPU under NCCL, else the CPU (gloo)."""
    return runtime.device if runtime.device.type == "cuda" else None


def _is_collective_failure(err: BaseException) -> bool:
    """Whether ``err`` came out of torch.distributed (a peer lost) rather than out of the job."""
    return isinstance(err, (GroupBroken, dist.DistError))


def _file_bytes(request: GenerateRequest) -> dict[str, list[tuple[str, bytes]]]:
    files: dict[str, list[tuple[str, bytes]]] = {}
    for name in _FILE_FIELDS:
        value = getattr(request, name)
        paths = value if isinstance(value, list) else [value]
        files[name] = [(Path(p).name, Path(p).read_bytes()) for p in paths]
    return files


def _local_request(message: dict[str, Any], job_dir: Path) -> GenerateRequest:
    """Rank 0's request with its input files written under ``job_dir`` and its output there too
    (a follower never writes the output; `run_generate` keeps its decoded audio beside it)."""
    fields = dict(message["request"])
    for name in _FILE_FIELDS:
        folder = job_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for n, (filename, data) in enumerate(message["files"][name]):
            path = folder / f"{n}-{filename}"
            path.write_bytes(data)
            paths.append(path)
        fields[name] = paths if isinstance(fields[name], list) else paths[0]
    fields["output"] = job_dir / "out" / Path(fields["output"]).name
    return GenerateRequest.model_validate(fields)


__all__ = ["HEARTBEAT_S", "WorkerGroup", "broadcast", "follow", "gather", "preflight"]
