"""A Python client of the `soul serve` HTTP API (docs/serve.md): submit a job, watch it, fetch the MP4.

A thin layer over httpx: it imports nothing of Soul but its error types (no torch, no model), so
it starts in a blink and runs where no model is installed.

    from soul.client import SoulClient

    with SoulClient("http://127.0.0.1:8000", token=None) as soul:
        job = soul.submit("me.png", ["hello.wav"], "a woman talking", preset="mini-fast", steps=4)
        job = soul.wait(job["id"], timeout=600, on_progress=lambda j: print(j["progress"]))
        if job["status"] == "succeeded":
            soul.fetch_video(job["id"], "out.mp4")

Refusals of the server become Soul's errors carrying the server's one-line message: what was
sent is wrong (400 bad input, 401 token, 404 unknown job, 413 upload too big) -> `ServerRejected`,
an `InputError` (the CLI exits 2); the server cannot do it now (409 video not ready, 429 queue
full), cannot be reached, or failed -> `ServerError`, a `RuntimeFailure` (exit 1). Every one is
a `ClientError` with the HTTP `status` (None when there was no answer).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from soul.errors import InputError, RuntimeFailure, SoulError

try:
    import httpx
except ImportError as _err:  # pragma: no cover - httpx comes with the dev extra and huggingface tooling
    raise ImportError("soul.client needs httpx: pip install httpx") from _err

DEFAULT_SERVER = "http://127.0.0.1:8000"
FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
# Without an event for this long, the watcher asks for the job once and listens again: a lost
# connection or a server that restarted is noticed, and nothing is missed in between.
SSE_IDLE_S = 30.0
FETCH_ATTEMPTS = 4

JobDict = dict[str, Any]
FilePart = str | os.PathLike | tuple[str, bytes]
ProgressCallback = Callable[[JobDict], None]


class ClientError(SoulError):
    """Anything the client raises about the server; `status` is the HTTP status (None: no answer)."""

    status: int | None = None


class ServerRejected(ClientError, InputError):
    """The server refused what was sent (400, 401, 404, 413); the message is the server's line."""

    def __init__(self, status: int, message: str, fix: str | None = None) -> None:
        InputError.__init__(self, "server", message, fix)
        self.status = status
        self.message = message
        self.args = (message if not fix else f"{message} ({fix})",)


class BadRequest(ServerRejected):
    """400 (or 422): an input or option the CLI would refuse too; nothing was stored."""


class Unauthorized(ServerRejected):
    """401: the server wants `Authorization: Bearer <token>` and got none or another."""


class JobNotFound(ServerRejected):
    """404: no job with that id (never existed, or deleted)."""


class UploadTooLarge(ServerRejected):
    """413: an upload is over the server's --max-upload-mb."""


class ServerError(ClientError, RuntimeFailure):
    """The server could not do it (now): unreachable, busy, not ready, or failed."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class QueueFull(ServerError):
    """429: the server's queue is full; submit again later."""


class JobNotReady(ServerError):
    """409: the job has no video (yet): it is queued, running, failed or cancelled."""


class ServerUnavailable(ServerError):
    """No answer: the server is not running, not reachable, or too slow."""


class WaitTimeout(ServerError):
    """`wait` gave up before the job reached a final state (the job itself goes on)."""


_REJECTED: dict[int, tuple[type[ServerRejected], str | None]] = {
    400: (BadRequest, None),
    422: (BadRequest, None),
    401: (Unauthorized, "pass --token or set SOUL_TOKEN to the server's token"),
    404: (JobNotFound, None),
    413: (UploadTooLarge, "send a smaller file, or ask for a server with a larger --max-upload-mb"),
}


def error_for(response: httpx.Response) -> ClientError:
    """The error for a 4xx/5xx answer, with the server's `{"error": "..."}` line as its message."""
    message = _error_line(response)
    status = response.status_code
    if status in _REJECTED:
        cls, fix = _REJECTED[status]
        return cls(status, message, fix)
    if status == 429:
        return QueueFull(message, status)
    if status == 409:
        return JobNotReady(message, status)
    return ServerError(f"server answered {status}: {message}", status)


