"""`soul serve` over HTTP (docs/serve.md), against a real uvicorn process on 127.0.0.1.

Two servers per module: an open one (mini-fast, the default limits) for the job life cycle, and a
guarded one (--token, --max-queue 1, --max-upload-mb 1) for refusals. Inputs are the miniature
world's drawn held-out portraits and babble, so the videos are real mini-fast videos of ~2 s.
"""

from __future__ import annotations

import io
import inspect
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from soul.media.video import read_video
from tests.helpers.serve_process import Server, make_inputs

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve-api")


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[Server]:
    srv = Server(root / "data", ["--preset", "mini-fast"]).start()
    yield srv
    srv.kill(signal.SIGTERM)


@pytest.fixture(scope="module")
def guarded(root: Path) -> Iterator[Server]:
    srv = Server(root / "guarded", ["--preset", "mini-fast", "--max-queue", "1", "--max-upload-mb", "1"], token=TOKEN).start()
    yield srv
    srv.kill(signal.SIGTERM)


@pytest.fixture(scope="module")
def talk(root: Path) -> tuple[Path, Path]:
    """A portrait and 1.7 s of speech: one chunk of mini-fast."""
    return make_inputs(root / "inputs", 1, 1.7)


def _one_line_error(r: httpx.Response) -> str:
    body = r.json()
    assert set(body) == {"error"}, body
    assert body["error"] and "\n" not in body["error"], body
    return str(body["error"])


