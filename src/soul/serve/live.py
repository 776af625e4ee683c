"""Live sessions of `soul serve`: ``POST /v1/live`` opens one, a WebSocket carries audio in and video out.

Protocol (docs/live.md):

- ``POST /v1/live`` (multipart: ``image`` file; ``prompt``, ``preset``, ``seed``, ``chunk_frames``,
  ``first_chunk_frames``, ``audio_lookahead``, ``codebook`` fields) loads the model and encodes the
  portrait, then answers ``201 {"id", "ws", "mime", "fps", "sample_rate"}``.
- ``GET /v1/live/{id}/ws`` (WebSocket; with ``--token``, ``?token=``: a browser's WebSocket cannot
  send headers). The server's first message is JSON ``{"type": "hello", "mime", "fps",
  "sample_rate", "audio_received"}``; then binary messages are the fragmented MP4 (the init segment
  first, to every new connection), JSON ``{"type": "chunk", ...}`` follow each chunk and
  ``{"type": "done", ...summary}`` ends the session. The client sends binary messages of 16-bit
  little-endian mono PCM at ``sample_rate`` and, when the audio is over, ``{"type": "end"}``.
- ``GET /v1/live/{id}`` is the session's state; ``DELETE /v1/live/{id}`` ends it.

Media Source Extensions with fragmented MP4 over the WebSocket, rather than HLS or WebRTC: MSE
plays H.264 + AAC fragments the moment they arrive (HLS players wait for whole segments and a
playlist refresh, seconds of latency; Chromium has no native HLS), and needs nothing but the
browser and the PyAV encoders Soul already has (WebRTC would need aiortc, ICE and a second codec
path). One connection carries both directions.

A session outlives its connection: audio and the stream continue where they were when a client
reconnects (it is told how much audio arrived; it is sent the init segment and the recent
fragments). A session with no client for ``idle_s`` is ended. Each session runs in its own thread
with its own warm pipeline; ``max_sessions`` bounds them (429 beyond).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import queue
import shutil
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from soul.config import MODEL_SAMPLE_RATE
from soul.errors import InputError
from soul.serve.api import MAX_FIELDS, ApiError, UploadTooLarge, _limited, _too_large
from soul.serve.intake import _IMAGE_SUFFIXES, Upload, _save, public_text

log = logging.getLogger("soul.serve")

LIVE_FIELDS = ("prompt", "preset", "seed", "chunk_frames", "first_chunk_frames", "audio_lookahead", "codebook")
RECENT_UNITS_S = 4.0
"""Seconds of stream kept for a client that reconnects (memory is bounded by this, not the session)."""
OPEN_TIMEOUT_S = 600.0


@dataclass
class _Client:
    """One WebSocket: what the session thread hands it, through the event loop it lives on."""

    loop: asyncio.AbstractEventLoop
    outbox: asyncio.Queue[Any]

    def send(self, item: Any) -> None:
        self.loop.call_soon_threadsafe(self.outbox.put_nowait, item)


@dataclass
class LiveRoom:
    """A session, its thread, its audio inbox, its connected clients and the recent stream."""

    id: str
    directory: Path
    fields: dict[str, Any]
    inbox: queue.Queue[tuple[np.ndarray, float] | None] = field(default_factory=queue.Queue)  # (samples, arrival); None: the end
    clients: list[_Client] = field(default_factory=list)
    init: bytes | None = None
    recent: deque[tuple[float, bytes]] = field(default_factory=deque)
    state: str = "opening"  # opening -> live -> ending -> done | failed
    summary: dict[str, Any] | None = None
    error: str | None = None
    chunks: int = 0
    audio_received: int = 0
    last_client_at: float = field(default_factory=time.monotonic)
    opened: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    info: dict[str, Any] = field(default_factory=dict)

    def as_api(self) -> dict[str, Any]:
        return {
            "id": self.id, "state": self.state, "chunks": self.chunks, "clients": len(self.clients),
            "audio_received_s": round(self.audio_received / MODEL_SAMPLE_RATE, 3), "error": self.error, "summary": self.summary, **self.info,
        }

    # ------------------------------------------------------------------ called from the session thread

    def broadcast(self, item: Any) -> None:
        with self.lock:
            for client in self.clients:
                client.send(item)

    def on_unit(self, data: bytes, kind: str) -> None:
        with self.lock:
            if kind == "init":
                self.init = data
            else:
                now = time.monotonic()
                self.recent.append((now, data))
                while self.recent and self.recent[0][0] < now - RECENT_UNITS_S:
                    self.recent.popleft()
            for client in self.clients:
                client.send(data)

    # ------------------------------------------------------------------ called from the event loop

    def attach(self, client: _Client) -> None:
        """A new connection: hello, the init segment and the recent fragments, then everything new."""
        with self.lock:
            client.send(json.dumps({"type": "hello", "audio_received": self.audio_received, **self.info}))
            if self.init is not None:
                client.send(self.init)
                for _, data in self.recent:
                    client.send(data)
            if self.state in ("done", "failed"):
                client.send(json.dumps({"type": self.state, "error": self.error, **(self.summary or {})}))
            self.clients.append(client)
            self.last_client_at = time.monotonic()

    def detach(self, client: _Client) -> None:
        with self.lock:
            if client in self.clients:
                self.clients.remove(client)
            self.last_client_at = time.monotonic()


class LiveBusy(Exception):
    """Every live session slot is taken (the route answers 429)."""


class LiveHub:
    """The server's live sessions: open, find, end; each one a thread running a `LiveSession`."""

    def __init__(self, root: Path, *, preset: str, checkpoint: Path | None, device: str, max_sessions: int = 1, idle_s: float = 120.0) -> None:
        self.root, self.preset, self.checkpoint, self.device = root, preset, checkpoint, device
        self.max_sessions, self.idle_s = max_sessions, idle_s
        self.rooms: dict[str, LiveRoom] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def active(self) -> int:
        return sum(1 for r in self.rooms.values() if r.state in ("opening", "live", "ending"))

    def open(self, image: Path, texts: dict[str, str]) -> LiveRoom:
        """Start a session thread and wait until it has opened (model, portrait) or failed."""
        from soul.jobs.live import build_live_request

        unknown = set(texts) - set(LIVE_FIELDS)
        if unknown:
            raise InputError(sorted(unknown)[0], "unknown field", f"fields are: image, {', '.join(LIVE_FIELDS)}")
        preset = texts.get("preset") or "mini-fast"
        codebook = texts.get("codebook")
        if codebook not in (None, "on", "off"):
            raise InputError("codebook", f"{codebook!r}", "use codebook=on or codebook=off")
        request = build_live_request(
            image=image, prompt=texts.get("prompt", ""), preset=preset, seed=texts.get("seed"),
            checkpoint=self.checkpoint if preset == self.preset else None, device=self.device,
            chunk_frames=texts.get("chunk_frames"), first_chunk_frames=texts.get("first_chunk_frames"),
            audio_lookahead=texts.get("audio_lookahead"), codebook=None if codebook is None else codebook == "on",
        )
        room = LiveRoom(id=image.parent.name, directory=image.parent, fields=texts)
        with self.lock:  # checked here, under the lock, so two opens at once cannot both take the last slot
            if self.active() >= self.max_sessions:
                raise LiveBusy
            for old in [r for r in self.rooms.values() if r.state in ("done", "failed") and not r.clients]:
                self.rooms.pop(old.id)
                shutil.rmtree(old.directory, ignore_errors=True)
            self.rooms[room.id] = room
        threading.Thread(target=self._run, args=(room, request), name=f"soul-live-{room.id[:8]}", daemon=True).start()
        if not room.opened.wait(OPEN_TIMEOUT_S):
            raise InputError("live session", f"did not open within {OPEN_TIMEOUT_S:.0f} s", "try again, or a smaller preset")
        if room.state == "failed":
            self.forget(room.id)
            raise InputError("live session", room.error or "failed to open", "check the portrait and the fields")
        return room

    def get(self, room_id: str) -> LiveRoom | None:
        return self.rooms.get(room_id)

    def forget(self, room_id: str) -> None:
        with self.lock:
            room = self.rooms.pop(room_id, None)
        if room is not None:
            shutil.rmtree(room.directory, ignore_errors=True)

    def stop(self) -> None:
        self.stopping.set()
        for room in list(self.rooms.values()):
            room.inbox.put(None)

    def _run(self, room: LiveRoom, request: Any) -> None:
        """The session thread: open, then feed audio and make chunks until the audio ends."""
        from soul.errors import SoulError
        from soul.jobs.generate import warm_pipelines
        from soul.jobs.live import LiveSession

        try:
            with warm_pipelines():
                try:
                    session = LiveSession(request, room.on_unit, on_chunk=lambda r: self._chunk(room, r))
                except (SoulError, ValueError, OSError) as err:
                    room.state, room.error = "failed", public_text(str(err), room.directory)
                    room.opened.set()
                    return
                room.info = {"mime": _mime(), "fps": session.settings.fps, "sample_rate": MODEL_SAMPLE_RATE, "settings": session.settings.as_record()}
                room.state = "live"
                room.opened.set()
                self._serve(room, session)
                room.state = "ending"
                room.summary = session.finish()
                room.state = "done"
                room.broadcast(json.dumps({"type": "done", **room.summary}))
        except Exception as err:  # a broken session must not take the server down; it says why
            log.exception("live session %s failed", room.id)
            room.state, room.error = "failed", f"{type(err).__name__}: {err}"
            room.opened.set()
            room.broadcast(json.dumps({"type": "failed", "error": room.error}))

    def _serve(self, room: LiveRoom, session: Any) -> None:
        def no_client_for_long() -> bool:
            if not room.clients and time.monotonic() - room.last_client_at > self.idle_s:
                log.info("live session %s: no client for %.0f s, ending it", room.id, self.idle_s)
                return True
            return False

        session.run(room.inbox, give_up=no_client_for_long)

    def _chunk(self, room: LiveRoom, record: dict[str, Any]) -> None:
        room.chunks += 1
        room.broadcast(json.dumps({"type": "chunk", **{k: record[k] for k in ("index", "first_frame", "frames", "latency_s", "compute_s", "video_time_s")}}))


