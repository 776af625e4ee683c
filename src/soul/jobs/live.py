"""A live session: a portrait and a prompt once, then audio in over time and a fragmented MP4 out.

The shared path of `soul live` and the server's `/v1/live` sessions. Everything expensive that does
not depend on the audio (the model, the portrait's latent, the prompt) happens when the session
opens, before the first audio arrives; after that the session only makes chunks
(``soul.pipelines.live.LiveVideo``) and encodes them (``soul.media.live_stream.LiveMP4Stream``).

The session is synchronous and not thread-safe: a driver feeds it (``feed``), asks it to make what
the audio allows (``step``) and ends it (``finish``), all from one thread. Timing is measured
against the moment each piece of audio was fed, so a driver that feeds at real-time pace (a file
read as a microphone would deliver it, a browser's WebSocket) gets the latencies a viewer sees.
"""

from __future__ import annotations

import bisect
import queue
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from soul.config import MODEL_SAMPLE_RATE
from soul.errors import InputError, SoulWarning
from soul.media.image import load_image
from soul.media.live_stream import UnitKind

LIVE_PRESET = "mini-fast"
LIVE_CHUNK_FRAMES = 13
"""A live chunk: anchor + 2 motion latents + 1 new latent = 4 new frames (0.25 s at 16 fps)."""
LIVE_FIRST_CHUNK_FRAMES = 5
"""The first chunk: the portrait frame + 1 new latent, so the first frames need 0.3 s of audio."""
LIVE_AUDIO_LOOKAHEAD = 0.25
"""Seconds of audio past a chunk its features may see: every one of them is a second of latency."""


class LiveRequest(BaseModel):
    """How a live session animates: the portrait, the model and the chunk layout (None = preset / live default)."""

    model_config = ConfigDict(extra="forbid")

    image: Path
    prompt: str = ""
    negative_prompt: str = ""
    preset: str = LIVE_PRESET
    checkpoint: Path | None = None
    seed: int = 0
    height: int | None = None
    width: int | None = None
    fps: int | None = None
    steps: int | None = None
    chunk_frames: int = Field(LIVE_CHUNK_FRAMES, ge=5)
    first_chunk_frames: int | None = Field(LIVE_FIRST_CHUNK_FRAMES, ge=5)
    motion_latents: int | None = Field(None, ge=0)
    audio_lookahead: float = Field(LIVE_AUDIO_LOOKAHEAD, ge=0.0)
    codebook: bool | None = None
    vae: Literal["full", "light"] | None = None
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    cpu_offload: bool = False


def build_live_request(**fields: Any) -> LiveRequest:
    """A request from CLI/HTTP fields, turning validation failures into one-line input errors."""
    from soul.jobs.generate import validated

    return validated(LiveRequest, "live", fields)


class _Arrivals:
    """When each stretch of audio arrived, for the chunks that waited for it (bounded: old stretches are dropped)."""

    def __init__(self) -> None:
        self.ends: deque[int] = deque()
        self.times: deque[float] = deque()

    def add(self, end_sample: int, at: float) -> None:
        self.ends.append(end_sample)
        self.times.append(at)

    def time_of(self, sample: int) -> float:
        """Arrival time of the piece that brought sample ``sample - 1`` (the last one needed)."""
        i = bisect.bisect_left(self.ends, sample)
        return self.times[min(i, len(self.times) - 1)]

    def forget_before(self, sample: int) -> None:
        while len(self.ends) > 1 and self.ends[1] < sample:
            self.ends.popleft()
            self.times.popleft()


class LatencyHistogram:
    """Latencies in 1 ms bins up to 60 s (and the exact maximum): percentiles in constant memory.

    A session of any length keeps these 60,000 counts, not one number per chunk.
    """

    BIN_S = 0.001
    BINS = 60_000

    def __init__(self) -> None:
        self.counts = np.zeros(self.BINS + 1, dtype=np.int64)  # the last bin: 60 s and more
        self.max = 0.0

    def add(self, seconds: float) -> None:
        self.counts[min(self.BINS, max(0, int(seconds / self.BIN_S)))] += 1
        self.max = max(self.max, seconds)

    def percentile(self, q: float) -> float | None:
        """The upper edge of the bin holding the q-th percentile (within 1 ms above the true value)."""
        total = int(self.counts.sum())
        if total == 0:
            return None
        k = int(np.searchsorted(np.cumsum(self.counts), max(1, int(np.ceil(q / 100 * total)))))
        return round(min((k + 1) * self.BIN_S, self.max), 4)


