"""`soul serve`: the HTTP API and web UI over a persistent job queue (docs/serve.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from soul.cli.app import app, state
from soul.config import DEFAULT_PRESET

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


@app.command(
    help=(
        "Serve Soul over HTTP: a JSON API under /v1 (submit a portrait and speech, follow progress, "
        "download the MP4) and a web UI at /. Jobs wait in a queue kept in DATA/jobs.sqlite and run "
        "one per worker with the model kept loaded; a server that is killed picks its jobs up again at "
        "the next start, each from its last finished chunk. Every upload is checked as `soul generate` "
        "checks its files, so a bad one is refused at once with the same message.\n\n"
        "With --token (or SOUL_TOKEN) every /v1 request needs `Authorization: Bearer <token>`; set one "
        "whenever --host is not local.\n\n"
        "Examples:\n\n"
        "  soul serve --preset mini-fast\n\n"
        "  curl -F image=@face.png -F audio=@hello.wav -F prompt='a person talking' localhost:8000/v1/jobs\n\n"
        "  SOUL_TOKEN=s3cret soul serve --host 0.0.0.0 --preset wan22-ti2v-5b --checkpoint ~/weights/soul --data /srv/soul\n\n"
        "One job on several GPUs at once (a worker group): launch with torchrun; rank 0 serves HTTP and "
        "shares every job with the other ranks (see soul generate --parallel):\n\n"
        "  torchrun --nproc_per_node 4 -m soul serve --device cuda --parallel ulysses=4 --checkpoint ~/weights/soul"
    )
)
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface; set a --token)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port."),
    data: Path = typer.Option(Path("soul-data"), "--data", help="Directory of the job store (jobs.sqlite) and of every job's files (jobs/<id>/)."),
    preset: str = typer.Option(DEFAULT_PRESET, "--preset", help="Preset of jobs that name none (mini-fast: the fast miniature model; see soul generate --help)."),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Weights directory for jobs on the default --preset (as soul generate --checkpoint)."),
    token: str = typer.Option(None, "--token", envvar="SOUL_TOKEN", help="Bearer token every /v1 request must send (default: $SOUL_TOKEN; none: open)."),
    max_queue: int = typer.Option(16, "--max-queue", min=1, help="Jobs allowed to wait; a submit beyond that gets 429."),
    max_upload_mb: float = typer.Option(200.0, "--max-upload-mb", min=0.001, help="Largest request body (image + audio) in MB; beyond that 413."),
    workers: int = typer.Option(1, "--workers", min=1, help="Jobs run at once, each worker with its own loaded model (memory!): one per GPU."),
    device: str = typer.Option("cpu", "--device", help="torch device the workers generate on, e.g. cuda or cuda:1."),
    parallel: str = typer.Option(None, "--parallel", help="ulysses=U,cfg=C: run every job on the U*C processes torchrun launched (rank 0 serves HTTP; the others follow it). CUDA ranks use NCCL (--device cuda), CPU ranks gloo."),
    live_sessions: int = typer.Option(1, "--live-sessions", min=0, help="Live sessions at once (POST /v1/live; the page /live), each with its own model; 0 turns live off."),
) -> None:
    import sys

    from soul.errors import InputError, RuntimeFailure

    group = None
    if parallel is not None:
        if workers != 1:
            raise InputError("--workers", f"{workers} with --parallel: a worker group runs one job at a time on all its processes", "leave --workers out (or launch one soul serve per group)")
        group = _join_group(parallel, device)
        if group is None:  # a follower: it served its jobs, rank 0 has stopped
            return
        parallel = str(group.runtime.spec)

    try:
        import uvicorn

        from soul.serve import ServeConfig, create_app
    except ImportError as err:
        raise RuntimeFailure(f"soul serve needs the serve extra ({err.name} is missing): pip install 'soul-avatar[serve]'") from None

    application = None
    try:
        config = ServeConfig(
            host=host, port=port, data=data, preset=preset, checkpoint=checkpoint, token=token or None, max_queue=max_queue,
            max_upload_mb=max_upload_mb, workers=workers, device=device, parallel=parallel, examples=write_examples(data / "examples"),
            live_sessions=live_sessions,
        )
        application = create_app(config, group=group)
        if config.token is None and host not in LOCAL_HOSTS:
            print(f"warning: serving on {host} without --token: anyone who reaches port {port} can run jobs", file=sys.stderr)
        if not state.quiet:
            layout = f"1 worker on {group.runtime.world_size} processes ({parallel})" if group else f"{workers} worker(s)"
            typer.echo(f"soul serve: http://{host}:{port}/ (data {application.state.config.data}, preset {preset}, {layout})")

        class _Server(uvicorn.Server):
            """uvicorn that tells the app it is stopping as soon as the signal comes (streams end, jobs re-queue)."""

            def handle_exit(self, sig: int, frame: Any) -> None:
                application.state.begin_shutdown()
                super().handle_exit(sig, frame)

        server = _Server(
            uvicorn.Config(application, host=host, port=port, log_level="warning" if state.quiet else "info", timeout_graceful_shutdown=5)
        )
        workers_pool = application.state.workers
        workers_pool.on_fatal = lambda _why: setattr(server, "should_exit", True)
        server.run()
        if workers_pool.fatal is not None:  # exit non-zero: a supervisor (systemd, Kubernetes) starts the group again
            raise RuntimeFailure(f"{workers_pool.fatal}; its job is back in the queue and resumes at the next start")
    finally:
        if group is not None:
            _leave_group(group, None if application is None else application.state.workers)


def _leave_group(group: Any, pool: Any) -> None:
    """Rank 0's goodbye: the followers return, the process group closes. Not while the worker
    thread is still inside a job (a chunk longer than the stop timeout): two threads must never
    run collectives at once. Then the exit breaks the group; the followers see it and exit, and
    the job, still marked running, is re-queued at the next start."""
    if pool is not None and any(thread.is_alive() for thread in pool.threads):
        return
    group.shutdown()
    group.runtime.close()


def _join_group(parallel: str, device: str) -> Any:
    """Join torchrun's worker group: rank 0 gets its `WorkerGroup` to serve with; the other ranks
    follow rank 0's jobs here until it stops, then get None."""
    import signal
    import warnings

    from soul.errors import RuntimeFailure, SoulWarning
    from soul.parallel.runtime import init_parallel
    from soul.serve.group import WorkerGroup, follow
    from soul.serve.worker import GroupBroken, preload_job_modules

    runtime = init_parallel(parallel, device, command="serve")
    if runtime.is_writer:
        return WorkerGroup(runtime)
    state.quiet = True  # rank 0 speaks for the group
    warnings.simplefilter("ignore", SoulWarning)
    # A follower stops when rank 0 says so (after putting a running job back in the queue), not at
    # the signal torchrun or a terminal sends every process: dying first would break rank 0's job.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    try:
        preload_job_modules()
        follow(runtime)
    except GroupBroken as err:
        raise RuntimeFailure(f"rank {runtime.rank}: lost the worker group's rank 0 ({err})") from None
    finally:
        runtime.close()
    return None


def write_examples(folder: Path) -> Path:
    """A drawn face and babble from the miniature world's held-out range, for the UI's example button.

    Made here (the command line may use the miniature world; the server package may not) and only
    once per data directory.
    """
    import soundfile as sf

    from soul.config import MODEL_SAMPLE_RATE
    from soul.miniature.portrait import HELD_OUT_SEED, draw_face, random_face
    from soul.miniature.speech import synthesize_babble

    folder.mkdir(parents=True, exist_ok=True)
    portrait, speech = folder / "portrait.png", folder / "speech.wav"
    if not portrait.is_file():  # written under a temporary name, so a killed start leaves no half file
        draw_face(random_face(HELD_OUT_SEED + 77), size=256).save(folder / ".portrait.tmp.png")
        (folder / ".portrait.tmp.png").replace(portrait)
    if not speech.is_file():
        sf.write(folder / ".speech.tmp.wav", synthesize_babble(3.0, MODEL_SAMPLE_RATE, seed=HELD_OUT_SEED + 77), MODEL_SAMPLE_RATE)
        (folder / ".speech.tmp.wav").replace(speech)
    return folder
