"""The job store: one SQLite row per job in ``DATA/jobs.sqlite`` (WAL), shared by the API and the workers.

Why SQLite and not memory: the queue must outlive the process. A server killed mid-job (SIGKILL,
OOM killer, a reboot) finds its jobs again at start: `recover()` puts every ``running`` job back
to ``queued``, and the job's resume state (``output.mp4.soul-partial/``) lets ``run_generate``
continue from its last finished chunk. Every status change is one conditional UPDATE, so two
threads never both claim a job and a late worker never overwrites a cancel or a delete.

One connection behind a lock: the writes are tiny (a progress update is a few hundred bytes), so
serialising them costs nothing next to a sampling step, and it keeps the store simple.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL = frozenset({"succeeded", "failed", "cancelled"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    preset TEXT NOT NULL,
    prompt TEXT NOT NULL,
    request TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    chunks_done INTEGER NOT NULL DEFAULT 0,
    chunks_total INTEGER,
    frames INTEGER NOT NULL DEFAULT 0,
    elapsed_s REAL NOT NULL DEFAULT 0,
    eta_s REAL,
    error TEXT,
    result TEXT,
    cancel INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq);
"""

PROGRESS_FIELDS = ("chunks_done", "chunks_total", "frames", "elapsed_s", "eta_s")


@dataclass
class Job:
    """One row of the store."""

    id: str
    status: str
    preset: str
    prompt: str
    request: dict[str, Any]
    created: float
    started: float | None = None
    finished: float | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    result: dict[str, Any] | None = None
    cancel: bool = False

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def as_api(self) -> dict[str, Any]:
        """The job as the API shows it (docs/serve.md): no request paths, no internal flags."""
        return {
            "id": self.id, "status": self.status, "preset": self.preset, "prompt": self.prompt,
            "created": self.created, "started": self.started, "finished": self.finished,
            "progress": dict(self.progress), "error": self.error, "result": self.result,
        }


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"], status=row["status"], preset=row["preset"], prompt=row["prompt"], request=json.loads(row["request"]),
        created=row["created"], started=row["started"], finished=row["finished"],
        progress={k: row[k] for k in PROGRESS_FIELDS}, error=row["error"],
        result=None if row["result"] is None else json.loads(row["result"]), cancel=bool(row["cancel"]),
    )


class JobStore:
    """Thread-safe access to ``jobs.sqlite``; every method is one short transaction."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives the process being killed (only power loss can drop the last ones).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._changed = threading.Condition(self._lock)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            self._changed.notify_all()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------------------- lifecycle

    def recover(self) -> int:
        """After a restart: running jobs go back to the queue (cancelled if a cancel was pending).

        Returns how many were re-queued; their resume state lets them continue where they stopped.
        """
        now = time.time()
        with self._tx() as db:
            db.execute("UPDATE jobs SET status='cancelled', finished=?, eta_s=NULL WHERE status='running' AND cancel=1", (now,))
            return db.execute("UPDATE jobs SET status='queued', eta_s=NULL WHERE status='running'").rowcount

    def add(self, job_id: str, *, preset: str, prompt: str, request: dict[str, Any], max_queued: int) -> bool:
        """Queue a new job unless ``max_queued`` jobs already wait; False means the queue is full."""
        with self._tx() as db:
            (queued,) = db.execute("SELECT COUNT(*) FROM jobs WHERE status='queued'").fetchone()
            if queued >= max_queued:
                return False
            db.execute(
                "INSERT INTO jobs (id, status, preset, prompt, request, created) VALUES (?, 'queued', ?, ?, ?, ?)",
                (job_id, preset, prompt, json.dumps(request), time.time()),
            )
            return True

    def claim(self) -> Job | None:
        """The oldest queued job, now marked running (FIFO; re-queued jobs keep their place)."""
        with self._tx() as db:
            row = db.execute("SELECT id FROM jobs WHERE status='queued' ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET status='running', started=?, chunks_done=0, frames=0, elapsed_s=0, eta_s=NULL WHERE id=?",
                (time.time(), row["id"]),
            )
            return _job(db.execute("SELECT * FROM jobs WHERE id=?", (row["id"],)).fetchone())

    def update_progress(self, job_id: str, **progress: Any) -> None:
        """Write progress fields of a running job (ignored once it left ``running``)."""
        unknown = set(progress) - set(PROGRESS_FIELDS)
        if unknown:
            raise ValueError(f"unknown progress fields {sorted(unknown)}")
        if not progress:
            return
        sets = ", ".join(f"{k}=?" for k in progress)
        with self._tx() as db:
            db.execute(f"UPDATE jobs SET {sets} WHERE id=? AND status='running'", (*progress.values(), job_id))  # noqa: S608 - fixed names

    def finish(self, job_id: str, status: str, *, error: str | None = None, result: dict[str, Any] | None = None) -> bool:
        """Move a running job to a final status; False when it was not running any more."""
        if status not in FINAL:
            raise ValueError(f"{status!r} is not a final status")
        with self._tx() as db:
            return db.execute(
                "UPDATE jobs SET status=?, finished=?, eta_s=NULL, error=?, result=? WHERE id=? AND status='running'",
                (status, time.time(), error, None if result is None else json.dumps(result), job_id),
            ).rowcount == 1

    def requeue(self, job_id: str) -> None:
        """Put a running job back in the queue (the server is stopping; it resumes at the next start)."""
        with self._tx() as db:
            db.execute("UPDATE jobs SET status='queued', eta_s=NULL WHERE id=? AND status='running' AND cancel=0", (job_id,))

    def cancel(self, job_id: str) -> str | None:
        """Cancel a job: a queued one at once, a running one at its next chunk (a flag its worker reads).

        Returns the job's status before the call, or None for an unknown id.
        """
        with self._tx() as db:
            row = db.execute("SELECT status FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                return None
            if row["status"] == "queued":
                db.execute("UPDATE jobs SET status='cancelled', finished=? WHERE id=?", (time.time(), job_id))
            elif row["status"] == "running":
                db.execute("UPDATE jobs SET cancel=1 WHERE id=?", (job_id,))
            return str(row["status"])

    def cancel_requested(self, job_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT cancel FROM jobs WHERE id=?", (job_id,)).fetchone()
        return row is None or bool(row["cancel"])  # a deleted row counts as cancelled

    def delete(self, job_id: str) -> bool:
        """Remove a finished job's row; False if the job is unknown or not finished."""
        with self._tx() as db:
            marks = ",".join("?" * len(FINAL))
            return db.execute(f"DELETE FROM jobs WHERE id=? AND status IN ({marks})", (job_id, *sorted(FINAL))).rowcount == 1  # noqa: S608

    # ------------------------------------------------------------------------------- reading

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return None if row is None else _job(row)

    def page(self, limit: int, offset: int) -> tuple[list[Job], int]:
        """Jobs newest first, and how many there are in all."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs ORDER BY seq DESC LIMIT ? OFFSET ?", (limit, offset)).fetchall()
            (total,) = self._db.execute("SELECT COUNT(*) FROM jobs").fetchone()
        return [_job(r) for r in rows], int(total)

    def counts(self) -> dict[str, int]:
        """Number of jobs in each status (every status present, zero included)."""
        with self._lock:
            rows = self._db.execute("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status").fetchall()
        out = dict.fromkeys(STATUSES, 0)
        out.update({r["status"]: int(r["n"]) for r in rows})
        return out

    def wait_for_change(self, timeout: float) -> None:
        """Block until any write (or ``timeout`` seconds): workers sleep here instead of polling hard."""
        with self._changed:
            self._changed.wait(timeout)
