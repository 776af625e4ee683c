"""`soul.client` and `soul submit / jobs / fetch` against a real `soul serve` subprocess (mini-fast, 64x64).

One server for the module (token set, a queue of 2, uploads up to 1 MB); each job is 2 s of
babble, 32 frames. The fallbacks the real server never needs (no event stream, a download cut
short) run against httpx's mock transport.
"""

from __future__ import annotations

import contextlib
import io
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from soul.cli import main
from soul.client import (
    BadRequest,
    ClientError,
    JobNotFound,
    JobNotReady,
    QueueFull,
    ServerUnavailable,
    SoulClient,
    Unauthorized,
    UploadTooLarge,
    WaitTimeout,
    parse_job_events,
)
from soul.errors import InputError, RuntimeFailure
from soul.media.video import read_video
from tests.helpers.serve_process import Server, free_port, make_inputs

TOKEN = "test-token"
FRAMES = 32  # 2 s at mini-fast's 16 fps


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process = Server(tmp_path_factory.mktemp("serve") / "data", ["--preset", "mini-fast", "--max-queue", "2", "--max-upload-mb", "1"], token=TOKEN)
    try:
        yield process.start().base
    finally:
        process.kill(signal.SIGTERM)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_inputs(tmp_path_factory.mktemp("inputs"), 3, 2.0)


@pytest.fixture
def client(server: str) -> Iterator[SoulClient]:
    with SoulClient(server, token=TOKEN) as c:
        yield c


