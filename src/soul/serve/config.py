"""The server's settings: one typed object that `soul serve` fills from its flags and `create_app` reads."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from soul.config import DEFAULT_PRESET


class ServeConfig(BaseModel):
    """Everything `create_app` needs; the defaults are `soul serve`'s (docs/serve.md).

    `checkpoint` goes with the default `preset`: a job naming another preset runs on that preset's
    own (shipped or random) weights, since a checkpoint only fits the architecture it was made for.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    data: Path = Path("soul-data")
    preset: str = DEFAULT_PRESET
    checkpoint: Path | None = None
    token: str | None = None
    max_queue: int = Field(16, ge=1)
    max_upload_mb: float = Field(200.0, gt=0)
    workers: int = Field(1, ge=1)
    device: str = "cpu"
    # ``ulysses=U,cfg=C`` when this is rank 0 of a worker group launched by torchrun
    # (`soul serve --parallel`): every job runs on all U*C processes. None: one process per job.
    parallel: str | None = None
    # A portrait.png and speech.wav the web UI offers as "use the example" (GET /v1/examples/NAME);
    # `soul serve` writes a held-out drawn face and babble there. None: no examples.
    examples: Path | None = None
    # Live sessions (`POST /v1/live`, docs/live.md): how many at once (each is a thread with its own
    # model), and how long one waits for a client to come back before it ends.
    live_sessions: int = Field(1, ge=0)
    live_idle_s: float = Field(120.0, gt=0)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def jobs_dir(self) -> Path:
        """Where each job's uploads, outputs and resume state live (`DATA/jobs/<id>/`)."""
        return self.data / "jobs"

    @property
    def store_path(self) -> Path:
        return self.data / "jobs.sqlite"
