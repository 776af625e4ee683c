"""One generation job from files to an MP4: the shared path of `soul generate`, the benchmark and the server.

Every input is read and validated before any model is built, so a bad file costs a second, not a
model load; the MP4 is written atomically, so a failure never leaves a file that looks finished.

Audio of any length up to ``max_duration`` is generated in chunks (``soul.pipelines.long_video``):
frames stream into the MP4 writer as chunks finish, and chunk latents are saved beside the output
(``OUT.mp4.soul-partial/``) so re-running the same command after a crash continues from the last
finished chunk. A clip that fits one chunk is simply a run with one chunk.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from soul.analysis.drawing import looks_drawn
from soul.config import DEFAULT_PRESET, MODEL_SAMPLE_RATE
from soul.errors import InputError, SoulWarning
from soul.media.audio import Audio
from soul.media.image import load_image

if TYPE_CHECKING:
    from soul.config import SoulConfig
    from soul.parallel.runtime import ParallelRuntime
    from soul.parallel.spec import ParallelSpec
    from soul.sampling.settings import SamplingSettings
    from soul.pipelines.soul_pipeline import SoulPipeline

ProgressFn = Callable[[int, int], None]
MUX_SAMPLE_RATE = 48_000


class GenerateRequest(BaseModel):
    """Everything a generation needs; None means "the preset's default"."""

    model_config = ConfigDict(extra="forbid")

    image: Path
    audio: list[Path] = Field(min_length=1)
    prompt: str = ""
    negative_prompt: str = ""
    output: Path
    preset: str = DEFAULT_PRESET
    checkpoint: Path | None = None
    height: int | None = None
    width: int | None = None
    fps: int | None = None
    steps: int | None = None
    sigmas: list[float] | None = None
    sampler: Literal["euler", "unipc", "x0"] | None = None
    text_scale: float | None = None
    audio_scale: float | None = None
    guidance: bool | None = None
    seed: int = 0
    masks: list[Path] = Field(default_factory=list)
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    cpu_offload: bool = False
    chunk_frames: int | None = Field(None, ge=5)
    motion_latents: int | None = Field(None, ge=0)
    codebook: bool | None = None
    codebook_threshold: float | None = Field(None, ge=-1.0, le=1.0)
    codebook_blend: float | None = Field(None, ge=0.0, le=1.0)
    vae: Literal["full", "light"] | None = None
    max_duration: float | None = Field(None, gt=0)
    first_chunk_frames: int | None = Field(None, ge=5)
    audio_lookahead: float | None = Field(None, ge=0.0)
    audio_norm: Literal["track", "causal"] | None = None
    resume: bool = True


_Request = TypeVar("_Request", bound=BaseModel)


def validated(model: type[_Request], command: str, fields: dict[str, Any]) -> _Request:
    """``model`` from CLI/HTTP fields (None = its default); a validation failure is one input error
    naming the flag and ``soul COMMAND --help``."""
    from pydantic import ValidationError

    try:
        return model(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as err:
        first = err.errors()[0]
        name = "--" + "-".join(str(p) for p in first["loc"][:1]).replace("_", "-")
        raise InputError(name, first["msg"], f"see soul {command} --help") from None


def build_request(**fields: Any) -> GenerateRequest:
    """A request from CLI/HTTP fields, turning validation failures into one-line input errors."""
    return validated(GenerateRequest, "generate", fields)


@dataclass
class GenerateResult:
    output: Path
    num_frames: int
    fps: int
    duration: float
    audio_duration: float
    height: int
    width: int
    seconds: float
    preset: str
    seed: int
    info: dict[str, Any] = field(default_factory=dict)
    chunks: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["output"] = str(self.output)
        return out


@dataclass
class PreparedInputs:
    """Decoded inputs: the portrait, 16 kHz streams for the model, and the sound to put in the MP4."""

    image: Any
    model_audio: list[np.ndarray]
    mux_audio: Audio
    duration: float


def prepare_inputs(request: GenerateRequest, workdir: Path) -> PreparedInputs:
    """Read and validate every input file before anything expensive happens.

    Audio is decoded frame by frame into raw files in ``workdir`` (``soul.media.spool``):
    the model's 16 kHz tracks are then held once, loudness-normalised in place, and the MP4's
    soundtrack is read from disk as the video is written, so a 30-minute input costs little memory.
    """
    from soul.media.spool import FileSamples, loudness_normalize_, mix_spooled, spool_audio

    if request.output.suffix.lower() != ".mp4":
        raise InputError(request.output, "output must be an .mp4 file", "name the output like result.mp4")
    if request.output.exists() and request.output.is_dir():
        raise InputError(request.output, "is a directory", "give a file name ending in .mp4")
    image = load_image(request.image)
    model_audio = []
    for p in request.audio:
        spooled = spool_audio(p, workdir, sample_rate=MODEL_SAMPLE_RATE, mono=True)
        model_audio.append(loudness_normalize_(spooled.load(), MODEL_SAMPLE_RATE))
        spooled.path.unlink()
    for mask in request.masks:
        if not mask.exists():
            raise InputError(mask, "mask image not found", "check the path, or leave masks out to detect people automatically")
    if len(request.audio) == 1:
        track = spool_audio(request.audio[0], workdir, mono=False)
    else:
        track = mix_spooled([spool_audio(p, workdir, sample_rate=MUX_SAMPLE_RATE, mono=False) for p in request.audio], workdir, MUX_SAMPLE_RATE)
    mux = Audio(FileSamples(track), track.sample_rate)  # type: ignore[arg-type]  # array-like read from disk
    return PreparedInputs(image=image, model_audio=model_audio, mux_audio=mux, duration=max(a.shape[0] for a in model_audio) / MODEL_SAMPLE_RATE)


# Request fields that change no frame: left out of the resume fingerprint.
# The live layout's fields are in the resolved settings' record when set (and absent when not, so
# fingerprints of ordinary runs stay what they were).
_NOT_IN_FINGERPRINT = {"output", "resume", "cpu_offload", "max_duration", "first_chunk_frames", "audio_lookahead", "audio_norm"}


def run_generate(
    request: GenerateRequest,
    progress: ProgressFn | None = None,
    on_chunk: Callable[[dict[str, Any]], None] | None = None,
    *,
    preview: Path | None = None,
    parallel: ParallelSpec | str | ParallelRuntime | None = None,
) -> GenerateResult:
    """Generate the video for `request` and write it to `request.output`.

    Chunk latents are kept in `OUT.mp4.soul-partial/` while the job runs and removed once the MP4 is
    in place; with `request.resume` (the default) a previous run of the same request continues from
    its last finished chunk. `on_chunk` receives each chunk's summary record as it finishes.
    With `preview`, every frame written to the MP4 is also written to a fragmented MP4 at that path,
    in place and readable while it grows (`VideoWriter(fragmented=True)`); it holds the same frames.

    `parallel` (`"ulysses=U,cfg=C"`, a `soul.parallel.ParallelSpec`): this process is one of the
    `U * C` that torchrun launched; all run this same call and make the same frames, which rank 0
    alone writes (MP4, preview, resume state); the others return the same result without writing.
    A `soul.parallel.ParallelRuntime` is a process group joined already and kept after the call
    (a server's worker group runs job after job on one group); a spec joins and leaves one.
    """
    from soul.jobs.resume import output_lock, remove_stale_work_dirs

    start = time.perf_counter()
    from soul.parallel.runtime import ParallelRuntime, init_parallel

    runtime, owned = None, False
    if isinstance(parallel, ParallelRuntime):
        runtime = parallel
    elif parallel is not None:
        from soul.parallel.spec import ParallelSpec

        spec = ParallelSpec.parse(parallel) if isinstance(parallel, str) else parallel
        if spec.world_size > 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1:  # ulysses=1,cfg=1 alone: one process
            runtime, owned = init_parallel(spec, request.device), True
    if runtime is not None:
        request = request.model_copy(update={"device": str(runtime.device)})
    try:
        writer = runtime is None or runtime.is_writer
        # Decoded audio lives beside the output (same disk, found again and removed if a killed run
        # left it), not in the system temp directory, which a SIGKILL would litter for good.
        request.output.parent.mkdir(parents=True, exist_ok=True)
        # One run per output file (its resume state is shared); taken before anything is read or removed.
        with output_lock(request.output) if writer else nullcontext():
            if writer:
                remove_stale_work_dirs(request.output)
            with tempfile.TemporaryDirectory(prefix=f".{request.output.name}.audio-{os.getpid()}-", dir=request.output.parent) as workdir:
                inputs = prepare_inputs(request, Path(workdir))
                return _run(request, inputs, start, progress, on_chunk, preview, runtime)
    finally:
        if owned and runtime is not None:
            runtime.close()


def _run(
    request: GenerateRequest,
    inputs: PreparedInputs,
    start: float,
    progress: ProgressFn | None,
    on_chunk: Callable[[dict[str, Any]], None] | None,
    preview: Path | None = None,
    runtime: ParallelRuntime | None = None,
) -> GenerateResult:
    """Resolve the settings, load the model, then stream chunks into the MP4 (resumable)."""
    from contextlib import ExitStack

    from soul.config import load_preset
    from soul.jobs.resume import ResumeState, fingerprint, remove_stale_writer_files
    from soul.media.video import VideoWriter
    from soul.media.writer_thread import BackgroundSink
    from soul.models.audio_encoder import video_frames_for_duration
    from soul.pipelines.long_video import generate_long_video

    # 1. One resolution of preset + request, every check, before any model is built
    config = load_preset(request.preset)
    settings = resolve_request(request, config)
    if inputs.duration > settings.max_duration:
        raise InputError(
            request.audio[0] if len(request.audio) == 1 else "--audio",
            f"is {inputs.duration:.1f} s, longer than the maximum of {settings.max_duration:.0f} s",
            f"trim the audio, or raise the limit with --max-duration {math.ceil(inputs.duration)}",
        )
    video_frames = video_frames_for_duration(inputs.duration, settings.fps)
    if runtime is not None:
        runtime.check(heads=config.transformer.num_attention_heads, num_passes=settings.guidance.num_passes(), chunk_tokens=_chunk_tokens(config, settings, video_frames))
    notes = generation_warnings(request, config, inputs.image)
    for note in notes:
        warnings.warn(SoulWarning(note), stacklevel=3)
    # 2. The model, the portrait, prompts and speakers
    pipe, weight_files = load_pipeline(request, config)
    if request.cpu_offload:
        pipe.enable_model_cpu_offload()
    if runtime is not None:
        pipe.enable_parallel(runtime)
    conditions = pipe.encode_conditions(
        inputs.image, request.prompt, request.negative_prompt, len(request.audio), settings, _person_masks(request, inputs, settings, config),
    )
    # 3. Chunks into the MP4; finished chunks saved for resume. In a parallel run only rank 0 writes:
    #    the others get no sink (so they decode nothing) and see rank 0's resume state.
    writer = runtime is None or runtime.is_writer
    files = [request.image, *request.audio, *request.masks, *weight_files]
    state = None
    if writer:
        state = ResumeState.open(request.output, fingerprint(_fingerprint_fields(request, config, settings), files), resume=request.resume)
        remove_stale_writer_files(request.output)
    store = state if runtime is None else runtime.share_store(state)
    with ExitStack() as writers:
        sink: BackgroundSink | None = None
        chunk_done = on_chunk
        if writer:
            sinks = [writers.enter_context(VideoWriter(request.output, settings.fps, audio=inputs.mux_audio)).write]
            if preview is not None:  # a tee: the live preview gets every batch the MP4 gets, closed with it
                sinks.append(writers.enter_context(VideoWriter(preview, settings.fps, audio=inputs.mux_audio, fragmented=True)).write)

            def write(frames: np.ndarray) -> None:
                for each in sinks:
                    each(frames)

            # Encoding overlaps the next chunk's sampling; entered after the writers, so it is
            # closed (every frame written) before they are.
            sink = writers.enter_context(BackgroundSink(write))
            if on_chunk is not None:  # whoever hears "chunk done" may read its frames: write them first

                def chunk_done(record: dict[str, Any], sink: BackgroundSink = sink) -> None:
                    sink.drain()
                    on_chunk(record)

        result = generate_long_video(
            pipe, conditions, inputs.model_audio, video_frames=video_frames,
            settings=settings, seed=request.seed, sink=sink, state=store, progress=progress, on_chunk=chunk_done,
        )
    if state is not None:
        state.remove()
    return GenerateResult(
        output=request.output, num_frames=result.frames, fps=settings.fps, duration=result.frames / settings.fps,
        audio_duration=inputs.duration, height=settings.height, width=settings.width,
        seconds=round(time.perf_counter() - start, 3), preset=request.preset, seed=request.seed,
        info=_result_info(request, config, settings, result, notes, runtime), chunks=result.chunks,
    )


def _chunk_tokens(config: SoulConfig, settings: SamplingSettings, video_frames: int) -> list[int]:
    """Transformer tokens of every chunk of the video (what sequence parallelism splits)."""
    from soul.sampling.chunks import plan_video

    _, p_h, p_w = config.transformer.patch_size
    scale = config.vae.scale_factor_spatial
    per_frame = (settings.height // scale // p_h) * (settings.width // scale // p_w)
    return [plan.model_latents * per_frame for plan in plan_video(video_frames, settings.chunk_frames, settings.motion_latents).chunks]


def resolve_request(request: GenerateRequest, config: SoulConfig) -> SamplingSettings:
    """The request's sampling fields over the preset's defaults (``soul.sampling.settings``)."""
    from soul.sampling.settings import resolve_sampling  # torch-heavy: not at CLI start-up

    return resolve_sampling(
        config, height=request.height, width=request.width, fps=request.fps, steps=request.steps, sigmas=request.sigmas,
        sampler=request.sampler, text_scale=request.text_scale, audio_scale=request.audio_scale, guidance=request.guidance,
        vae=request.vae, chunk_frames=request.chunk_frames, motion_latents=request.motion_latents, codebook=request.codebook,
        codebook_threshold=request.codebook_threshold, codebook_blend=request.codebook_blend, max_duration=request.max_duration,
        first_chunk_frames=request.first_chunk_frames, audio_lookahead=request.audio_lookahead, audio_norm=request.audio_norm,
    )


def _person_masks(request: GenerateRequest, inputs: PreparedInputs, settings: SamplingSettings, config: SoulConfig) -> np.ndarray | None:
    """One mask per speaker at latent resolution, from --mask files or people found on the portrait."""
    if len(request.audio) == 1 and not request.masks:
        return None
    from soul.models.person_masks import person_masks_for

    latent = (settings.height // config.vae.scale_factor_spatial, settings.width // config.vae.scale_factor_spatial)
    return person_masks_for(  # found on the portrait as given, mapped through the fit to the generation size
        inputs.image, len(request.audio), latent, mask_paths=request.masks or None, source=request.image,
        frame_size=(settings.width, settings.height),
    )


def _fingerprint_fields(request: GenerateRequest, config: SoulConfig, settings: SamplingSettings) -> dict[str, Any]:
    """What decides the frames: the inputs and the resolved settings, not their spelling.

    The same frames under two spellings (a flag, or the preset's default) resume each other, and
    a preset whose defaults changed does not.
    """
    fields = request.model_dump(mode="json", exclude=_NOT_IN_FINGERPRINT)
    fields.update(settings.as_record(), weights=config.weights if request.checkpoint is None else None)
    return fields


def _result_info(
    request: GenerateRequest, config: SoulConfig, settings: SamplingSettings, result: Any, notes: list[str], runtime: ParallelRuntime | None = None,
) -> dict[str, Any]:
    parallel = None if runtime is None else {"ulysses": runtime.spec.ulysses, "cfg": runtime.spec.cfg, "world_size": runtime.world_size, "rank": runtime.rank}
    return {
        "seed": request.seed, "num_frames": result.generated_frames, "video_frames": result.frames,
        "sampler": settings.sampler, "sigmas": [round(float(s), 6) for s in settings.sigmas], "vae": settings.vae,
        "weights": weight_source(request, config), "text_guidance_scale": settings.guidance.text_scale,
        "audio_guidance_scale": settings.guidance.audio_scale, "guidance": settings.guidance.enabled,
        "passes_per_step": settings.guidance.num_passes(), "num_streams": len(request.audio), "warnings": notes,
        "parallel": parallel, **result.info,
    }


class ModelRequest(Protocol):
    """What choosing and loading a model reads from a request (a generation's or a live session's)."""

    image: Path
    preset: str
    checkpoint: Path | None
    device: str
    dtype: str
    cpu_offload: bool


def generation_warnings(request: ModelRequest, config: SoulConfig, image: Any) -> list[str]:
    """What the user must know before trusting the video: random weights, or a portrait the weights never saw."""
    notes = []
    if request.checkpoint is None and config.weights is None and config.hub.backbone is None:
        notes.append(
            f"preset {config.name} has RANDOM weights: the video is noise, for tests and smoke runs "
            "(a real video: --preset wan22-ti2v-5b with --checkpoint; the drawn miniature world: --preset mini)"
        )
    if config.portraits == "drawn" and not looks_drawn(image):
        notes.append(
            f"{request.image}: preset {config.name} knows only the miniature world's drawn faces and this portrait "
            "is not one, so the video will not look like it (photos need --preset wan22-ti2v-5b with --checkpoint)"
        )
    return notes


def weight_source(request: ModelRequest, config: SoulConfig) -> str:
    """Where the model's weights come from, for the result record: a checkpoint, shipped, or random."""
    if request.checkpoint is not None:
        return f"checkpoint {request.checkpoint}"
    if config.weights is not None:
        return f"shipped {config.weights}"
    return "random"


_WARM = threading.local()


@contextmanager
def warm_pipelines() -> Iterator[None]:
    """Keep the pipeline `run_generate` loads in this thread for its next calls (a server worker).

    Loading a model costs seconds (miniature) to minutes (5B); a worker serving job after job must
    not pay that per job. The cache is per thread, since a pipeline runs one job at a time, and holds
    one pipeline: a job on another preset replaces it rather than doubling the memory.
    """
    previous = getattr(_WARM, "pipelines", None)
    _WARM.pipelines = {} if previous is None else previous
    try:
        yield
    finally:
        _WARM.pipelines = previous


def load_pipeline(request: ModelRequest, config: SoulConfig) -> tuple[SoulPipeline, list[Path]]:
    """`_load_pipeline`, served from the thread's warm cache inside `warm_pipelines()`."""
    cache: dict[tuple[Any, ...], tuple[SoulPipeline, list[Path]]] | None = getattr(_WARM, "pipelines", None)
    if cache is None:
        return _load_pipeline(request, config)
    key = (request.preset, str(request.checkpoint), request.device, request.dtype, request.cpu_offload, config.model_dump_json())
    if key not in cache:
        cache.clear()  # drop the old pipeline before building the new one: one model in memory
        cache[key] = _load_pipeline(request, config)
    return cache[key]


def _load_pipeline(request: ModelRequest, config: SoulConfig) -> tuple[SoulPipeline, list[Path]]:
    """The pipeline a request runs on, and the weight files whose content identifies its frames.

    `--checkpoint` wins; else the preset's shipped weights (`weights:`), which must be installed
    (a preset that names trained weights must not silently fall back to random ones); else random
    weights for presets built from config only (tiny); else the preset needs a download.
    """
    import torch

    from soul.pipelines.soul_pipeline import SoulPipeline

    if request.checkpoint is not None:
        pipe = SoulPipeline.from_pretrained(request.checkpoint, preset=config, torch_dtype=getattr(torch, request.dtype), device=request.device)
        return pipe, sorted(p for p in Path(request.checkpoint).rglob("*.json") if p.is_file())
    if config.weights is not None:
        from soul.models.shipped import shipped_files
        from soul.pipelines.shipped import load_shipped_pipeline

        pipe = load_shipped_pipeline(config.weights, device=request.device, preset=config)
        return pipe, list(shipped_files(config.weights))
    if config.hub.backbone is None:  # a preset built from its config (tiny): random weights
        return SoulPipeline.from_preset(config, seed=0, device=request.device), []
    if config.sampling.sampler == "x0" or not config.sampling.guidance:  # sampling made for a distilled student
        raise InputError(
            f"--preset {request.preset}",
            "samples like a distilled student and needs its weights",
            "pass --checkpoint DIR holding a step/CFG-distilled student (soul distill steps|cfg; docs/speed.md)",
        )
    raise InputError(
        f"--preset {request.preset}",
        "needs downloaded weights",
        f"run `soul download --preset {request.preset}`, then pass --checkpoint DIR",
    )