def pcm16_to_float(data: bytes) -> np.ndarray:
    """A client's audio message (16-bit little-endian PCM) as float samples; odd byte counts are refused."""
    if len(data) % 2:
        raise InputError("audio message", f"{len(data)} bytes is not whole 16-bit samples", "send 16-bit little-endian mono PCM")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def _mime() -> str:
    from soul.media.live_stream import MIME

    return MIME


def new_room_dir(root: Path) -> Path:
    path = root / uuid.uuid4().hex
    path.mkdir(parents=True)
    return path


def live_routers(hub: LiveHub, config: Any, auth: Any) -> tuple[Any, Any]:
    """``(http, websocket)`` routers: the HTTP routes behind ``auth``; the WebSocket checks the token itself."""
    http = APIRouter(prefix="/v1", dependencies=[Depends(auth)])
    ws_router = APIRouter(prefix="/v1")

    def room_or_404(room_id: str) -> LiveRoom:
        room = hub.get(room_id)
        if room is None:
            raise ApiError(404, f"live session {room_id}: not found")
        return room

    @http.post("/live", status_code=201)
    async def open_session(request: Request) -> JSONResponse:
        """Open a session: the portrait and options in a multipart form; answers once the model is ready."""
        if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
            raise ApiError(400, "request: must be multipart/form-data (image as a file part, options as fields)")
        busy = ApiError(429, f"live: {hub.max_sessions} session(s) already running (end one, or try again later)", {"Retry-After": "10"})
        if hub.active() >= hub.max_sessions:  # before reading the upload; hub.open checks again under its lock
            raise busy
        try:
            form = await Request(request.scope, _limited(request.receive, config.max_upload_bytes)).form(max_files=1, max_fields=MAX_FIELDS)
        except UploadTooLarge:
            raise _too_large(config) from None
        try:
            images = [v for k, v in form.multi_items() if k == "image"]
            texts = {k: v.strip() for k, v in form.multi_items() if k != "image" and isinstance(v, str) and v.strip()}
            if len(images) != 1 or not isinstance(images[0], UploadFile):
                raise ApiError(400, "image: one portrait image file is required (send it as a multipart file part)")
            directory = new_room_dir(hub.root)
            try:
                image = _save(Upload(images[0].filename, images[0].file), directory / "image", _IMAGE_SUFFIXES)
                room = await run_in_threadpool(hub.open, image, texts)
            except InputError as err:
                shutil.rmtree(directory, ignore_errors=True)
                raise ApiError(400, public_text(str(err), directory)) from None
            except LiveBusy:
                shutil.rmtree(directory, ignore_errors=True)
                raise busy from None
        finally:
            await form.close()
        return JSONResponse({"id": room.id, "ws": f"/v1/live/{room.id}/ws", **room.info}, status_code=201)

    @http.get("/live/{room_id}")
    def session_state(room_id: str) -> dict[str, Any]:
        return room_or_404(room_id).as_api()

    @http.delete("/live/{room_id}")
    def end_session(room_id: str) -> dict[str, Any]:
        room = room_or_404(room_id)
        room.inbox.put(None)
        return {"id": room.id, "state": room.state}

    @ws_router.websocket("/live/{room_id}/ws")
    async def session_socket(websocket: WebSocket, room_id: str) -> None:
        if config.token is not None and not hmac.compare_digest(websocket.query_params.get("token", "").encode(), config.token.encode()):
            await websocket.close(code=4401, reason="authorization: missing or wrong token (add ?token=<token>)")
            return
        room = hub.get(room_id)
        if room is None:
            await websocket.close(code=4404, reason=f"live session {room_id}: not found")
            return
        await websocket.accept()
        client = _Client(asyncio.get_running_loop(), asyncio.Queue())
        room.attach(client)

        async def send() -> None:
            while True:
                item = await client.outbox.get()
                if isinstance(item, bytes):
                    await websocket.send_bytes(item)
                else:
                    await websocket.send_text(item)

        sender = asyncio.create_task(send())
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("bytes") is not None:
                    try:
                        samples = pcm16_to_float(message["bytes"])
                    except InputError as err:
                        await websocket.send_text(json.dumps({"type": "error", "error": str(err)}))
                        continue
                    if room.state in ("live", "opening"):
                        room.audio_received += samples.shape[0]
                        room.inbox.put((samples, time.perf_counter()))
                elif message.get("text"):
                    try:
                        kind = json.loads(message["text"]).get("type")
                    except (ValueError, AttributeError):
                        kind = None
                    if kind == "end":
                        room.inbox.put(None)
                    else:
                        await websocket.send_text(json.dumps({"type": "error", "error": "message: send {\"type\": \"end\"} or binary PCM"}))
        except WebSocketDisconnect:
            pass
        finally:
            room.detach(client)
            sender.cancel()

    return http, ws_router


__all__ = ["LIVE_FIELDS", "LiveBusy", "LiveHub", "LiveRoom", "live_routers", "new_room_dir", "pcm16_to_float"]