def cli(*args: str | Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_submit_wait_fetch(client: SoulClient, inputs: tuple[Path, Path], tmp_path: Path) -> None:
    image, audio = inputs
    health = client.health()
    assert health["status"] == "ok" and health["preset"] == "mini-fast"
    job = client.submit(image, [audio], "a drawn person talking", seed=1, guidance=False, sigmas=[1.0, 0.75, 0.5, 0.25])
    assert job["status"] == "queued" and job["id"]
    seen: list[dict] = []
    final = client.wait(job["id"], timeout=300, on_progress=seen.append)
    assert final["status"] == "succeeded", final
    assert seen[-1] == final and all(s["id"] == job["id"] for s in seen)
    assert [s["status"] for s in seen] == sorted((s["status"] for s in seen), key=["queued", "running", "succeeded"].index)
    assert final["result"]["num_frames"] == FRAMES and final["prompt"] == "a drawn person talking"
    assert client.job(job["id"]) == final
    listed = client.jobs(limit=5)
    assert listed["total"] >= 1 and listed["jobs"][0]["id"] == job["id"]
    out = client.fetch_video(job["id"], tmp_path / "videos" / "talk.mp4")
    video = read_video(out)
    assert video.num_frames == FRAMES and video.has_audio and (video.width, video.height) == (64, 64)
    assert [p.name for p in out.parent.iterdir()] == ["talk.mp4"]  # the temporary name is gone
    assert client.cancel(job["id"]) == {"id": job["id"], "status": "deleted"}  # finished: record and files deleted
    with pytest.raises(JobNotFound):
        client.job(job["id"])


def test_refusals_carry_the_servers_one_line(server: str, client: SoulClient, inputs: tuple[Path, Path], tmp_path: Path) -> None:
    image, audio = inputs
    bad = tmp_path / "bad.png"
    bad.write_text("not a picture")
    with pytest.raises(BadRequest) as err:
        client.submit(bad, [audio])
    assert isinstance(err.value, InputError) and err.value.exit_code == 2 and err.value.status == 400
    assert str(err.value).startswith("image:") and "\n" not in str(err.value)
    with pytest.raises(BadRequest, match="bogus"):
        client.submit(image, [audio], bogus=1)
    with pytest.raises(InputError, match="not found"):  # checked before anything is sent
        client.submit(tmp_path / "missing.png", [audio])
    with pytest.raises(UploadTooLarge) as too_big:
        client.submit(image, [("big.wav", b"\0" * 1_500_000)])
    assert too_big.value.status == 413
    with pytest.raises(JobNotFound) as missing:
        client.job("no-such-job")
    assert missing.value.status == 404 and isinstance(missing.value, InputError)
    with pytest.raises(JobNotFound):
        client.fetch_video("no-such-job", tmp_path / "x.mp4")
    assert not (tmp_path / "x.mp4").exists() and [p.name for p in tmp_path.iterdir()] == ["bad.png"]
    for token in (None, "wrong"):
        with SoulClient(server, token=token) as stranger, pytest.raises(Unauthorized) as denied:
            stranger.jobs()
        assert denied.value.status == 401 and "token" in str(denied.value)
    with SoulClient(f"http://127.0.0.1:{free_port()}", timeout=5) as nobody, pytest.raises(ServerUnavailable) as down:
        nobody.health()
    assert down.value.status is None and down.value.exit_code == 1


def test_cancel_queue_full_and_not_ready(client: SoulClient, inputs: tuple[Path, Path], tmp_path: Path) -> None:
    """With one worker and a queue of 2, the fourth and fifth of five quick submits are turned away."""
    image, audio = inputs
    accepted, rejected = [], []
    for k in range(5):
        try:
            accepted.append(client.submit(image, [audio], f"job {k}", seed=k))
        except QueueFull as err:
            rejected.append(err)
    assert len(accepted) >= 2 and len(rejected) >= 2 and len(accepted) + len(rejected) == 5
    assert all(r.status == 429 and r.exit_code == 1 and isinstance(r, RuntimeFailure) for r in rejected)
    last = accepted[-1]["id"]  # still queued behind the others
    with pytest.raises(JobNotReady) as not_ready:
        client.fetch_video(last, tmp_path / "early.mp4")
    assert not_ready.value.status == 409 and not (tmp_path / "early.mp4").exists()
    for job in accepted:
        answer = client.cancel(job["id"])
        assert answer["id"] == job["id"] and answer["status"] in ("cancelled", "deleted")  # deleted: it had finished
    for job in accepted:
        with contextlib.suppress(JobNotFound):
            assert client.wait(job["id"], timeout=120)["status"] in ("cancelled", "succeeded")
    with pytest.raises(JobNotReady):
        client.fetch_video(last, tmp_path / "cancelled.mp4")
    assert client.health()["queued"] == 0


def test_cli_submit_wait_output_jobs_fetch(server: str, inputs: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image, audio = inputs
    monkeypatch.setenv("SOUL_TOKEN", TOKEN)
    out = tmp_path / "out.mp4"
    code, stdout, stderr = cli("submit", image, audio, "--prompt", "hello", "--server", server, "--set", "steps=4",
                               "--output", out, "--json")
    assert code == 0, stderr
    job = json.loads(stdout)
    assert job["status"] == "succeeded" and job["output"] == str(out) and job["prompt"] == "hello"
    assert read_video(out).num_frames == FRAMES

    code, stdout, stderr = cli("jobs", "--server", server, "--limit", "3", "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["jobs"][0]["id"] == job["id"]
    code, stdout, _ = cli("jobs", "--server", server, "--limit", "3")
    assert code == 0 and stdout.splitlines()[0].split()[:3] == ["ID", "STATUS", "PRESET"] and job["id"] in stdout

    again = tmp_path / "again.mp4"
    code, stdout, stderr = cli("fetch", job["id"], again, "--server", server)
    assert code == 0, stderr
    assert again.read_bytes() == out.read_bytes() and "wrote" in stdout

    code, stdout, _ = cli("-q", "submit", image, audio, "--server", server)  # no wait: prints the id only
    assert code == 0 and len(stdout.split()) == 1
    assert SoulClient(server, token=TOKEN).wait(stdout.strip(), timeout=120)["status"] == "succeeded"

    code, _, stderr = cli("fetch", "no-such-job", tmp_path / "x.mp4", "--server", server)
    assert code == 2 and stderr.startswith("error: ") and len(stderr.strip().splitlines()) == 1
    monkeypatch.delenv("SOUL_TOKEN")
    code, _, stderr = cli("jobs", "--server", server)
    assert code == 2 and "token" in stderr
    code, _, stderr = cli("submit", image, audio, "--server", server, "--token", TOKEN, "--set", "steps")
    assert code == 2 and "--set" in stderr


def test_client_is_a_thin_layer() -> None:
    """`soul.client` and the client commands start without torch, numpy or PyAV."""
    code = (
        "import sys, soul.client, soul.cli.client; "
        "heavy = sorted(m for m in ('torch', 'numpy', 'av', 'diffusers', 'transformers') if m in sys.modules); "
        "assert not heavy, heavy"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


# --- the fallbacks, against a mock transport ---------------------------------------------------

def _job(status: str, done: int = 0) -> dict:
    return {"id": "j1", "status": status, "progress": {"chunks_done": done, "chunks_total": 2}}


def test_wait_polls_when_there_is_no_event_stream() -> None:
    states = iter([_job("queued"), _job("running", 1), _job("running", 1), _job("succeeded", 2)])
    asked = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        if request.url.path.endswith("/events"):
            return httpx.Response(404, json={"error": "not found"})
        return httpx.Response(200, json=next(states))

    seen: list[dict] = []
    with SoulClient("http://soul.test", transport=httpx.MockTransport(handler), poll_interval=0.01) as c:
        final = c.wait("j1", timeout=10, on_progress=seen.append)
    assert final["status"] == "succeeded"
    assert [s["status"] for s in seen] == ["queued", "running", "succeeded"]  # repeats are not reported twice
    assert asked.count("/v1/jobs/j1/events") == 1  # tried once, then polling only


def test_wait_follows_events_and_times_out() -> None:
    stream = "".join(f"event: job\ndata: {json.dumps(j)}\n\n" for j in (_job("queued"), _job("running", 1)))
    stream += ": keep-alive\n\n" + f"event: job\ndata: {json.dumps(_job('succeeded', 2))}\n\n"

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == "Bearer t"
        return httpx.Response(200, text=stream, headers={"content-type": "text/event-stream"})

    seen: list[dict] = []
    with SoulClient("http://soul.test", token="t", transport=httpx.MockTransport(handler)) as c:
        assert c.wait("j1", on_progress=seen.append)["status"] == "succeeded"
    assert [s["progress"]["chunks_done"] for s in seen] == [0, 1, 2]

    def forever_running(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=_job("running"))

    with SoulClient("http://soul.test", transport=httpx.MockTransport(forever_running), poll_interval=0.01) as c:
        with pytest.raises(WaitTimeout, match="still running") as err:
            c.wait("j1", timeout=0.1)
    assert isinstance(err.value, ClientError) and err.value.exit_code == 1


def test_fetch_continues_a_cut_download_with_range(tmp_path: Path) -> None:
    video = bytes(range(256)) * 4000
    ranges = []

    class Cut(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield video[:300_000]
            raise httpx.ReadError("connection reset")

    def handler(request: httpx.Request) -> httpx.Response:
        ranges.append(request.headers.get("range"))
        if "range" not in request.headers:
            return httpx.Response(200, stream=Cut(), headers={"content-length": str(len(video))})
        start = int(request.headers["range"].removeprefix("bytes=").rstrip("-"))
        return httpx.Response(206, content=video[start:], headers={"content-range": f"bytes {start}-{len(video) - 1}/{len(video)}"})

    with SoulClient("http://soul.test", transport=httpx.MockTransport(handler)) as c:
        out = c.fetch_video("j1", tmp_path / "v.mp4")
    assert out.read_bytes() == video and ranges == [None, "bytes=300000-"]
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


def test_event_stream_parsing() -> None:
    lines = ["event: job", 'data: {"id": "a",', 'data:  "status": "running"}', "", ": comment", "event: other", "data: {}", "",
             "data: {\"id\": \"ignored: no event name\"}", "", "event: job", "data: not json", "", "event: job", 'data: {"id": "b"}']
    assert list(parse_job_events(lines)) == [{"id": "a", "status": "running"}]  # an unfinished last event is dropped
