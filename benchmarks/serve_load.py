"""Load on `soul serve`: a burst of jobs from concurrent clients, what the queue accepts, and how fast it drains.

Starts a real server (`python -m soul serve --preset mini-fast --data <tmp> --port <free>
--max-queue Q`, on 127.0.0.1) unless `--server URL` names a running one (loopback only). M client
threads (soul.client.SoulClient, one each) then submit N jobs between them as fast as they can
(open loop: nobody waits for a job before sending the next), each a drawn held-out portrait
(`draw_face(random_face(HELD_OUT_SEED + k), size=256)`) with 2 s of babble. A full queue answers
429; those submissions are counted, not retried. Every accepted job is then followed to its end
(server-sent events, polling as fallback).

Printed: accepted / rejected counts, jobs/s (succeeded jobs over the wall time from the first
submit to the last job's end), p50/p95 queue latency (the job record's `created` -> `started`,
both server clock) and run time (`started` -> `finished`), and the check that nothing is lost:
every accepted job succeeded and every rejection was a 429 (exit 1 otherwise). Bounded: N
submissions at most, and `--timeout` seconds for the whole run. Run:

    .venv/bin/python benchmarks/serve_load.py                        # 12 jobs, 4 clients, queue 4
    .venv/bin/python benchmarks/serve_load.py --jobs 24 --clients 8 --max-queue 8 --json
    .venv/bin/python benchmarks/serve_load.py --server http://127.0.0.1:8000   # a server already running
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from soul.client import ClientError, SoulClient, WaitTimeout

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
SERVER_START_S = 180.0
SPEECH_SECONDS = 2.0


@dataclass
class Submission:
    index: int
    client: int
    sent: float  # wall clock (time.time) when the request left
    round_trip_s: float
    job_id: str | None = None
    status: int | None = None  # the HTTP status of a refusal (429 expected); None: accepted
    error: str | None = None
    final: dict[str, Any] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def local_server(args: argparse.Namespace, token: str | None) -> Iterator[str]:
    """A `soul serve` subprocess on 127.0.0.1 and a free port; yields its URL, stops it (SIGTERM) after."""
    with tempfile.TemporaryDirectory(prefix="soul-serve-load-") as tmp:
        port = free_port()
        command = [
            sys.executable, "-m", "soul", "serve", "--host", "127.0.0.1", "--port", str(port), "--data", str(Path(tmp) / "data"),
            "--preset", args.preset, "--max-queue", str(args.max_queue), "--workers", str(args.workers),
        ]
        env = {k: v for k, v in os.environ.items() if k != "SOUL_TOKEN"}
        if token:
            command += ["--token", token]
        log_path = Path(tmp) / "server.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + SERVER_START_S
            with SoulClient(base, token, timeout=5) as probe:
                while True:
                    if proc.poll() is not None:
                        raise SystemExit(f"soul serve exited with {proc.returncode}:\n{log_path.read_text(errors='replace')[-3000:]}")
                    try:
                        probe.health()
                        break
                    except ClientError:
                        if time.monotonic() > deadline:
                            raise SystemExit(f"soul serve did not answer within {SERVER_START_S:.0f} s") from None
                        time.sleep(0.2)
            yield base
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def job_inputs(k: int) -> tuple[tuple[str, bytes], tuple[str, bytes]]:
    """Job k's drawn portrait (PNG) and babble (16 kHz WAV), in memory."""
    import soundfile as sf

    from soul.miniature.portrait import HELD_OUT_SEED, draw_face, random_face
    from soul.miniature.speech import synthesize_babble

    png, wav = io.BytesIO(), io.BytesIO()
    draw_face(random_face(HELD_OUT_SEED + k), size=256).save(png, format="PNG")
    sf.write(wav, synthesize_babble(SPEECH_SECONDS, 16000, seed=HELD_OUT_SEED + k), 16000, format="WAV")
    return (f"portrait-{k}.png", png.getvalue()), (f"speech-{k}.wav", wav.getvalue())


def run_load(base: str, token: str | None, args: argparse.Namespace) -> dict[str, Any]:
    deadline = time.monotonic() + args.timeout
    indices = itertools.count()
    lock = threading.Lock()
    submissions: list[Submission] = []
    inputs = {k: job_inputs(k) for k in range(args.jobs)}  # drawn before the clock starts

    def client_thread(c: int) -> None:
        with SoulClient(base, token, timeout=min(60.0, args.timeout)) as client:
            while time.monotonic() < deadline:
                with lock:
                    k = next(indices)
                if k >= args.jobs:
                    return
                image, audio = inputs[k]
                sent, t0 = time.time(), time.perf_counter()
                try:
                    job = client.submit(image, [audio], f"load test job {k}", seed=k)
                    record = Submission(k, c, sent, time.perf_counter() - t0, job_id=job["id"])
                except ClientError as err:
                    record = Submission(k, c, sent, time.perf_counter() - t0, status=err.status, error=str(err))
                with lock:
                    submissions.append(record)
                if args.interval:
                    time.sleep(args.interval)

    started = time.time()
    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(client_thread, range(args.clients)))
    accepted = [s for s in submissions if s.job_id]

    def follow(s: Submission) -> None:
        with SoulClient(base, token) as client:
            try:
                s.final = client.wait(s.job_id, timeout=max(0.1, deadline - time.monotonic()))  # type: ignore[arg-type]
            except WaitTimeout as err:
                s.final = {"status": "timeout", "error": str(err)}
            except ClientError as err:
                s.final = {"status": "lost", "error": str(err)}

    with ThreadPoolExecutor(max(1, min(args.clients, len(accepted) or 1))) as pool:
        list(pool.map(follow, accepted))
    wall = time.time() - started
    return summarise(base, args, sorted(submissions, key=lambda s: s.index), wall)


