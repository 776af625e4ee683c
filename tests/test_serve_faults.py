"""`soul serve` under faults: SIGKILL mid-job, a job that fails inside generation, the store's recovery rules.

The crash test kills the real server while a multi-chunk job runs (after at least one chunk is
saved), restarts it on the same --data, and checks the job finishes with exactly the frames an
uninterrupted `soul generate` of the same request makes: the resume state carries it across.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from soul.media.video import read_video
from soul.serve.store import JobStore
from tests.helpers.serve_process import ENV, Server, make_inputs

SEED = 11
CHUNK_FRAMES = 17


def test_a_killed_server_resumes_its_job_to_the_uninterrupted_frames_and_a_failing_job_fails_alone(tmp_path: Path) -> None:
    image, audio = make_inputs(tmp_path / "inputs", 5, 4.5)
    reference = tmp_path / "reference.mp4"
    cli = subprocess.Popen(  # the uninterrupted run, side by side with the server (one core each)
        [sys.executable, "-m", "soul", "generate", "--preset", "mini-fast", "--image", str(image), "--audio", str(audio),
         "--chunk-frames", str(CHUNK_FRAMES), "--seed", str(SEED), "-o", str(reference), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
    )
    data = tmp_path / "data"
    server = Server(data, ["--preset", "mini-fast"]).start()
    try:
        r = server.submit(image, audio, chunk_frames=CHUNK_FRAMES, seed=SEED)
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        job = server.wait(job_id, lambda j: j["progress"]["chunks_done"] >= 1 or j["status"] != "running" and j["started"] is not None)
        assert job["status"] == "running", job
        total = job["progress"]["chunks_total"]
        assert total is not None and job["progress"]["chunks_done"] < total >= 3, job
    finally:
        server.kill(signal.SIGKILL)
    state = data / "jobs" / job_id / "output.mp4.soul-partial" / "progress.json"
    saved = len(json.loads(state.read_text())["chunks"])
    assert 1 <= saved < total

    empty_checkpoint = tmp_path / "empty-checkpoint"
    empty_checkpoint.mkdir()
    # Restarted with another default preset and a checkpoint that cannot load: the stored job keeps
    # the request it was submitted with; new jobs on the default preset fail at load time.
    server = Server(data, ["--preset", "tiny", "--checkpoint", str(empty_checkpoint)], log_path=server.log_path).start()
    try:
        failing = server.submit(image, audio)
        good = server.submit(*make_inputs(tmp_path / "inputs", 6, 1.5), preset="mini-fast")
        assert failing.status_code == good.status_code == 201, (failing.text, good.text)

        resumed = server.wait_final(job_id, timeout=150)
        assert resumed["status"] == "succeeded", (resumed, server.log_tail())
        assert resumed["result"]["info"]["resumed_chunks"] == saved
        assert resumed["progress"]["chunks_done"] == resumed["progress"]["chunks_total"] == total

        failed = server.wait_final(failing.json()["id"])
        assert failed["status"] == "failed", failed
        assert "missing from the checkpoint" in failed["error"] and "\n" not in failed["error"], failed["error"]
        assert failed["result"] is None
        assert server.wait_final(good.json()["id"])["status"] == "succeeded"  # the worker kept serving
        assert server.client.get("/v1/health").json()["status"] == "ok"

        video = tmp_path / "served.mp4"
        video.write_bytes(server.client.get(f"/v1/jobs/{job_id}/video").content)
    finally:
        server.kill(signal.SIGTERM)
    out, err = cli.communicate(timeout=300)
    assert cli.returncode == 0, err.decode()
    assert json.loads(out)["info"]["num_chunks"] == total
    served, expected = read_video(video).read_all(), read_video(reference).read_all()
    assert served.shape == expected.shape and np.array_equal(served, expected)


def test_the_store_requeues_running_jobs_and_honours_pending_cancels_at_restart(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite")
    for name in ("a", "b", "c"):
        assert store.add(name * 32, preset="mini-fast", prompt=name, request={}, max_queued=10)
    first, second = store.claim(), store.claim()
    assert first is not None and second is not None and (first.id, second.id) == ("a" * 32, "b" * 32)  # FIFO
    store.update_progress(first.id, chunks_done=2, frames=40)
    assert store.cancel(second.id) == "running" and store.get(second.id).status == "running"  # stops at its next chunk
    store.close()

    store = JobStore(tmp_path / "jobs.sqlite")  # "a restart"
    assert store.recover() == 1
    assert store.get(first.id).status == "queued" and store.get(second.id).status == "cancelled"
    again = store.claim()
    assert again is not None and again.id == first.id  # a re-queued job keeps its place in the line
    assert store.finish(first.id, "succeeded", result={"ok": True}) and not store.finish(first.id, "failed")
    assert store.delete(first.id) and store.get(first.id) is None and not store.delete("c" * 32)  # c is still queued
    assert not store.add("d" * 32, preset="mini-fast", prompt="", request={}, max_queued=1)  # c waits: full
    assert store.counts() == {"queued": 1, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 1}
    started = time.time()
    store.wait_for_change(0.05)
    assert time.time() - started < 1