def _error_line(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        error = body.get("error", body.get("detail"))
        if isinstance(error, str) and error.strip():
            return error.strip().splitlines()[0]
        if error is not None:  # FastAPI's own validation errors: a list of dicts
            return json.dumps(error)[:300]
    text = response.text.strip()
    return text.splitlines()[0][:300] if text else response.reason_phrase or f"HTTP {response.status_code}"


class SoulClient:
    """One server, one token; a connection pool kept between calls (use as a context manager or `close()`)."""

    def __init__(
        self,
        base_url: str = DEFAULT_SERVER,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        poll_interval: float = 1.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.poll_interval = poll_interval
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)), transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SoulClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- the routes ---------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """`GET /v1/health`: `{"status": "ok", "queued", "running", "preset"}`."""
        return self._request("GET", "/v1/health").json()

    def submit(self, image: FilePart, audio: Sequence[FilePart] | FilePart, prompt: str = "", **options: Any) -> JobDict:
        """`POST /v1/jobs`: upload a portrait and one audio file per person; the new job (`queued`).

        Files are paths (streamed from disk) or `(filename, bytes)`. `options` are the form
        fields of docs/serve.md (`preset`, `seed`, `steps`, `negative_prompt`, ...): None is left
        out (the server's default), booleans become "on"/"off", lists comma-separated.
        """
        tracks = [audio] if _is_one_part(audio) else list(audio)  # type: ignore[arg-type]
        if not tracks:
            raise InputError("audio", "at least one audio file is required", "give one audio file per person")
        data = {"prompt": prompt, **{k: _form_value(v) for k, v in options.items() if v is not None}}
        with contextlib.ExitStack() as opened:
            files = [("image", _file_part(image, opened))] + [("audio", _file_part(a, opened)) for a in tracks]
            return self._request("POST", "/v1/jobs", data=data, files=files).json()

    def job(self, job_id: str) -> JobDict:
        """`GET /v1/jobs/{id}`."""
        return self._request("GET", f"/v1/jobs/{job_id}").json()

    def jobs(self, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        """`GET /v1/jobs`: `{"jobs": [...], "total": n}`, newest first."""
        return self._request("GET", "/v1/jobs", params={"limit": limit, "offset": offset}).json()

    def cancel(self, job_id: str) -> JobDict:
        """`DELETE /v1/jobs/{id}`: cancels a queued/running job; deletes a finished one (`status: "deleted"`)."""
        response = self._request("DELETE", f"/v1/jobs/{job_id}")
        if response.status_code == 204 or not response.content:
            return {"id": job_id, "status": "deleted"}
        return response.json()

    def wait(self, job_id: str, timeout: float | None = None, on_progress: ProgressCallback | None = None) -> JobDict:
        """Block until the job is succeeded, failed or cancelled and return it (`WaitTimeout` after `timeout` s).

        Listens to `GET /v1/jobs/{id}/events` (server-sent events) and calls `on_progress` with
        every new state of the job; when the event stream is unavailable or breaks, it polls
        `GET /v1/jobs/{id}` every `poll_interval` seconds instead.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last: list[JobDict] = []

        def final(job: JobDict) -> bool:
            if on_progress is not None and (not last or job != last[0]):
                on_progress(job)
            last[:] = [job]
            return job.get("status") in FINAL_STATUSES

        def remaining() -> float | None:
            if deadline is None:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                state = last[0].get("status") if last else "unknown"
                raise WaitTimeout(f"job {job_id} is still {state} after {timeout:g} s (it goes on; wait again or cancel it)")
            return left

        use_events = True
        while True:
            pause = True
            if use_events:
                try:
                    for job in self._events(job_id, remaining):
                        if final(job):
                            return job
                        remaining()
                except _NoEventStream:
                    use_events = False
                except httpx.TimeoutException:
                    pause = False  # listened to a quiet stream for a while: ask once, listen again
                except (httpx.TransportError, httpx.StreamError):
                    pass  # a broken stream: ask, pause, listen again
            if final(self.job(job_id)):
                return last[0]
            left = remaining()
            if pause:  # never hammer a server whose stream ends or fails at once
                time.sleep(self.poll_interval if left is None else min(self.poll_interval, left))

    def fetch_video(self, job_id: str, path: str | os.PathLike) -> Path:
        """`GET /v1/jobs/{id}/video` streamed to `path`, atomically (a temporary name, then rename).

        A download cut short is continued with a `Range` request; a job without a video yet is
        `JobNotReady` (409).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.partial-{os.getpid()}-{threading.get_ident()}")
        failures = 0
        try:
            with open(tmp, "wb") as out:
                while True:
                    try:
                        if self._download_into(job_id, out, out.tell()):
                            break
                        problem = "the answer ended early"
                    except (httpx.TimeoutException, httpx.TransportError, httpx.StreamError) as err:
                        problem = f"{type(err).__name__}: {err}"
                    failures += 1
                    if failures >= FETCH_ATTEMPTS:
                        raise ServerUnavailable(f"{self.base_url}: the video of job {job_id} did not arrive after {failures} tries ({problem})")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    # -- plumbing -----------------------------------------------------------------------------

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.TimeoutException:
            raise ServerUnavailable(f"{self.base_url}: no answer within {self.timeout:g} s ({method} {url})") from None
        except httpx.TransportError as err:
            raise ServerUnavailable(f"cannot reach {self.base_url} ({type(err).__name__}: {err}); is `soul serve` running there?") from None
        if response.status_code >= 400:
            raise error_for(response)
        return response

    def _download_into(self, job_id: str, out: IO[bytes], start: int) -> bool:
        """Append the video from byte `start` to `out`; True when it is complete."""
        headers = {"Range": f"bytes={start}-"} if start else {}
        with self._http.stream("GET", f"/v1/jobs/{job_id}/video", headers=headers) as response:
            if response.status_code >= 400:
                response.read()
                raise error_for(response)
            if start and response.status_code != 206:  # the server sends it whole: start over
                out.seek(0)
                out.truncate()
                start = 0
            total = _total_length(response, start)
            for chunk in response.iter_bytes():  # as they arrive: a cut keeps every byte received
                out.write(chunk)
        return total is None or out.tell() >= total

    def _events(self, job_id: str, remaining: Callable[[], float | None]) -> Iterator[JobDict]:
        """The job states of one `events` connection; `_NoEventStream` when the route gives none."""
        left = remaining()
        idle = SSE_IDLE_S if left is None else min(SSE_IDLE_S, max(left, 0.05))
        timeout = httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0), read=idle)
        try:
            with self._http.stream("GET", f"/v1/jobs/{job_id}/events", headers={"Accept": "text/event-stream"}, timeout=timeout) as response:
                if response.status_code >= 400 or not response.headers.get("content-type", "").startswith("text/event-stream"):
                    raise _NoEventStream  # the polling that follows reports 401 / 404 as what they are
                yield from parse_job_events(response.iter_lines())
        except httpx.RemoteProtocolError:
            return  # the server closed the stream mid-event (a restart): the caller asks and listens again