@dataclass
class LiveStats:
    """What a session measured; ``summary()`` is the JSON of `soul live --json` and the server's record."""

    opened_s: float = 0.0
    started: float | None = None  # when the first sample was spoken: its piece's arrival minus the piece's length (perf_counter)
    first_frame_at: float | None = None
    busy_s: float = 0.0
    audio_s: float = 0.0
    frames: int = 0
    fps: float = 16.0
    latencies: LatencyHistogram = field(default_factory=lambda: LatencyHistogram())
    chunks: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    first_chunk: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        lat = self.latencies
        video_s = self.frames / self.fps
        return {
            "open_seconds": round(self.opened_s, 3),
            "first_frame_latency_s": None if self.first_frame_at is None or self.started is None else round(self.first_frame_at - self.started, 4),
            "realtime_factor": None if self.busy_s <= 0 else round(video_s / self.busy_s, 3),
            "video_seconds": round(video_s, 4),
            "audio_seconds": round(self.audio_s, 4),
            "frames": self.frames,
            "chunks": self.chunks,
            "busy_seconds": round(self.busy_s, 3),
            "stage_seconds_per_chunk": {k: round(v / max(1, self.chunks), 5) for k, v in self.stage_seconds.items()},
            "first_chunk": self.first_chunk,
            "chunk_latency_s": {"p50": lat.percentile(50), "p90": lat.percentile(90), "p99": lat.percentile(99), "max": round(lat.max, 4)},
        }