def _pcts(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    a = np.asarray(values, dtype=float)
    return {"p50": round(float(np.percentile(a, 50)), 3), "p95": round(float(np.percentile(a, 95)), 3), "max": round(float(a.max()), 3)}


def summarise(base: str, args: argparse.Namespace, subs: list[Submission], wall: float) -> dict[str, Any]:
    accepted = [s for s in subs if s.job_id]
    rejected = [s for s in subs if not s.job_id]
    succeeded = [s for s in accepted if s.final.get("status") == "succeeded"]
    lost = [s for s in accepted if s.final.get("status") != "succeeded"]
    bad_rejections = [s for s in rejected if s.status != 429]
    queue = [s.final["started"] - s.final["created"] for s in accepted if s.final.get("started") and s.final.get("created")]
    run = [s.final["finished"] - s.final["started"] for s in succeeded if s.final.get("finished") and s.final.get("started")]
    problems = [f"job {s.index} ({s.job_id}) ended {s.final.get('status')}: {s.final.get('error')}" for s in lost]
    problems += [f"submission {s.index} refused with {s.status}, not 429: {s.error}" for s in bad_rejections]
    if len(subs) < args.jobs:
        problems.append(f"only {len(subs)} of {args.jobs} submissions were sent within --timeout {args.timeout:g} s")
    return {
        "server": base, "jobs": args.jobs, "clients": args.clients, "max_queue": args.max_queue if not args.server else None,
        "submitted": len(subs), "accepted": len(accepted), "rejected": len(rejected), "rejected_429": len(rejected) - len(bad_rejections),
        "succeeded": len(succeeded), "not_succeeded": len(lost), "wall_s": round(wall, 3),
        "jobs_per_s": round(len(succeeded) / wall, 4) if wall > 0 else None,
        "queue_latency_s": _pcts(queue), "run_time_s": _pcts(run), "submit_round_trip_s": _pcts([s.round_trip_s for s in subs]),
        "ok": not problems, "problems": problems,
        "submissions": [asdict(s) | {"final": {k: s.final.get(k) for k in ("status", "created", "started", "finished", "error")}} for s in subs],
    }


def report(summary: dict[str, Any]) -> str:
    def pair(p: dict[str, float | None]) -> str:
        return "-" if p["p50"] is None else f"p50 {p['p50']:.2f} s  p95 {p['p95']:.2f} s  max {p['max']:.2f} s"

    lines = [
        f"serve load: {summary['submitted']} submissions from {summary['clients']} clients to {summary['server']}"
        + (f" (max-queue {summary['max_queue']})" if summary["max_queue"] else ""),
        f"accepted {summary['accepted']}  rejected {summary['rejected']} (429: {summary['rejected_429']})  "
        f"succeeded {summary['succeeded']}  not succeeded {summary['not_succeeded']}",
        f"throughput {summary['jobs_per_s']} jobs/s ({summary['succeeded']} jobs in {summary['wall_s']:.1f} s)",
        f"queue latency (created -> started): {pair(summary['queue_latency_s'])}",
        f"run time (started -> finished):     {pair(summary['run_time_s'])}",
        f"submit round trip:                  {pair(summary['submit_round_trip_s'])}",
    ]
    if summary["ok"]:
        lines.append("check: OK (every accepted job succeeded; every rejection was a 429)")
    else:
        lines += ["check: FAILED"] + [f"  {p}" for p in summary["problems"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=12, help="Submissions in all (default 12).")
    parser.add_argument("--clients", type=int, default=4, help="Concurrent client threads (default 4).")
    parser.add_argument("--max-queue", type=int, default=4, help="The started server's --max-queue (default 4).")
    parser.add_argument("--workers", type=int, default=1, help="The started server's --workers (default 1).")
    parser.add_argument("--preset", default="mini-fast", help="The started server's --preset (default mini-fast).")
    parser.add_argument("--server", help="Use this running server (loopback only) instead of starting one.")
    parser.add_argument("--token", default=os.environ.get("SOUL_TOKEN"), help="Bearer token (default $SOUL_TOKEN).")
    parser.add_argument("--interval", type=float, default=0.0, help="Pause of each client between its submissions, s (default 0).")
    parser.add_argument("--timeout", type=float, default=900.0, help="Bound on the whole run, s (default 900).")
    parser.add_argument("--json", action="store_true", help="Print the summary as JSON (with every submission).")
    args = parser.parse_args()
    if args.jobs < 1 or args.clients < 1 or args.max_queue < 1 or args.timeout <= 0:
        parser.error("--jobs, --clients and --max-queue must be >= 1, --timeout > 0")
    if args.server:
        host = urlsplit(args.server).hostname
        if urlsplit(args.server).scheme not in ("http", "https") or host not in LOOPBACK:
            parser.error(f"--server must be a loopback URL (127.0.0.1, localhost, ::1), not {args.server!r}")
        summary = run_load(args.server.rstrip("/"), args.token, args)
    else:
        with local_server(args, args.token) as base:
            summary = run_load(base, args.token, args)
    print(json.dumps(summary, indent=2) if args.json else report(summary), flush=True)
    sys.exit(0 if summary["ok"] else 1)


if __name__ == "__main__":
    main()