class _NoEventStream(Exception):
    pass


def parse_job_events(lines: Iterable[str]) -> Iterator[JobDict]:
    """The `event: job` payloads of a server-sent-events stream, given line by line (no newlines)."""
    event, data = "message", []
    for line in lines:
        line = line.rstrip("\r\n")
        if not line:
            if event == "job" and data:
                try:
                    job = json.loads("\n".join(data))
                except ValueError:
                    job = None
                if isinstance(job, dict):
                    yield job
            event, data = "message", []
            continue
        if line.startswith(":"):  # a comment (keep-alive)
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)


def _total_length(response: httpx.Response, start: int) -> int | None:
    """The full size of the file being downloaded, from Content-Range (206) or Content-Length (200)."""
    if "content-encoding" in response.headers:
        return None
    if response.status_code == 206:
        total = response.headers.get("content-range", "").rpartition("/")[2]
        return int(total) if total.isdigit() else None
    length = response.headers.get("content-length", "")
    return int(length) if length.isdigit() else None


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _is_one_part(item: Any) -> bool:
    return isinstance(item, (str, os.PathLike)) or (isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], (bytes, bytearray)))


def _file_part(item: FilePart, opened: contextlib.ExitStack) -> tuple[str, Any]:
    """A multipart file part: a path is opened (and streamed), `(name, bytes)` sent as is."""
    if _is_one_part(item) and isinstance(item, tuple):
        name, content = item
        return (Path(name).name, content)
    path = Path(item)
    if not path.is_file():
        raise InputError(path, "file not found" if not path.exists() else "is not a file", "check the path")
    return (path.name, opened.enter_context(open(path, "rb")))


def job_summary(job: Mapping[str, Any]) -> str:
    """One line about a job, for people: `<id> running chunk 2/5, 48 frames, eta 12 s`."""
    status = job.get("status", "?")
    progress = job.get("progress") or {}
    parts = [str(job.get("id", "?")), str(status)]
    if status == "running":
        done, total = progress.get("chunks_done", 0), progress.get("chunks_total")
        parts.append(f"chunk {done}/{total if total is not None else '?'}")
        if progress.get("frames"):
            parts.append(f"{progress['frames']} frames")
        if progress.get("eta_s") is not None:
            parts.append(f"eta {float(progress['eta_s']):.0f} s")
    elif status == "failed" and job.get("error"):
        parts.append(str(job["error"]))
    elif status == "succeeded" and isinstance(job.get("result"), dict):
        result = job["result"]
        if "num_frames" in result:
            parts.append(f"{result['num_frames']} frames")
        if "seconds" in result:
            parts.append(f"in {float(result['seconds']):.1f} s")
    return " ".join(parts)