class LiveSession:
    """One live session: open (model, portrait, prompt), ``feed`` audio, ``step``, ``finish``.

    ``on_unit`` receives the fragmented MP4 as it is made: the init segment once, then media
    segments. ``on_chunk`` receives each chunk's record (with its latency) after its frames are out.
    """

    def __init__(
        self,
        request: LiveRequest,
        on_unit: Callable[[bytes, UnitKind], None],
        *,
        on_chunk: Callable[[dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        from soul.config import load_preset
        from soul.jobs.generate import generation_warnings, load_pipeline
        from soul.media.live_stream import LiveMP4Stream
        from soul.pipelines.live import LiveVideo
        from soul.sampling.settings import resolve_sampling

        began = clock()
        self.request, self.clock, self.on_chunk = request, clock, on_chunk
        image = load_image(request.image)
        config = load_preset(request.preset)
        self.settings = resolve_sampling(
            config, height=request.height, width=request.width, fps=request.fps, steps=request.steps, vae=request.vae,
            chunk_frames=request.chunk_frames, first_chunk_frames=request.first_chunk_frames, motion_latents=request.motion_latents,
            codebook=request.codebook, audio_lookahead=request.audio_lookahead, audio_norm="causal",
        )
        self.notes = generation_warnings(request, config, image)
        for note in self.notes:
            warnings.warn(SoulWarning(note), stacklevel=2)
        pipe, _ = load_pipeline(request, config)
        if request.cpu_offload:
            pipe.enable_model_cpu_offload()
        conditions = pipe.encode_conditions(image, request.prompt, request.negative_prompt, 1, self.settings)
        self._warm_up(pipe, conditions)
        self.stream = LiveMP4Stream(on_unit, self.settings.fps, sample_rate=MODEL_SAMPLE_RATE, size=(self.settings.width, self.settings.height))
        self._encode_s = 0.0
        self.video = LiveVideo(pipe, conditions, settings=self.settings, seed=request.seed, sink=self._encode)
        self.stats = LiveStats(fps=float(self.settings.fps))
        self._arrivals = _Arrivals()
        self._received = 0
        self._end_time: float | None = None
        self.stats.opened_s = clock() - began

    def _warm_up(self, pipe: Any, conditions: Any) -> None:
        """One throwaway second of silence through every stage, before the first audio arrives.

        The first call of each model pays for allocations and kernel choices (measured: the first
        chunk's compute 0.14 s against 0.06 s later); paying it at open takes it off the first frame.
        The session's own chunks use their own noise and state, so their frames are unchanged.
        """
        from soul.pipelines.live import LiveVideo

        throwaway = LiveVideo(pipe, conditions, settings=self.settings, seed=self.request.seed, sink=lambda frames: None)
        throwaway.push(np.zeros(MODEL_SAMPLE_RATE, dtype=np.float32))
        throwaway.finish()

    def _encode(self, frames: np.ndarray) -> None:
        began = self.clock()
        self.stream.write_frames(frames)
        self._encode_s += self.clock() - began

    # ------------------------------------------------------------------------------ audio in

    def feed(self, samples: np.ndarray, at: float | None = None) -> None:
        """16 kHz mono float samples, as they arrive (any piece size); ``at``: when they arrived
        (``clock()`` time; default now), for a driver that queues pieces while a chunk is made."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if x.size and not np.all(np.isfinite(x)):
            raise InputError("audio", "has samples that are not finite numbers", "send 16 kHz mono PCM")
        now = self.clock() if at is None else at
        if self.stats.started is None and x.size:
            # the session starts when its first sample was spoken, a piece's length before it arrived
            self.stats.started = now - x.size / MODEL_SAMPLE_RATE
        self.video.push(x)
        self.stream.write_audio(x)
        self._received += x.size
        self._arrivals.add(self._received, now)

    @property
    def ended(self) -> bool:
        return self.video.ended

    @property
    def complete(self) -> bool:
        return self.video.complete

    # ------------------------------------------------------------------------------ video out

    def step(self) -> dict[str, Any] | None:
        """Make the next chunk if its audio is here; its record (with its latency), or None.

        Latency: from the arrival of the last sample the chunk waited for (for the chunks made
        after the audio ended, from the end) to its frames leaving the stream encoder.
        """
        t0 = self.clock()
        self._encode_s = 0.0
        record = self.video.make_chunk()
        if record is None:
            return None
        done = self.clock()
        self.stats.busy_s += done - t0
        self.stats.frames = self.video.emitted
        self.stats.chunks += 1
        if self.stats.first_frame_at is None and record["frames"]:
            self.stats.first_frame_at = done
        ready_at = self._arrivals.time_of(record["audio_needed"]) if self._arrivals.ends else done
        if self._end_time is not None:
            ready_at = max(ready_at, self._end_time)
        latency = done - ready_at
        self.stats.latencies.add(latency)
        self._arrivals.forget_before(record["audio_needed"])
        stages = {"audio_s": record["audio_s"], "transformer_s": record["transformer_s"],
                  "decode_s": round(record["decode_and_sink_s"] - self._encode_s, 4), "encode_s": round(self._encode_s, 4)}
        for name, value in stages.items():
            self.stats.stage_seconds[name] = self.stats.stage_seconds.get(name, 0.0) + value
        record = dict(record, **stages, latency_s=round(latency, 4), compute_s=round(done - t0, 4), video_time_s=round(self.video.emitted / self.settings.fps, 4))
        if self.stats.chunks == 1:
            self.stats.first_chunk = {"audio_waited_s": round(record["audio_needed"] / MODEL_SAMPLE_RATE, 4), "compute_s": record["compute_s"], **stages}
        if self.on_chunk is not None:
            self.on_chunk(record)
        return record

    def run(self, pieces: queue.Queue[tuple[np.ndarray, float] | None], *, give_up: Callable[[], bool] | None = None, poll_s: float = 0.5) -> None:
        """Feed the session from ``pieces`` (``(samples, arrival time)``; None = the audio is over) and
        make every chunk the audio allows, until None comes (or ``give_up()`` says so while waiting).

        All pieces already queued are fed before chunks are made, so a chunk never waits behind audio
        that has arrived; their arrival times are the driver's, so the latencies stay the viewer's.
        """
        while True:
            try:
                item = pieces.get(timeout=poll_s)  # wait for audio when no chunk can be made
            except queue.Empty:
                if give_up is not None and give_up():
                    return
                continue
            while True:
                if item is None:
                    return
                self.feed(item[0], at=item[1])
                try:
                    item = pieces.get_nowait()
                except queue.Empty:
                    break
            while self.step() is not None:
                pass

    def end(self) -> None:
        """No more audio: the last chunks can be planned."""
        if not self.video.ended:
            self._end_time = self.clock()
            self.stats.audio_s = self._received / MODEL_SAMPLE_RATE
            self.video.end()

    def finish(self) -> dict[str, Any]:
        """End the audio, make the remaining chunks, close the stream; the session's summary."""
        self.end()
        while self.step() is not None:
            pass
        self.stream.close()
        return self.summary()

    def summary(self) -> dict[str, Any]:
        return {
            **self.stats.summary(), "preset": self.request.preset, "seed": self.request.seed,
            "settings": self.settings.as_record(), "warnings": self.notes, "stream_bytes": self.stream.bytes_out,
            "audio_held_seconds": round(max(t.held for t in self.video.tracks) / MODEL_SAMPLE_RATE, 3),
        }


def run_live_file(
    request: LiveRequest,
    audio: Path,
    output: Path | None,
    *,
    realtime: bool = True,
    piece_seconds: float = 0.02,
    on_chunk: Callable[[dict[str, Any]], None] | None = None,
    max_seconds: float | None = None,
) -> dict[str, Any]:
    """Stream an audio file through a session as a microphone would deliver it; the session's summary.

    A feeder thread hands over ``piece_seconds`` of audio at a time, each when its last sample
    would have been recorded (``realtime``; otherwise as fast as the session takes them), stamped
    with that moment; this thread makes chunks whenever their audio is in. The fragmented MP4 goes
    to ``output`` as it is made (playable while it grows; on an error it keeps every whole
    fragment written so far).
    """
    import threading

    from soul.media.audio import load_audio

    if piece_seconds <= 0:
        raise InputError("--piece-ms", f"{piece_seconds * 1000:g}", "use a positive piece length, e.g. 20")
    samples = load_audio(audio, MODEL_SAMPLE_RATE, normalize=False).samples
    if max_seconds is not None:
        samples = samples[: int(round(max_seconds * MODEL_SAMPLE_RATE))]
    if output is not None:
        if output.suffix.lower() != ".mp4":
            raise InputError(output, "a live stream is written as fragmented MP4", "name the output like live.mp4")
        output.parent.mkdir(parents=True, exist_ok=True)
    files: list[Any] = []  # the output, opened by the first unit: a session that fails to open leaves no file

    def write_unit(data: bytes, kind: UnitKind) -> None:
        if output is None:
            return
        if not files:
            files.append(open(output, "wb"))  # noqa: SIM115  (closed below, after the session)
        files[0].write(data)
        files[0].flush()

    try:
        session = LiveSession(request, write_unit, on_chunk=on_chunk)
        pieces: queue.Queue[tuple[np.ndarray, float] | None] = queue.Queue()
        step = max(1, int(round(piece_seconds * MODEL_SAMPLE_RATE)))
        stop = threading.Event()

        def feed() -> None:
            start = time.perf_counter()
            for i in range(0, samples.shape[0], step):
                end = min(samples.shape[0], i + step)
                if realtime:
                    delay = start + end / MODEL_SAMPLE_RATE - time.perf_counter()
                    if delay > 0 and stop.wait(delay):
                        return
                pieces.put((samples[i:end], time.perf_counter()))
            pieces.put(None)

        feeder = threading.Thread(target=feed, name="soul-live-audio", daemon=True)
        feeder.start()
        try:
            session.run(pieces)
        finally:
            stop.set()
            feeder.join()
        return session.finish()
    finally:
        for f in files:
            f.close()


__all__ = ["LIVE_AUDIO_LOOKAHEAD", "LIVE_CHUNK_FRAMES", "LIVE_FIRST_CHUNK_FRAMES", "LIVE_PRESET", "LiveRequest", "LiveSession", "LiveStats", "build_live_request", "run_live_file"]
