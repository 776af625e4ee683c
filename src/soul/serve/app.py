"""`create_app(config)`: the FastAPI app of `soul serve` (docs/serve.md), its workers and its web UI.

The app owns its data directory: it takes a lock on it (two servers on one queue would run every
job twice), re-queues the jobs a killed server left running, and starts the workers with the
app's lifespan. Every error leaves as ``{"error": "<one line>"}``, whichever layer raised it.
"""

from __future__ import annotations

import fcntl
import hmac
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from soul.config import load_preset
from soul.errors import RuntimeFailure
from soul.serve.api import ApiError, ServeState, v1_router
from soul.serve.config import ServeConfig
from soul.serve.live import LiveHub, live_routers
from soul.serve.metrics import ServeMetrics
from soul.serve.store import JobStore
from soul.serve.worker import WorkerPool, preload_job_modules

if TYPE_CHECKING:
    from soul.serve.group import WorkerGroup

STATIC_DIR = Path(__file__).resolve().parent / "static"
NO_UI = (
    "<!doctype html><meta charset=utf-8><title>Soul</title>"
    "<p>The Soul web UI is not installed here (soul/serve/static/ is missing); the HTTP API is under /v1.</p>"
)
WORKER_STOP_S = 10.0


def create_app(config: ServeConfig, group: WorkerGroup | None = None) -> FastAPI:
    """The app over ``config.data``: job store opened and recovered, workers started by the lifespan.

    ``group``: rank 0's side of a `soul serve --parallel` worker group (its one worker runs every
    job on all the group's processes; ``config.parallel`` names the layout).
    """
    config = config.model_copy(update={"data": config.data.expanduser().resolve()})
    config.jobs_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock_data_dir(config.data)
    try:
        load_preset(config.preset)  # a bad --preset fails here, in one line, not in every job
        preload_job_modules()
        store = JobStore(config.store_path)
        store.recover()
    except BaseException:
        lock.close()
        raise
    metrics = ServeMetrics(store)
    workers = WorkerPool(store, metrics, config.workers, group=group)
    live = LiveHub(config.data / "live", preset=config.preset, checkpoint=config.checkpoint, device=config.device,
                   max_sessions=config.live_sessions, idle_s=config.live_idle_s)
    shutil.rmtree(config.data / "live", ignore_errors=True)  # sessions do not survive a restart: their portraits go

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        workers.start()
        try:
            yield
        finally:
            live.stop()
            await run_in_threadpool(workers.stop, WORKER_STOP_S)

    app = FastAPI(
        title="Soul", summary="portrait + speech -> talking video (docs/serve.md)", lifespan=lifespan,
        docs_url=None, redoc_url=None,  # their pages load scripts from a CDN; the schema stays at /openapi.json
    )
    app.state.config, app.state.store, app.state.workers, app.state.metrics, app.state.lock = config, store, workers, metrics, lock
    # For the process that runs the app (soul serve): call on SIGTERM/SIGINT, before connections drain,
    # so event streams end and running jobs go back to the queue at their next chunk.
    app.state.begin_shutdown = workers.stopping.set
    _install_error_handlers(app)

    async def auth(request: Request) -> None:
        if config.token is None:
            return
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), config.token.encode()):
            raise ApiError(401, "authorization: missing or wrong token (send Authorization: Bearer <token>)", {"WWW-Authenticate": "Bearer"})

    app.include_router(v1_router(ServeState(config, store, workers.stopping), auth))
    live_http, live_ws = live_routers(live, config, auth)
    app.include_router(live_http)
    app.include_router(live_ws)
    app.state.live = live

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    def page(name: str) -> FileResponse | HTMLResponse:
        path = STATIC_DIR / name
        if not path.is_file():
            return HTMLResponse(NO_UI)
        return FileResponse(path, media_type="text/html", headers={"Cache-Control": "no-cache"})

    @app.get("/", include_in_schema=False, response_model=None)
    def index() -> FileResponse | HTMLResponse:
        return page("index.html")

    @app.get("/live", include_in_schema=False, response_model=None)
    def live_page() -> FileResponse | HTMLResponse:
        return page("live.html")

    @app.get("/static/{path:path}", include_in_schema=False)
    def static(path: str) -> FileResponse:
        target = (STATIC_DIR / path).resolve()
        if not target.is_relative_to(STATIC_DIR) or not target.is_file():
            raise ApiError(404, f"/static/{path}: not found")
        return FileResponse(target, headers={"Cache-Control": "no-cache"})

    return app


def _lock_data_dir(data: Path) -> IO[str]:
    """An exclusive lock on ``DATA/server.lock`` for the app's lifetime (the OS drops it if we are killed)."""
    handle = open(data / "server.lock", "a+", encoding="utf-8")  # noqa: SIM115 - held open on purpose
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RuntimeFailure(f"{data}: another soul serve is using this data directory (stop it, or give another --data)") from None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _install_error_handlers(app: FastAPI) -> None:
    """Every failure as ``{"error": "<one line>"}``, with the right status."""

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": " ".join(message.split())}, status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def _api(_request: Request, exc: ApiError) -> JSONResponse:
        return error(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return error(400, f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(Exception)
    async def _crash(_request: Request, exc: Exception) -> JSONResponse:
        return error(500, f"internal error: {type(exc).__name__}: {exc}")