def test_a_job_runs_to_success_with_events_progress_and_a_video_as_long_as_its_audio(server: Server, talk: tuple[Path, Path], tmp_path: Path) -> None:
    image, audio = talk
    r = server.submit(image, audio, prompt="a person talking", seed=3)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    assert r.json() == {"id": job_id, "status": "queued"}

    events: list[dict] = []
    kinds: list[str] = []
    with server.client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=120) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():  # ends when the server closes the stream after a final state
            if line.startswith("event: "):
                kinds.append(line[len("event: "):])
            elif line.startswith("data: "):
                events.append(json.loads(line[len("data: "):]))
    assert events and set(kinds) == {"job"} and len(kinds) == len(events)
    assert events[-1]["status"] == "succeeded", (events[-1], server.log_tail())
    running = [e["progress"] for e in events if e["status"] == "running"]
    assert running, [e["status"] for e in events]
    frames_seen = [e["progress"]["frames"] for e in events]
    # Progress only moves forward, and it moved (a quiet machine may finish a one-chunk job between
    # two polls of the store, so counting distinct running states would be a race).
    assert frames_seen == sorted(frames_seen) and frames_seen[-1] > frames_seen[0], frames_seen
    done = events[-1]["progress"]
    assert done["chunks_done"] == done["chunks_total"] >= 1 and done["frames"] > 0

    job = server.job(job_id)
    assert job["status"] == "succeeded" and job["prompt"] == "a person talking" and job["preset"] == "mini-fast"
    assert job["started"] >= job["created"] and job["finished"] >= job["started"] and job["error"] is None
    result = job["result"]
    assert result["output"] == f"/v1/jobs/{job_id}/video" and result["seed"] == 3
    assert str(server.data) not in json.dumps(result)  # no server paths leak into the summary

    r = server.client.get(f"/v1/jobs/{job_id}/video")
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4" and r.headers["accept-ranges"] == "bytes"
    full = r.content
    (tmp_path / "job.mp4").write_bytes(full)
    reader = read_video(tmp_path / "job.mp4")
    assert reader.num_frames == result["num_frames"] == done["frames"]
    assert abs(reader.num_frames - 1.7 * reader.fps) < 1, (reader.num_frames, reader.fps)  # the audio's length, to the frame

    r = server.client.get(f"/v1/jobs/{job_id}/video", headers={"Range": "bytes=100-1099"})
    assert r.status_code == 206 and r.content == full[100:1100]
    assert r.headers["content-range"] == f"bytes 100-1099/{len(full)}" and r.headers["accept-ranges"] == "bytes"
    r = server.client.head(f"/v1/jobs/{job_id}/video")
    assert r.status_code == 200 and r.headers["content-length"] == str(len(full)) and not r.content
    r = server.client.get(f"/v1/jobs/{job_id}/video", headers={"Range": "bytes=-64"})
    assert r.status_code == 206 and r.content == full[-64:]
    r = server.client.get(f"/v1/jobs/{job_id}/video", headers={"Range": f"bytes={len(full)}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(full)}"
    _one_line_error(r)

    from soul.jobs.generate import run_generate

    r = server.client.get(f"/v1/jobs/{job_id}/preview")
    if "preview" in inspect.signature(run_generate).parameters:
        assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
        (tmp_path / "preview.mp4").write_bytes(r.content)
        assert read_video(tmp_path / "preview.mp4").num_frames == reader.num_frames
    else:
        assert r.status_code == 404

    metrics = httpx.get(f"{server.base}/metrics").text
    assert 'soul_jobs{status="succeeded"}' in metrics and "soul_queue_length" in metrics
    assert "soul_job_seconds_count" in metrics and "soul_chunk_seconds_count" in metrics


def test_cancel_a_queued_job_at_once_and_a_running_one_at_its_next_chunk(server: Server, root: Path) -> None:
    image, audio = make_inputs(root / "inputs", 2, 4.0)
    first = server.submit(image, audio, chunk_frames=17)  # several chunks
    second = server.submit(image, audio)
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    running_id, queued_id = first.json()["id"], second.json()["id"]

    r = server.client.get(f"/v1/jobs/{queued_id}/preview")
    assert r.status_code == 404 and "preview" in _one_line_error(r)  # nothing made yet
    r = server.client.delete(f"/v1/jobs/{queued_id}")
    assert r.status_code == 200 and r.json() == {"id": queued_id, "status": "cancelled"}
    queued = server.job(queued_id)
    assert queued["status"] == "cancelled" and queued["started"] is None and queued["finished"] is not None

    server.wait(running_id, lambda j: j["status"] == "running" and j["progress"]["chunks_done"] >= 1)
    r = server.client.delete(f"/v1/jobs/{running_id}")
    assert r.status_code == 200 and r.json() == {"id": running_id, "status": "cancelled"}
    job = server.wait_final(running_id)
    assert job["status"] == "cancelled", job
    assert job["progress"]["chunks_done"] < job["progress"]["chunks_total"]
    assert server.client.get(f"/v1/jobs/{running_id}/video").status_code == 409

    # A finished job: DELETE removes the record and its files.
    assert (server.data / "jobs" / queued_id).is_dir()
    assert server.client.delete(f"/v1/jobs/{queued_id}").status_code == 204
    assert server.client.get(f"/v1/jobs/{queued_id}").status_code == 404
    assert not (server.data / "jobs" / queued_id).exists()
    assert server.client.delete(f"/v1/jobs/{queued_id}").status_code == 404


def test_list_pages_newest_first(server: Server, talk: tuple[Path, Path]) -> None:
    image, audio = talk
    ids = []
    for _ in range(3):
        r = server.submit(image, audio)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    try:
        first = server.client.get("/v1/jobs", params={"limit": 2, "offset": 0}).json()
        assert first["total"] >= 3 and [j["id"] for j in first["jobs"]] == ids[::-1][:2]
        second = server.client.get("/v1/jobs", params={"limit": 2, "offset": 2}).json()
        assert second["jobs"][0]["id"] == ids[0] and second["total"] == first["total"]
        everything = server.client.get("/v1/jobs", params={"limit": 500}).json()
        assert len(everything["jobs"]) == everything["total"]
        created = [j["created"] for j in everything["jobs"]]
        assert created == sorted(created, reverse=True)
        assert set(everything["jobs"][0]) == {"id", "status", "preset", "prompt", "created", "started", "finished", "progress", "error", "result"}
        assert set(everything["jobs"][0]["progress"]) == {"chunks_done", "chunks_total", "frames", "elapsed_s", "eta_s"}
        for bad in ({"limit": 0}, {"offset": -1}, {"limit": "many"}):
            r = server.client.get("/v1/jobs", params=bad)
            assert r.status_code == 400 and next(iter(bad)) in _one_line_error(r)
        assert server.client.get("/v1/jobs/0123456789abcdef0123456789abcdef").status_code == 404
    finally:
        for job_id in ids:
            server.client.delete(f"/v1/jobs/{job_id}")
        for job_id in ids:
            server.wait_final(job_id)


def _case_files(case: str, image: Path, audio: Path, folder: Path) -> tuple[list[tuple], dict[str, str]]:
    text = folder / "notes.txt"
    text.write_text("not a picture\n")
    img = ("image", ("face.png", image.read_bytes(), "image/png"))
    snd = ("audio", ("talk.wav", audio.read_bytes(), "audio/wav"))
    return {
        "text_as_image": ([("image", ("notes.png", text.read_bytes(), "image/png")), snd], {}),
        "empty_audio": ([img, ("audio", ("talk.wav", b"", "audio/wav"))], {}),
        "unknown_field": ([img, snd], {"colour": "blue"}),
        "wrong_preset": ([img, snd], {"preset": "no-such-preset"}),
        "preset_as_path": ([img, snd], {"preset": "../../../etc/passwd"}),
        "bad_size": ([img, snd], {"height": "48"}),
        "bad_chunk_frames": ([img, snd], {"chunk_frames": "3"}),
        "bad_guidance": ([img, snd], {"guidance": "maybe"}),
        "no_audio": ([img], {}),
        "two_images": ([img, img, snd], {}),
    }[case]


@pytest.mark.parametrize(
    "case,needle",
    [
        ("text_as_image", "image: is not an image"),
        ("empty_audio", "audio: is empty"),
        ("unknown_field", "colour: unknown field"),
        ("wrong_preset", "unknown preset"),
        ("preset_as_path", "unknown preset"),
        ("bad_size", "multiples of 32"),
        ("bad_chunk_frames", "--chunk-frames"),
        ("bad_guidance", "guidance"),
        ("no_audio", "audio"),
        ("two_images", "image"),
    ],
)
def test_bad_inputs_are_400_with_one_line_and_nothing_stored(server: Server, talk: tuple[Path, Path], tmp_path: Path, case: str, needle: str) -> None:
    before_dirs = sorted(os.listdir(server.data / "jobs"))
    before_total = server.client.get("/v1/jobs").json()["total"]
    files, data = _case_files(case, *talk, tmp_path)
    r = server.client.post("/v1/jobs", files=files, data=data)
    assert r.status_code == 400, r.text
    message = _one_line_error(r)
    assert needle in message, message
    assert str(server.data) not in message  # field names, not server paths
    assert sorted(os.listdir(server.data / "jobs")) == before_dirs
    assert server.client.get("/v1/jobs").json()["total"] == before_total


def test_json_instead_of_multipart_is_400(server: Server) -> None:
    r = server.client.post("/v1/jobs", json={"image": "x.png"})
    assert r.status_code == 400 and "multipart" in _one_line_error(r)


def test_a_client_filename_never_becomes_a_path(server: Server, talk: tuple[Path, Path], root: Path) -> None:
    image, audio = talk
    files = [("image", ("../../x.png", image.read_bytes(), "image/png")), ("audio", ("../../../evil", audio.read_bytes(), "audio/wav"))]
    r = server.client.post("/v1/jobs", files=files)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]
    try:
        # the client's names, not any "x": the worker's temporary files carry random suffixes
        stored = sorted(p.name for p in (server.data / "jobs" / job_id).iterdir() if p.name in {"image.png", "audio-0"} or "x.png" in p.name or "evil" in p.name)
        assert stored == ["audio-0", "image.png"]
        assert not any(p.name in {"x.png", "evil"} for base in (root, server.data, server.data / "jobs") for p in base.iterdir())
    finally:
        server.client.delete(f"/v1/jobs/{job_id}")
        server.wait_final(job_id)


def test_health_and_the_web_ui(server: Server) -> None:
    health = server.client.get("/v1/health").json()
    assert set(health) == {"status", "queued", "running", "preset", "workers", "parallel"} and health["status"] == "ok" and health["preset"] == "mini-fast"
    assert health["workers"] == 1 and health["parallel"] is None
    page = httpx.get(f"{server.base}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html") and "<" in page.text
    assert httpx.get(f"{server.base}/static/../../../pyproject.toml").status_code == 404
    assert httpx.get(f"{server.base}/static/no-such-file.js").status_code == 404
    assert httpx.get(f"{server.base}/docs").status_code == 404  # Swagger's page would load a CDN


def test_the_bundled_examples_are_a_drawn_face_and_speech(server: Server) -> None:
    from PIL import Image

    from soul.analysis.drawing import looks_drawn

    portrait = server.client.get("/v1/examples/portrait.png")
    assert portrait.status_code == 200 and looks_drawn(Image.open(io.BytesIO(portrait.content)))
    speech = server.client.get("/v1/examples/speech.wav")
    assert speech.status_code == 200 and speech.content[:4] == b"RIFF"
    assert server.client.get("/v1/examples/jobs.sqlite").status_code == 404  # only the two example names


def test_a_token_guards_every_v1_route(guarded: Server) -> None:
    for method, path in (("GET", "/v1/health"), ("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/v1/jobs/0123456789abcdef0123456789abcdef")):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            r = httpx.request(method, guarded.base + path, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.text)
            assert "token" in _one_line_error(r) and r.headers["www-authenticate"] == "Bearer"
    assert guarded.client.get("/v1/health").status_code == 200  # the client sends the token
    assert httpx.get(f"{guarded.base}/metrics").status_code == 200  # outside /v1


def test_an_upload_over_the_limit_is_413(guarded: Server, talk: tuple[Path, Path]) -> None:
    _, audio = talk
    files = [("image", ("big.png", os.urandom(2 * 1024 * 1024), "image/png")), ("audio", ("talk.wav", audio.read_bytes(), "audio/wav"))]
    r = guarded.client.post("/v1/jobs", files=files)
    assert r.status_code == 413 and "1 MB" in _one_line_error(r)
    assert list((guarded.data / "jobs").iterdir()) == []


def test_a_full_queue_is_429(guarded: Server, talk: tuple[Path, Path]) -> None:
    image, audio = talk
    answers = [guarded.submit(image, audio) for _ in range(4)]
    codes = [r.status_code for r in answers]
    assert codes[0] == 201 and 429 in codes and set(codes) <= {201, 429}, codes
    assert "queue" in _one_line_error(answers[codes.index(429)])
    for r in answers:
        if r.status_code == 201:
            guarded.client.delete(f"/v1/jobs/{r.json()['id']}")
    for r in answers:
        if r.status_code == 201:
            guarded.wait_final(r.json()["id"])
