"""The ``/v1`` routes of docs/serve.md: submit, list, read, follow, download, cancel / delete, health."""

from __future__ import annotations

import re
import shutil
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile
from starlette.types import Message, Receive

from soul.errors import InputError
from soul.serve.config import ServeConfig
from soul.serve.events import job_events
from soul.serve.files import file_response
from soul.serve.intake import OUTPUT_NAME, PREVIEW_NAME, FormItems, Upload, accept_upload
from soul.serve.store import Job, JobStore

EXAMPLE_NAMES = ("portrait.png", "speech.wav")
MAX_FILES = 16  # one image plus one audio per person: far more than any preset's speakers
MAX_FIELDS = 64
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")


class ApiError(Exception):
    """An answer other than success: ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class UploadTooLarge(Exception):
    """The request body passed ``--max-upload-mb`` while it was being read."""


@dataclass
class ServeState:
    """What the routes share: settings, the job store, and the flag set when the server starts stopping."""

    config: ServeConfig
    store: JobStore
    stopping: threading.Event


def v1_router(state: ServeState, auth: Callable[[Request], Awaitable[None]]) -> APIRouter:
    """Every ``/v1`` route, behind ``auth`` (a no-op without a token)."""
    router = APIRouter(prefix="/v1", dependencies=[Depends(auth)])
    config, store = state.config, state.store

    def job_or_404(job_id: str) -> Job:
        return _job_or_404(store, job_id)

    @router.post("/jobs", status_code=201)
    async def submit(request: Request) -> JSONResponse:
        """Check the upload like `soul generate` does, store it under generated names, queue the job."""
        return await submit_job(request, config, store)

    @router.get("/jobs")
    def list_jobs(limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0)) -> dict[str, Any]:
        """A page of jobs, newest first, and the total count."""
        jobs, total = store.page(limit, offset)
        return {"jobs": [j.as_api() for j in jobs], "total": total}

    @router.get("/jobs/{job_id}")
    def get_job(job_id: str) -> dict[str, Any]:
        return job_or_404(job_id).as_api()

    @router.get("/jobs/{job_id}/events")
    async def events(job_id: str, request: Request) -> StreamingResponse:
        """The job's state as server-sent events until it is final."""
        job_or_404(job_id)
        return StreamingResponse(
            job_events(store, job_id, request.is_disconnected, state.stopping), media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @router.api_route("/jobs/{job_id}/video", methods=["GET", "HEAD"])
    def video(job_id: str, request: Request) -> Response:
        """The finished MP4, with Range requests (a browser seeks with them)."""
        job = job_or_404(job_id)
        if job.status != "succeeded":
            raise ApiError(409, f"job {job_id} is {job.status}: the video exists once it succeeded")
        path = config.jobs_dir / job_id / OUTPUT_NAME
        if not path.is_file():
            raise ApiError(404, f"job {job_id}: the video file is gone")
        return file_response(path, request.headers.get("range"), method=request.method)

    @router.api_route("/jobs/{job_id}/preview", methods=["GET", "HEAD"])
    def preview(job_id: str, request: Request) -> Response:
        """What is finished so far, as the fragmented MP4 the job writes beside its output."""
        job = job_or_404(job_id)
        path = config.jobs_dir / job_id / PREVIEW_NAME
        # The writer creates the file (a header, no frames) before the first chunk; a re-queued job's
        # file is the previous run's until its chunks come again.
        if not path.is_file() or (not job.final and not job.progress.get("chunks_done")):
            raise ApiError(404, f"job {job_id}: no preview yet (it appears once the first chunk is finished)")
        return file_response(path, request.headers.get("range"), method=request.method)

    @router.delete("/jobs/{job_id}", response_model=None)
    def delete(job_id: str) -> JSONResponse | Response:
        """Cancel a queued or running job (200); delete a finished one with its files (204)."""
        job_or_404(job_id)
        before = store.cancel(job_id)
        if before is None:
            raise ApiError(404, f"job {job_id}: not found")
        if before in ("queued", "running"):
            return JSONResponse({"id": job_id, "status": "cancelled"})
        store.delete(job_id)
        shutil.rmtree(config.jobs_dir / job_id, ignore_errors=True)
        return Response(status_code=204)

    @router.get("/examples/{name}")
    def example(name: str, request: Request) -> Response:
        """The bundled example inputs of the web UI (only these two names; nothing else is served)."""
        if config.examples is None or name not in EXAMPLE_NAMES or not (config.examples / name).is_file():
            raise ApiError(404, f"example {name}: not available")
        return file_response(config.examples / name, request.headers.get("range"), method=request.method)

    @router.get("/health")
    def health() -> dict[str, Any]:
        counts = store.counts()
        return {
            "status": "ok", "queued": counts["queued"], "running": counts["running"], "preset": config.preset,
            "workers": config.workers, "parallel": config.parallel,
        }

    return router


async def submit_job(request: Request, config: ServeConfig, store: JobStore) -> JSONResponse:
    """Check the upload like `soul generate` does, store it under generated names, queue the job.

    Limits come first (declared size, content type, queue room) so a doomed upload is refused
    before its body is read; a rejected upload leaves nothing behind.
    """
    limit = config.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(config)
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise ApiError(400, "request: must be multipart/form-data (image and audio as file parts, options as fields)")
    if store.counts()["queued"] >= config.max_queue:
        raise _queue_full(config)
    try:
        form = await Request(request.scope, _limited(request.receive, limit)).form(max_files=MAX_FILES, max_fields=MAX_FIELDS)
    except UploadTooLarge:
        raise _too_large(config) from None
    job_id = uuid.uuid4().hex
    job_dir = config.jobs_dir / job_id
    items: FormItems = [(k, Upload(v.filename, v.file) if isinstance(v, UploadFile) else v) for k, v in form.multi_items()]
    try:
        generate_request = await run_in_threadpool(accept_upload, items, job_dir, config)
    except InputError as err:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise ApiError(400, str(err)) from None
    except BaseException:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise
    finally:
        await form.close()
    added = store.add(
        job_id, preset=generate_request.preset, prompt=generate_request.prompt,
        request=generate_request.model_dump(mode="json"), max_queued=config.max_queue,
    )
    if not added:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise _queue_full(config)
    return JSONResponse({"id": job_id, "status": "queued"}, status_code=201)


def _job_or_404(store: JobStore, job_id: str) -> Job:
    job = store.get(job_id) if _JOB_ID.match(job_id) else None
    if job is None:
        raise ApiError(404, f"job {job_id}: not found")
    return job


def _limited(receive: Receive, limit: int) -> Receive:
    """``receive`` that raises `UploadTooLarge` once the body passes ``limit`` bytes (chunked uploads too)."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise UploadTooLarge
        return message

    return wrapped


def _too_large(config: ServeConfig) -> ApiError:
    return ApiError(413, f"upload: larger than the server's limit of {config.max_upload_mb:g} MB", {"Connection": "close"})


def _queue_full(config: ServeConfig) -> ApiError:
    return ApiError(429, f"queue: full ({config.max_queue} jobs waiting; try again when one has started)", {"Retry-After": "10"})


__all__ = ["ApiError", "ServeState", "v1_router"]
