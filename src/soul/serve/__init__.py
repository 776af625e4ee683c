"""`soul serve`: the HTTP API over `soul.jobs.generate` with a persistent job queue (docs/serve.md).

Modules, one job each: `config` (the typed settings), `store` (SQLite job rows), `intake`
(multipart upload -> checked request), `worker` (threads running the queue), `events` (SSE),
`files` (video bytes with Range), `metrics` (Prometheus), `api` (the /v1 routes), `app`
(`create_app`, errors, web UI). The web UI's files live in `static/`.
"""

from __future__ import annotations

from soul.serve.app import create_app
from soul.serve.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]
