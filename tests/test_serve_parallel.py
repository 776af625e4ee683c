"""`soul serve --parallel`: a worker group of two CPU processes under torchrun, through HTTP.

Rank 0 serves; rank 1 follows. The test checks what a user of a GPU group relies on:
- a job's video equals, frame for frame, the one-process `soul generate` of the same request
  (tiny with Ulysses 2 is exact: tests/test_parallel.py says why);
- a cancel stops every rank at a chunk's end and the group takes the next job;
- a rank killed mid-job breaks the group: the job goes back to the queue, the server exits with
  an error, and the group started again resumes the job to the uninterrupted frames;
- torchrun stopped with SIGTERM stops both processes (the follower on rank 0's word).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from soul.media.video import read_video
from tests.helpers.serve_process import ENV, free_port, make_inputs

SEED_A, SEED_C = 5, 7
CHUNK_FRAMES = 17
FINAL = ("succeeded", "failed", "cancelled")


class Group:
    """``torchrun --nproc_per_node 2 -m soul serve --parallel ulysses=2`` on one data directory."""

    def __init__(self, data: Path, log: Path) -> None:
        self.data, self.log, self.port = data, log, free_port()
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
            "-m", "soul", "serve", "--parallel", "ulysses=2", "--preset", "tiny", "--port", str(self.port), "--data", str(data),
        ]
        with open(log, "ab") as out:
            # A session of its own: a failed test kills torchrun and its ranks together (ranks whose
            # torchrun is SIGKILLed live on, and a follower ignores SIGTERM by design).
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=ENV, cwd=data.parent, start_new_session=True)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        try:
            self._wait_ready(timeout=90)
        except BaseException:
            self.kill_all()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"the group exited with {self.proc.returncode}:\n{self.tail()}"
            try:
                if self.client.get("/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"the group did not answer:\n{self.tail()}"
            time.sleep(0.2)

    def kill_all(self) -> None:
        """SIGKILL torchrun and every rank (their process group)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def ranks(self) -> dict[int, int]:
        """{rank: PID} of the soul processes torchrun started (its children, RANK in their environment)."""
        kids = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) != self.proc.pid:
                    continue
                environ = dict(v.split("=", 1) for v in (stat.parent / "environ").read_text().split("\0") if "=" in v)
            except OSError:
                continue
            kids[int(environ["RANK"])] = int(stat.parent.name)
        return kids

    def submit(self, image: Path, audio: Path, **fields: object) -> str:
        files = [("image", (image.name, image.read_bytes(), "image/png")), ("audio", (audio.name, audio.read_bytes(), "audio/wav"))]
        r = self.client.post("/v1/jobs", files=files, data={k: str(v) for k, v in fields.items()})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def wait(self, job_id: str, until: object, timeout: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                job = self.client.get(f"/v1/jobs/{job_id}").json()
            except httpx.TransportError as err:  # the server is gone: say why (its log, a native crash's stacks)
                raise AssertionError(f"the group stopped answering ({err}), exit {self.proc.poll()}:\n{self.tail()}") from err
            if until(job):  # type: ignore[operator]
                return job
            assert time.monotonic() < deadline, f"job stuck at {job}\n{self.tail()}"
            time.sleep(0.1)

    def video(self, job_id: str, path: Path) -> np.ndarray:
        path.write_bytes(self.client.get(f"/v1/jobs/{job_id}/video").content)
        return read_video(path).read_all()

    def exit_code(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.client.close()


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def reference(image: Path, audio: Path, seed: int, out: Path) -> subprocess.Popen[bytes]:
    """The same request as one process (`soul generate`), run beside the group."""
    cmd = [sys.executable, "-m", "soul", "generate", "--preset", "tiny", "--image", str(image), "--audio", str(audio),
           "--chunk-frames", str(CHUNK_FRAMES), "--seed", str(seed), "-o", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)


def finished(proc: subprocess.Popen[bytes], out: Path) -> np.ndarray:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]
    return read_video(out).read_all()


def test_a_worker_group_serves_jobs_cancels_and_resumes_after_losing_a_rank(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    image_a, audio_a = make_inputs(inputs, 21, 2.0)
    image_b, audio_b = make_inputs(inputs, 22, 20.0)
    image_c, audio_c = make_inputs(inputs, 23, 8.0)
    refs = {"a": reference(image_a, audio_a, SEED_A, tmp_path / "ref-a.mp4"), "c": reference(image_c, audio_c, SEED_C, tmp_path / "ref-c.mp4")}
    data, log = tmp_path / "data", tmp_path / "group.log"

    group = Group(data, log)
    try:
        health = group.client.get("/v1/health").json()
        assert health["parallel"] == "ulysses=2,cfg=1", health
        job_a = group.submit(image_a, audio_a, seed=SEED_A, chunk_frames=CHUNK_FRAMES)
        done = group.wait(job_a, lambda j: j["status"] in FINAL)
        assert done["status"] == "succeeded", (done, group.tail())
        assert done["result"]["info"]["parallel"] == {"ulysses": 2, "cfg": 1, "world_size": 2, "rank": 0}
        served_a = group.video(job_a, tmp_path / "a.mp4")

        job_b = group.submit(image_b, audio_b, chunk_frames=CHUNK_FRAMES)
        group.wait(job_b, lambda j: j["progress"]["chunks_done"] >= 1)
        assert group.client.delete(f"/v1/jobs/{job_b}").status_code == 200
        cancelled = group.wait(job_b, lambda j: j["status"] in FINAL)
        assert cancelled["status"] == "cancelled", cancelled
        assert cancelled["progress"]["chunks_done"] < cancelled["progress"]["chunks_total"]

        job_c = group.submit(image_c, audio_c, seed=SEED_C, chunk_frames=CHUNK_FRAMES)  # the group goes on after a cancel
        running = group.wait(job_c, lambda j: j["progress"]["chunks_done"] >= 2 or j["status"] in FINAL)
        assert running["status"] == "running", running
        ranks = group.ranks()
        assert sorted(ranks) == [0, 1], ranks
        os.kill(ranks[1], signal.SIGKILL)
        assert group.exit_code() != 0
    finally:
        group.kill_all()
    assert "the worker group broke" in group.tail()

    group = Group(data, log)  # started again on the same data: job C resumes
    try:
        resumed = group.wait(job_c, lambda j: j["status"] in FINAL)
        assert resumed["status"] == "succeeded", (resumed, group.tail())
        assert resumed["result"]["info"]["resumed_chunks"] >= 2
        served_c = group.video(job_c, tmp_path / "c.mp4")
        ranks = group.ranks()
        group.proc.send_signal(signal.SIGTERM)  # torchrun passes it on; the follower leaves on rank 0's word,
        group.exit_code(timeout=20)  # well before torchrun would SIGKILL it (30 s)
    finally:
        group.kill_all()
    assert not [pid for pid in ranks.values() if alive(pid)], "a rank outlived torchrun"
    assert "lost the worker group's rank 0" not in group.tail()

    expected_a, expected_c = finished(refs["a"], tmp_path / "ref-a.mp4"), finished(refs["c"], tmp_path / "ref-c.mp4")
    assert served_a.shape == expected_a.shape and np.array_equal(served_a, expected_a)
    assert served_c.shape == expected_c.shape and np.array_equal(served_c, expected_c)


def test_serve_parallel_outside_torchrun_says_how_to_launch(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "soul", "serve", "--parallel", "ulysses=2", "--preset", "tiny", "--data", str(tmp_path / "d")],
        capture_output=True, text=True, env={k: v for k, v in ENV.items() if k not in ("WORLD_SIZE", "RANK")}, timeout=120,
    )
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "torchrun --nproc_per_node 2 -m soul serve" in lines[0], res.stderr
