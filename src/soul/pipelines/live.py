"""Live generation: the long-video driver, fed by audio that arrives over time (DESIGN 9, "Live").

A live session cannot plan its chunks from the audio's length: it learns the length when the audio
stops. So each chunk is planned by the same rule as offline (``soul.sampling.chunks.next_chunk``)
and made as soon as it is certain to be what an offline run of the whole audio would make:

- the chunk is not the last one, whatever the final length turns out to be (the audio received so
  far already reaches past it), so it has its full size and its audio windows are not clamped at
  the video's end;
- every track has received the samples its features read (``ChunkAudio.needed``: the chunk's
  windows, plus ``audio_lookahead``, the only look into the future the session waits for).

When the audio ends, the remaining chunks are planned with the length known and made at once.
Features, noise seeds, the anchor, the motion prefix, the codebook and the causal decoder are those
of ``generate_long_video``; with the same settings (``audio_norm: causal``, the same chunk layout and
lookahead) the frames equal an offline run's, bit for bit (tested). Memory is flat in the session's
length: the tracks forget the audio no later chunk reads, and everything else is per chunk or fixed.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from soul.models.audio_encoder import frames_for_duration, video_frames_for_duration
from soul.pipelines.chunk_audio import GrowingTrack
from soul.pipelines.long_video import ChunkConditions, FramesSink, LatentSequence, chunk_audio, chunk_windows, sample_chunk
from soul.sampling.chunks import TEMPORAL, ChunkPlan, chunk_seed, next_chunk
from soul.sampling.settings import SamplingSettings

if TYPE_CHECKING:
    from soul.pipelines.soul_pipeline import SoulPipeline

UNBOUNDED = 2**62
"""The video's frame count while the audio has not ended: no cut, no clamping."""


