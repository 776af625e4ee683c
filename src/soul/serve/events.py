"""Server-sent events of one job: ``event: job`` + its JSON on every change, closed after a final state.

The store is the only shared state between the API and the workers (which may be other threads),
so the stream polls it: a read every quarter second is nothing next to a sampling step, and a
client that reconnects simply gets the current state first.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from soul.serve.store import JobStore

POLL_S = 0.25
KEEPALIVE_S = 15.0


def sse(data: str, event: str = "job") -> str:
    """One SSE message (``data`` is one line of JSON)."""
    return f"event: {event}\ndata: {data}\n\n"


async def job_events(
    store: JobStore, job_id: str, disconnected: Callable[[], Awaitable[bool]], stopping: threading.Event | None = None,
) -> AsyncIterator[str]:
    """Yield the job's state whenever it changes, until it is final, deleted, the client left or the server stops.

    Ending on ``stopping`` lets a stopping server close at once instead of waiting out its open
    streams; a browser's EventSource reconnects by itself once the server is back.
    """
    last: str | None = None
    last_sent = time.monotonic()
    while True:
        job = store.get(job_id)
        if job is None:
            return
        data = json.dumps(job.as_api(), separators=(",", ":"))
        if data != last:
            yield sse(data)
            last, last_sent = data, time.monotonic()
        if job.final:
            return
        if time.monotonic() - last_sent > KEEPALIVE_S:  # a comment keeps proxies from closing an idle stream
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        if await disconnected() or (stopping is not None and stopping.is_set()):
            return
        await asyncio.sleep(POLL_S)
