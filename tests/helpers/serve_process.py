"""A real `soul serve` process for tests, its inputs, and waiting on its jobs.

Tests talk HTTP to a subprocess on 127.0.0.1, as a client would: uvicorn, the multipart parser,
the worker thread and the SQLite store are all the real ones. Subprocesses get one torch thread
(like the test process, tests/conftest.py), so a server and a reference `soul generate` can run
side by side on the 2-core machine.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

PROJECT_ROOT = Path(__file__).resolve().parents[2]
START_S = 60.0
# PYTHONFAULTHANDLER: a server process killed by a native crash (a signal) leaves every thread's
# Python stack in its log, which the tests print when they fail.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """One `soul serve` subprocess; ``client`` is an httpx client on its base URL (token included)."""

    data: Path
    args: list[str]
    token: str | None = None
    log_path: Path | None = None
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    client: httpx.Client | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        cmd = [sys.executable, "-m", "soul", "serve", "--port", str(self.port), "--data", str(self.data), *self.args]
        if self.token:
            cmd += ["--token", self.token]
        self.log_path = self.log_path or self.data.parent / f"server-{self.port}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps writing to it
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=ENV, cwd=self.data.parent)
        log.close()
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.client = httpx.Client(base_url=self.base, headers=headers, timeout=30)
        deadline = time.monotonic() + START_S
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"soul serve exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if self.client.get("/v1/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"soul serve did not answer within {START_S} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.client is not None:
            self.client.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path and self.log_path.exists() else ""

    # ------------------------------------------------------------------------------- jobs

    def submit(self, image: Path, audio: Path | list[Path], **fields: Any) -> httpx.Response:
        audios = audio if isinstance(audio, list) else [audio]
        files = [("image", (image.name, image.read_bytes(), "image/png"))]
        files += [("audio", (a.name, a.read_bytes(), "audio/wav")) for a in audios]
        assert self.client is not None
        return self.client.post("/v1/jobs", files=files, data={k: str(v) for k, v in fields.items()})

    def job(self, job_id: str) -> dict[str, Any]:
        assert self.client is not None
        r = self.client.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait(self, job_id: str, until: Callable[[dict[str, Any]], bool], timeout: float = 120.0) -> dict[str, Any]:
        """Poll the job until ``until(job)``; fail with the server log after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if until(job):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} stuck at {job}\n{self.log_tail()}")
            time.sleep(0.1)

    def wait_final(self, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
        return self.wait(job_id, lambda j: j["status"] in ("succeeded", "failed", "cancelled"), timeout)


def make_inputs(folder: Path, k: int, seconds: float) -> tuple[Path, Path]:
    """A drawn held-out portrait (PNG) and ``seconds`` of 16 kHz babble (WAV), both keyed by ``k``."""
    import soundfile as sf

    from soul.miniature.portrait import HELD_OUT_SEED, draw_face, random_face
    from soul.miniature.speech import synthesize_babble

    folder.mkdir(parents=True, exist_ok=True)
    image, audio = folder / f"face-{k}.png", folder / f"speech-{k}-{seconds:g}s.wav"
    draw_face(random_face(HELD_OUT_SEED + k), size=256).save(image)
    sf.write(audio, synthesize_babble(seconds, 16000, seed=HELD_OUT_SEED + k), 16000)
    return image, audio