class LiveVideo:
    """Chunks made as their audio arrives: ``push`` audio, ``make_ready`` chunks, ``end``, ``finish``.

    Frames go to ``sink`` as each chunk is decoded. ``settings.audio_norm`` must be ``causal``:
    a session never has the whole track whose statistics the offline default uses.
    """

    def __init__(
        self,
        pipe: SoulPipeline,
        conditions: ChunkConditions,
        *,
        settings: SamplingSettings,
        seed: int,
        sink: FramesSink,
        num_streams: int = 1,
    ) -> None:
        if settings.audio_norm != "causal":
            raise ValueError("a live session needs settings.audio_norm == 'causal' (it never has the whole track)")
        cfg = pipe.config
        lat_h, lat_w = settings.height // cfg.vae.scale_factor_spatial, settings.width // cfg.vae.scale_factor_spatial
        anchor = conditions.anchor.to(device=pipe.device, dtype=torch.float32)
        if tuple(anchor.shape) != (1, cfg.vae.z_dim, 1, lat_h, lat_w):
            raise ValueError(f"anchor {tuple(anchor.shape)} must be [1, {cfg.vae.z_dim}, 1, {lat_h}, {lat_w}]")
        self.pipe, self.conditions, self.settings, self.seed = pipe, conditions, settings, int(seed)
        self.tracks = [GrowingTrack() for _ in range(num_streams)]
        self.audio = chunk_audio(pipe, self.tracks, settings)
        self.sequence = LatentSequence(pipe, anchor, settings, self.seed, UNBOUNDED, sink)
        self.sample_rate = pipe.audio_encoder.sample_rate
        self.first_latents = None if settings.first_chunk_frames is None else (settings.first_chunk_frames - 1) // TEMPORAL + 1
        self.index = 0  # the next chunk
        self.done = 0  # latents in the sequence
        self.total: int | None = None  # latents of the whole video, once the audio has ended
        self.video_frames: int | None = None
        self.chunks_made = 0
        self.last_record: dict[str, Any] | None = None  # only the last: a session's memory must not grow with its length

    # ------------------------------------------------------------------------------ audio in

    @property
    def received_seconds(self) -> float:
        """Audio received on the longest track."""
        return max(t.received for t in self.tracks) / self.sample_rate

    @property
    def ended(self) -> bool:
        return self.total is not None

    def push(self, samples: np.ndarray, stream: int = 0) -> None:
        """Add 16 kHz mono samples to track ``stream``."""
        if self.ended:
            raise ValueError("the session's audio has ended")
        self.tracks[stream].append(samples)

    def end(self) -> None:
        """The audio is complete: the video's length is now known and the last chunks can be planned."""
        if self.ended:
            return
        for t in self.tracks:
            t.end()
        seconds = max(self.received_seconds, 1.0 / self.settings.fps)  # a session with no audio still shows the portrait
        self.video_frames = video_frames_for_duration(seconds, self.settings.fps)
        self.total = (frames_for_duration(seconds, self.settings.fps) - 1) // TEMPORAL + 1
        self.sequence.video_frames = self.video_frames

    # ------------------------------------------------------------------------------ chunks out

    def _next(self) -> tuple[ChunkPlan, int, int] | None:
        """The next chunk, the video length its windows are clamped to and the samples it waited
        for, if it can be made now."""
        if self.total is not None:
            if self.done >= self.total:
                return None
            plan = next_chunk(self.index, self.done, self.settings.chunk_latents, self.settings.motion_latents, first_latents=self.first_latents, total=self.total)
            return plan, TEMPORAL * (self.total - 1) + 1, max(t.received for t in self.tracks)
        received = max(t.received for t in self.tracks)
        if received == 0:
            return None
        # The length if the audio stopped now; it can only grow, so a chunk that is not the last
        # under it is not the last under the final one either.
        total_now = (frames_for_duration(received / self.sample_rate, self.settings.fps) - 1) // TEMPORAL + 1
        plan = next_chunk(self.index, self.done, self.settings.chunk_latents, self.settings.motion_latents, first_latents=self.first_latents)
        made = 1 + plan.new_latents if plan.index == 0 else plan.new_latents
        if total_now <= self.done + made:
            return None
        frames = TEMPORAL * (total_now - 1) + 1
        needed = self.audio.needed(chunk_windows(self.pipe, plan, frames))
        if any(t.received < needed for t in self.tracks):
            return None
        return plan, frames, needed

    def ready(self) -> bool:
        """Whether the next chunk can be made with the audio received so far."""
        return self._next() is not None

    @property
    def complete(self) -> bool:
        """The audio has ended and every chunk is made."""
        return self.total is not None and self.done >= self.total

    def make_chunk(self) -> dict[str, Any] | None:
        """Make the next chunk if it can be made; its record, or None.

        ``audio_needed`` in the record is the sample count the chunk waited for (all of the audio
        for the chunks made after the end): what a session's latency is measured from.
        """
        nxt = self._next()
        if nxt is None:
            return None
        plan, frames, needed = nxt
        started = time.perf_counter()
        prefix, report = self.sequence.prefix(plan)
        out = sample_chunk(
            self.pipe, plan, prefix, self.audio, self.conditions, self.settings,
            torch.Generator("cpu").manual_seed(chunk_seed(self.seed, plan.index)), total_frames=frames,
        )
        sampled = time.perf_counter()
        new = out if plan.index == 0 else out[:, :, 1 + plan.motion :]
        emitted = self.sequence.emitted
        last = self.total is not None and self.done + new.shape[2] >= self.total
        self.sequence.append(plan, new, last_chunk=last and plan.index == 0)
        self.done += new.shape[2]
        self.index += 1
        record = {
            "index": plan.index, "new_latents": plan.new_latents, "motion_latents": plan.motion,
            "first_frame": emitted, "frames": self.sequence.emitted - emitted,
            "audio_needed": needed, "audio_received_s": round(self.received_seconds, 4), "seconds": round(time.perf_counter() - started, 4),
            # the latency budget: audio features, transformer steps, then decode + whatever the sink does
            "audio_s": round(self.audio.last_seconds, 4), "transformer_s": round(sampled - started - self.audio.last_seconds, 4),
            "decode_and_sink_s": round(time.perf_counter() - sampled, 4),
            "replaced_fraction": None if report is None else report.replaced_fraction,
        }
        self.chunks_made += 1
        self.last_record = record
        self._forget()
        return record

    def _forget(self) -> None:
        """Drop the audio that no later chunk (nor the causal statistics) reads."""
        if self.total is not None:
            return
        plan = next_chunk(self.index, self.done, self.settings.chunk_latents, self.settings.motion_latents, first_latents=self.first_latents)
        keep = self.audio.keep_from(chunk_windows(self.pipe, plan, UNBOUNDED))
        for t in self.tracks:
            t.forget_before(keep)

    def make_ready(self) -> list[dict[str, Any]]:
        """Make every chunk the audio received so far allows."""
        made = []
        while (record := self.make_chunk()) is not None:
            made.append(record)
        return made

    def finish(self) -> list[dict[str, Any]]:
        """End the audio and make the remaining chunks."""
        self.end()
        return self.make_ready()

    @property
    def emitted(self) -> int:
        return self.sequence.emitted


__all__ = ["LiveVideo", "UNBOUNDED"]
