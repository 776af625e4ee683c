"""Live sessions of `soul serve` (docs/live.md) against a real server process and a WebSocket client.

The client sends a drawn face and babble at real-time pace, as a browser does, and checks what a
player gets: an init segment, then fragments that decode to frames and sound while the audio is
still being sent; a reconnect mid-session continues the same stream; the end gives a summary.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.helpers.serve_process import Server, make_inputs

PIECE = 1600  # 100 ms of 16 kHz audio per message


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("serve-live") / "data", ["--preset", "mini-fast", "--live-sessions", "1"]).start()
    yield srv
    srv.kill(signal.SIGTERM)


def _open(server: Server, image: Path, **fields: Any) -> httpx.Response:
    with open(image, "rb") as f:
        return server.client.post("/v1/live", files={"image": ("face.png", f, "image/png")}, data={k: str(v) for k, v in fields.items()}, timeout=120)


def _pcm(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


def _frames(data: bytes) -> int:
    try:
        with av.open(io.BytesIO(data)) as c:
            return sum(1 for _ in c.decode(video=0))
    except av.error.FFmpegError:
        return 0


async def _stream(url: str, samples: np.ndarray, *, start: int = 0, stop: int | None = None, end: bool = True) -> dict[str, Any]:
    """Send samples[start:stop] at real-time pace; collect what comes back until done (or the stop)."""
    import websockets

    got: dict[str, Any] = {"bytes": [], "messages": [], "frames_while_sending": 0}
    stop = samples.shape[0] if stop is None else stop
    async with websockets.connect(url, max_size=None) as ws:
        hello = json.loads(await ws.recv())
        got["hello"] = hello

        async def receive() -> None:
            async for message in ws:
                if isinstance(message, bytes):
                    got["bytes"].append(message)
                else:
                    got["messages"].append(json.loads(message))
                    if got["messages"][-1]["type"] in ("done", "failed"):
                        return

        reader = asyncio.create_task(receive())
        began = time.perf_counter()
        for i in range(start, stop, PIECE):
            await asyncio.sleep(max(0.0, began + (i - start + PIECE) / 16000 - time.perf_counter()))
            await ws.send(_pcm(samples[i : min(i + PIECE, stop)]))
        got["frames_while_sending"] = _frames(b"".join(got["bytes"]))
        if end:
            await ws.send(json.dumps({"type": "end"}))
            await asyncio.wait_for(reader, 60)
        else:
            await asyncio.sleep(0.5)
            reader.cancel()
    return got


def test_a_live_session_streams_video_while_audio_arrives_and_survives_a_reconnect(server: Server, tmp_path: Path) -> None:
    image, speech = make_inputs(tmp_path, 3, 6.0)
    samples = sf.read(speech, dtype="float32")[0]
    r = _open(server, image, prompt="a person talking", seed=3)
    assert r.status_code == 201, r.text
    opened = r.json()
    assert opened["mime"].startswith("video/mp4") and opened["fps"] == 16 and opened["sample_rate"] == 16000
    url = server.base.replace("http", "ws") + opened["ws"]

    half = samples.shape[0] // 2
    first = asyncio.run(_stream(url, samples, stop=half, end=False))
    assert first["hello"]["audio_received"] == 0
    data = b"".join(first["bytes"])
    assert data[4:8] == b"ftyp"
    # frames were playable while audio was still being sent: ~3 s sent, the stream ~0.4 s behind at most
    assert first["frames_while_sending"] >= 16 * 2, first["frames_while_sending"]
    chunks = [m for m in first["messages"] if m["type"] == "chunk"]
    assert chunks and max(m["latency_s"] for m in chunks) < 2.0

    state = server.client.get(f"/v1/live/{opened['id']}").json()
    assert state["state"] == "live" and state["clients"] == 0  # the session outlived its client

    second = asyncio.run(_stream(url, samples, start=half))
    assert second["hello"]["audio_received"] == half  # told where to continue
    done = second["messages"][-1]
    assert done["type"] == "done" and abs(done["video_seconds"] - samples.shape[0] / 16000) < 0.07, done
    assert done["first_frame_latency_s"] < 1.5 and done["realtime_factor"] > 1.0, done
    rejoined = b"".join(second["bytes"])
    assert rejoined[4:8] == b"ftyp"  # a new connection gets the init segment, then the recent fragments
    assert _frames(rejoined) >= 16 * 2
    with av.open(io.BytesIO(rejoined)) as c:
        assert c.streams.audio and c.streams.video[0].codec_context.name == "h264"


def test_bad_opens_are_400_or_429_with_one_line(server: Server, tmp_path: Path) -> None:
    image, speech = make_inputs(tmp_path, 4, 1.0)
    r = _open(server, speech)
    assert r.status_code == 400 and "\n" not in r.json()["error"], r.text
    r = _open(server, image, chunk_frames=6)
    assert r.status_code == 400 and "chunk" in r.json()["error"], r.text
    r = _open(server, image, colour="red")
    assert r.status_code == 400 and "colour" in r.json()["error"], r.text
    r = server.client.post("/v1/live", json={"image": "x"})
    assert r.status_code == 400
    busy = _open(server, image)
    assert busy.status_code == 201
    assert _open(server, image).status_code == 429  # one session at a time on this server
    assert server.client.delete(f"/v1/live/{busy.json()['id']}").status_code == 200
    deadline = time.monotonic() + 30
    while server.client.get(f"/v1/live/{busy.json()['id']}").json()["state"] != "done" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server.client.get("/v1/live/" + "0" * 32).status_code == 404
