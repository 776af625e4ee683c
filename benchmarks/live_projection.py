"""Live throughput and latency of the 5B fast model on 1-8 GPUs: a projection from FLOP counts.

Nothing here runs on a GPU and no 5B student weights exist: every number is a projection from the
FLOPs and bytes `benchmarks/flop_model.py` counts on the real-size modules (meta device), through
its roofline (`GPU`: peak dense bf16, MFU, HBM bandwidth and its utilisation), plus a model of
Ulysses sequence parallelism. The chunk layout is the live one (`soul live`, `soul.jobs.live`):

- chunk 0: `first_chunk_frames` video frames (default 5: anchor + 1 new latent), clean prefix = anchor;
- every later chunk: [anchor | M motion latents | N new latents], chunk_frames = 4 (M + N) + 1,
  clean prefix = 1 + M, adding 4 N video frames; settings from `resolve_sampling` of the
  `wan22-ti2v-5b-fast` preset (4 x0 steps, 1 pass each, light decoder) with audio_norm causal.

Per chunk (one GPU's view): steps x passes transformer forwards at the chunk's latent frames, the
light decoder over the latents the chunk emits (streaming: N; chunk 0: anchor + new), and wav2vec2
over the chunk's audio stretch, taken from `ChunkAudio.span` (the encoder's 2 s context before the
chunk's windows, the windows, `audio_lookahead` after). The audio a chunk waits for is the live
session's own rule (`LiveVideo._next`): `ChunkAudio.needed` of its windows, and enough audio that
the chunk is surely not the last.

On G GPUs (Ulysses degree G, `soul.parallel.ulysses`): the transformer's tokens are split G ways.
Per GPU and pass: FLOPs (total - unsplit) / G + unsplit, where the unsplit part is the text and
audio key/value projections each rank computes in full (`soul.models.info.pass_flops`); HBM
traffic: activations / G + the whole weights (every rank holds and reads all of them); the two
through the same roofline. Communication per pass: 4 all-to-alls per self-attention layer (q, k, v
in, the output back), each of the rank's (S/G) x D bf16 shard with (G-1)/G of it leaving
(`all_to_all_bytes`), plus the all-gather of `proj_out`'s output, at the link bandwidth x its
utilisation, not overlapped with compute. A fixed overhead per transformer step (every G, G = 1
included: launch gaps, the sampler's own work, collective latencies). The decoder and wav2vec2 are
not split and run serially with the transformer on one GPU (no overlap: conservative).

Printed: per size the per-chunk cost, then per size, N and G: seconds per chunk, new video seconds
per chunk, frames per second, realtime factor, first-frame latency (the audio chunk 0 waits for +
chunk 0's compute), the steady lag (how long after its audio is spoken a chunk's first new frame
exists, when realtime), TFLOP per chunk and the shares. The last lines, one per size, are the
fps per GPU count at N = 2. Run (well under a minute, 1 thread):

    .venv/bin/python benchmarks/live_projection.py
    .venv/bin/python benchmarks/live_projection.py --sizes 1280x704 --new-latents 2 --link-gbps 64   # PCIe-class link
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import torch

from soul.jobs.live import LIVE_AUDIO_LOOKAHEAD, LIVE_FIRST_CHUNK_FRAMES
from soul.sampling.settings import DEFAULT_MOTION_LATENTS
from soul.config import load_preset
from soul.models.audio_encoder import SoulAudioEncoder, frames_for_duration
from soul.models.info import pass_flops, token_counts
from soul.models.light_vae import light_vae_config_for
from soul.parallel.ulysses import all_to_all_bytes
from soul.pipelines.chunk_audio import ChunkAudio, GrowingTrack
from soul.pipelines.long_video import chunk_windows
from soul.sampling.chunks import TEMPORAL, ChunkPlan, plan_chunks
from soul.sampling.settings import SamplingSettings, resolve_sampling


def _flop_model() -> ModuleType:
    """benchmarks/flop_model.py, loaded as its sibling scripts load each other (reused if loaded already)."""
    name = "soul_bench_flop_model"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parent / "flop_model.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fm = _flop_model()
GPU, Cost = fm.GPU, fm.Cost
TERA, GIGA = fm.TERA, fm.GIGA

PRESET = "wan22-ti2v-5b-fast"
SMALL_SIZE = (384, 704)
"""(height, width) of the smaller live size: 704x384 (a multiple of the 5B's 32-pixel grid, about the default's 16:9)."""
FIRST_CHUNK_FRAMES = LIVE_FIRST_CHUNK_FRAMES  # the live defaults themselves, so the projection follows them
AUDIO_LOOKAHEAD = LIVE_AUDIO_LOOKAHEAD
MOTION = DEFAULT_MOTION_LATENTS
BYTES_BF16 = 2
SAMPLE_RATE = 16000  # wav2vec2's input rate (checked against the preset's encoder)


@dataclass(frozen=True)
class Interconnect:
    """The GPU-to-GPU link and the fixed overhead per transformer step."""

    name: str = "NVLink 4"
    gbps: float = 450.0  # GB/s per direction per GPU (H100 SXM, NVLink 4)
    util: float = 0.70  # achievable fraction of it in an all-to-all of a few MB
    step_overhead_ms: float = 2.0  # per transformer step, every G: launches, sampler work, collective latencies

    def seconds(self, nbytes: float) -> float:
        return nbytes / (self.gbps * GIGA * self.util)


@dataclass(frozen=True)
class ChunkShape:
    """One chunk of a live session: what the transformer sees, what it emits, the audio it needs."""

    label: str
    plan: ChunkPlan
    clean: int  # clean prefix latents: the anchor, plus the motion latents after chunk 0
    decoded_latents: int  # latents pushed to the streaming decoder (chunk 0: anchor + new)
    new_frames: int  # video frames the chunk adds
    audio_samples: int  # samples wav2vec2 encodes for the chunk
    wait_samples: int  # samples the session must have received before the chunk can start

    @property
    def model_latents(self) -> int:
        return self.plan.model_latents


@dataclass
class ChunkCost:
    """FLOPs and bytes of one chunk, summed over GPUs (`transformer` is one pass)."""

    shape: ChunkShape
    tokens: int
    passes: int  # steps x guidance passes
    transformer: Any  # flop_model.Cost of one pass
    unsplit_flops: float  # FLOPs of one pass every Ulysses rank computes in full
    decode: Any
    audio: Any

    @property
    def flops(self) -> float:
        return self.passes * self.transformer.flops + self.decode.flops + self.audio.flops

    def shares(self) -> tuple[float, float, float]:
        """FLOP fractions: transformer, decoder, audio encoder."""
        total = self.flops
        return self.passes * self.transformer.flops / total, self.decode.flops / total, self.audio.flops / total


@dataclass
class ChunkTime:
    """Projected seconds of one chunk on G GPUs (None when Ulysses cannot split it)."""

    gpus: int
    feasible: bool
    transformer: float = 0.0  # compute (roofline), all steps
    comm: float = 0.0  # all-to-alls + output gather, all steps
    overhead: float = 0.0  # fixed per-step overhead, all steps
    decode: float = 0.0
    audio: float = 0.0
    reason: str = ""

    @property
    def total(self) -> float:
        return self.transformer + self.comm + self.overhead + self.decode + self.audio

    def shares(self) -> tuple[float, ...]:
        t = self.total
        return tuple(x / t for x in (self.transformer, self.comm, self.overhead, self.decode, self.audio))


@dataclass
class Row:
    """One line of the table: a size, a layout N, a GPU count."""

    height: int
    width: int
    fps_video: float
    new_latents: int
    gpus: int
    chunk: ChunkCost
    first: ChunkCost
    time: ChunkTime
    first_time: ChunkTime
    lag: float | None = None  # steady lag when realtime, else None

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"

    @property
    def video_seconds(self) -> float:
        return self.chunk.shape.new_frames / self.fps_video

    @property
    def fps(self) -> float:
        return self.chunk.shape.new_frames / self.time.total

    @property
    def realtime_factor(self) -> float:
        return self.video_seconds / self.time.total

    @property
    def wait_seconds(self) -> float:
        """Audio chunk 0 must have received (seconds from the session's start)."""
        return self.first.shape.wait_samples / SAMPLE_RATE

    @property
    def first_frame_latency(self) -> float:
        return self.wait_seconds + self.first_time.total



@dataclass
class Projector:
    """The 5B fast preset's modules on meta, the roofline, the link; counts each shape once."""

    preset: str = PRESET
    gpu: Any = field(default_factory=GPU)
    link: Interconnect = field(default_factory=Interconnect)
    motion: int = MOTION
    first_chunk_frames: int = FIRST_CHUNK_FRAMES
    lookahead: float = AUDIO_LOOKAHEAD

    def __post_init__(self) -> None:
        self.config = load_preset(self.preset)
        self.models = fm.build_models(self.config, light_vae_config_for(self.config.vae))
        # wav2vec2 on meta only for its geometry (hop, receptive field, context margin): ChunkAudio.span.
        self.encoder = SoulAudioEncoder(self.models.audio, context_frames=self.config.audio.context_frames)
        if self.encoder.sample_rate != SAMPLE_RATE:
            raise ValueError(f"expected a {SAMPLE_RATE} Hz audio encoder, got {self.encoder.sample_rate}")
        self._costs: dict[tuple[Any, ...], Any] = {}

    # ---------------------------------------------------------------------------- layout

    def settings(self, height: int | None, width: int | None, new_latents: int) -> SamplingSettings:
        """The live settings of chunks adding ``new_latents`` after ``motion`` motion latents."""
        return resolve_sampling(
            self.config, height=height, width=width, chunk_frames=TEMPORAL * (self.motion + new_latents) + 1, motion_latents=self.motion,
            first_chunk_frames=self.first_chunk_frames, audio_lookahead=self.lookahead, audio_norm="causal",
        )

    def _wait(self, audio: ChunkAudio, plan: ChunkPlan, fps: float) -> int:
        """Samples received before a live session makes ``plan`` (``LiveVideo._next``'s two conditions)."""
        windows = chunk_windows(SimpleNamespace(audio_encoder=self.encoder), plan, 2**62)  # unclamped, as live before the end
        needed = audio.needed(windows)
        # ... and the audio so far must already make more latents than the chunk leaves done (not the last chunk)
        done_after = plan.first_latent + plan.new_latents

        def latents(samples: int) -> int:
            return (frames_for_duration(samples / SAMPLE_RATE, fps) - 1) // TEMPORAL + 1

        lo, hi = 1, SAMPLE_RATE
        while latents(hi) <= done_after:
            hi *= 2
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if latents(mid) > done_after else (mid + 1, hi)
        return max(needed, lo)

    def shapes(self, s: SamplingSettings) -> tuple[ChunkShape, ChunkShape]:
        """Chunk 0 and a steady chunk (the first whose audio stretch has its whole left context)."""
        audio = ChunkAudio(self.encoder, [GrowingTrack()], s.fps, norm="causal", lookahead=s.audio_lookahead)
        first_latents = (self.first_chunk_frames - 1) // TEMPORAL + 1
        span = self.encoder.context_seconds + 2.0  # seconds of video past which chunks are steady
        total = first_latents + math.ceil(span * s.fps / TEMPORAL) + 2 * s.chunk_latents
        plans = plan_chunks(total, s.chunk_latents, s.motion_latents, first_latents)

        def shape(plan: ChunkPlan, label: str) -> ChunkShape:
            _, start, length = audio.span(chunk_windows(SimpleNamespace(audio_encoder=self.encoder), plan, 2**62))
            decoded = plan.new_latents + (1 if plan.index == 0 else 0)
            return ChunkShape(label, plan, 1 + plan.motion, decoded, plan.video_frames, length, self._wait(audio, plan, s.fps))

        steady = next(p for p in plans[1:-1] if audio.span(chunk_windows(SimpleNamespace(audio_encoder=self.encoder), p, 2**62))[1] > 0)
        return shape(plans[0], f"first ({self.first_chunk_frames} fr)"), shape(steady, f"N={steady.new_latents}")

    # ---------------------------------------------------------------------------- counting

    def _cached(self, key: tuple[Any, ...], make: Any) -> Any:
        if key not in self._costs:
            self._costs[key] = make()
        return self._costs[key]

    def cost(self, s: SamplingSettings, shape: ChunkShape) -> ChunkCost:
        h, w, lat = s.height, s.width, shape.model_latents
        tr = self._cached(("transformer", lat, shape.clean, h, w), lambda: fm.count_transformer(self.models, lat, shape.clean, h, w))
        frames = TEMPORAL * (lat - 1) + 1
        tokens = token_counts(self.config, h, w, frames)
        unsplit = self._cached(("unsplit", lat, h, w), lambda: pass_flops(self.models.transformer, tokens, 1)["context_linear"])
        dec_kind = s.vae
        dec = self._cached(("decode", dec_kind, shape.decoded_latents, h, w), lambda: fm.count_decode(self.models, dec_kind, shape.decoded_latents, h, w))
        aud = self._cached(("audio", shape.audio_samples), lambda: fm.count_audio(self.models, shape.audio_samples / SAMPLE_RATE))
        passes = s.steps * s.guidance.num_passes(has_audio=True)
        return ChunkCost(shape, tokens["video_tokens"], passes, tr, unsplit, dec, aud)

    def session_setup(self, height: int, width: int) -> dict[str, float]:
        """Seconds (one GPU) of the once-per-session work done before the audio starts: not in the latency."""
        enc = self._cached(("encode", height, width), lambda: fm.count_encode(self.models, height, width))
        text = self._cached(("text",), lambda: fm.count_text(self.models))
        return {"portrait encode": self.gpu.seconds(enc)[0], "umT5 prompt": self.gpu.seconds(text)[0]}

    # ---------------------------------------------------------------------------- time

    def comm_bytes(self, tokens: int, gpus: int) -> float:
        """Bytes one rank sends per transformer pass: the self-attention all-to-alls and the output gather."""
        t = self.config.transformer
        a2a = t.num_layers * all_to_all_bytes(batch=1, tokens=tokens, heads=t.num_attention_heads, head_dim=t.attention_head_dim,
                                              degree=gpus, element_size=BYTES_BF16)
        out = self.models.transformer.proj_out.out_features
        return float(a2a + (gpus - 1) * (tokens // gpus) * out * BYTES_BF16)

    def time(self, c: ChunkCost, gpus: int) -> ChunkTime:
        heads = self.config.transformer.num_attention_heads
        if heads % gpus or c.tokens % gpus:
            why = f"ulysses={gpus} does not divide {heads} heads" if heads % gpus else f"ulysses={gpus} does not divide {c.tokens} tokens"
            return ChunkTime(gpus, False, reason=why)
        u = c.transformer
        activations = max(0.0, u.bytes_fused - u.weight_bytes)
        per_rank = Cost(flops=(u.flops - c.unsplit_flops) / gpus + c.unsplit_flops, bytes_fused=activations / gpus + u.weight_bytes)
        return ChunkTime(
            gpus, True,
            transformer=c.passes * self.gpu.seconds(per_rank)[0],
            comm=c.passes * self.link.seconds(self.comm_bytes(c.tokens, gpus)),
            overhead=c.passes * self.link.step_overhead_ms / 1000,
            decode=self.gpu.seconds(c.decode)[0],
            audio=self.gpu.seconds(c.audio)[0],
        )


def project(proj: Projector, sizes: list[tuple[int | None, int | None]], new_latents: tuple[int, ...], gpus: tuple[int, ...]) -> list[Row]:
    """Every (size, N, G) row; ``None`` in a size means the preset's default."""
    rows: list[Row] = []
    for height, width in sizes:
        for n in new_latents:
            s = proj.settings(height, width, n)
            first_shape, steady_shape = proj.shapes(s)
            first, chunk = proj.cost(s, first_shape), proj.cost(s, steady_shape)
            for g in gpus:
                t, t0 = proj.time(chunk, g), proj.time(first, g)
                row = Row(s.height, s.width, float(s.fps), n, g, chunk, first, t, t0)
                if t.feasible and row.realtime_factor >= 1:
                    # the chunk starts when its audio is in (the GPUs are idle by then) and ends a chunk time later
                    row.lag = steady_shape.wait_samples / SAMPLE_RATE - steady_shape.plan.video_start / s.fps + t.total
                rows.append(row)
    return rows


# ------------------------------------------------------------------------------------ report


def _parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(h), int(w)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def print_costs(proj: Projector, rows: list[Row]) -> None:
    seen: set[tuple[int, int, str]] = set()
    print(f"  {'chunk':14s} {'latents':>7s} {'clean':>5s} {'tokens':>6s} {'new fr':>6s} {'TFLOP/pass':>10s} {'passes':>6s} "
          f"{'unsplit':>7s} {'decode TFLOP':>12s} {'audio s':>7s} {'audio TFLOP':>11s} {'TFLOP/chunk':>11s} {'fused GB/pass':>13s} {'weights GB':>10s} {'waits s':>7s}")
    for r in rows:
        for c in (r.first, r.chunk):
            key = (r.height, r.width, c.shape.label)
            if key in seen:
                continue
            seen.add(key)
            sh = c.shape
            waits = sh.wait_samples / SAMPLE_RATE - sh.plan.video_start / r.fps_video
            print(f"  {sh.label:14s} {sh.model_latents:7d} {sh.clean:5d} {c.tokens:6d} {sh.new_frames:6d} {c.transformer.flops / TERA:10.2f} {c.passes:6d} "
                  f"{c.unsplit_flops / TERA:7.2f} {c.decode.flops / TERA:12.3f} {sh.audio_samples / SAMPLE_RATE:7.3f} {c.audio.flops / TERA:11.3f} "
                  f"{c.flops / TERA:11.1f} {c.transformer.bytes_fused / GIGA:13.1f} {c.transformer.weight_bytes / GIGA:10.1f} {waits:7.3f}")


def print_table(rows: list[Row]) -> None:
    print(f"  {'size':9s} {'N':>2s} {'G':>2s} {'chunk s':>8s} {'video s':>8s} {'fps':>6s} {'RTF':>5s} {'first-frame s':>13s} {'lag s':>6s} "
          f"{'TFLOP':>6s} {'FLOP % tr/dec/aud':>17s} {'time % tr/a2a/ovh/dec/aud':>26s}")
    for r in rows:
        if not r.time.feasible:
            print(f"  {r.size:9s} {r.new_latents:2d} {r.gpus:2d}   not possible: {r.time.reason}")
            continue
        fl = "/".join(f"{100 * x:.1f}" for x in r.chunk.shares())
        ts = "/".join(f"{100 * x:.0f}" for x in r.time.shares())
        lag = f"{r.lag:6.2f}" if r.lag is not None else f"{'-':>6s}"
        print(f"  {r.size:9s} {r.new_latents:2d} {r.gpus:2d} {r.time.total:8.3f} {r.video_seconds:8.3f} {r.fps:6.1f} {r.realtime_factor:5.2f} "
              f"{r.first_frame_latency:13.3f} {lag} {r.chunk.flops / TERA:6.0f} {fl:>17s} {ts:>26s}")


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default=PRESET)
    parser.add_argument("--sizes", default=f"default,{SMALL_SIZE[1]}x{SMALL_SIZE[0]}", help="WxH list; 'default' = the preset's size")
    parser.add_argument("--new-latents", type=_ints, default=(1, 2, 3), help="N, new latents per chunk after the first (comma list)")
    parser.add_argument("--gpus", type=_ints, default=(1, 2, 4, 8), help="GPU counts (Ulysses degrees)")
    parser.add_argument("--summary-n", type=int, default=2, help="the N of the last lines")
    parser.add_argument("--motion", type=int, default=MOTION)
    parser.add_argument("--first-chunk-frames", type=int, default=FIRST_CHUNK_FRAMES)
    parser.add_argument("--audio-lookahead", type=float, default=AUDIO_LOOKAHEAD)
    parser.add_argument("--peak-tflops", type=float, default=GPU.peak_tflops)
    parser.add_argument("--mfu", type=float, default=GPU.mfu)
    parser.add_argument("--hbm-tbps", type=float, default=GPU.hbm_tbps)
    parser.add_argument("--bw-util", type=float, default=GPU.bw_util)
    parser.add_argument("--link-gbps", type=float, default=Interconnect.gbps, help="GB/s per direction per GPU (NVLink 4: 450)")
    parser.add_argument("--link-util", type=float, default=Interconnect.util)
    parser.add_argument("--step-overhead-ms", type=float, default=Interconnect.step_overhead_ms)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    gpu = GPU(peak_tflops=args.peak_tflops, mfu=args.mfu, hbm_tbps=args.hbm_tbps, bw_util=args.bw_util)
    link = Interconnect(gbps=args.link_gbps, util=args.link_util, step_overhead_ms=args.step_overhead_ms)
    proj = Projector(args.preset, gpu, link, args.motion, args.first_chunk_frames, args.audio_lookahead)
    sizes: list[tuple[int | None, int | None]] = [(None, None) if v.strip() == "default" else _parse_size(v) for v in args.sizes.split(",")]
    s0 = proj.settings(None, None, args.new_latents[0])
    tr = proj.config.transformer
    print(f"Live projection of {args.preset}: {s0.steps} {s0.sampler} steps x {s0.guidance.num_passes(has_audio=True)} pass, {s0.vae} decoder, "
          f"{s0.fps:g} fps; motion {args.motion} latents, first chunk {args.first_chunk_frames} frames, audio lookahead {args.audio_lookahead:g} s, causal norm")
    print(f"  GPU: {gpu.name}, {gpu.peak_tflops:g} TFLOP/s dense bf16 x MFU {gpu.mfu:.0%}, HBM {gpu.hbm_tbps:g} TB/s x {gpu.bw_util:.0%} (flop_model's roofline)")
    print(f"  Ulysses over G GPUs ({tr.num_attention_heads} heads): {link.name}-class link {link.gbps:g} GB/s per direction x {link.util:.0%}; "
          f"4 all-to-alls x {tr.num_layers} self-attentions per pass, not overlapped; {link.step_overhead_ms:g} ms fixed per step; "
          "weights replicated (each rank reads all of them); decoder and wav2vec2 on one GPU, serial")
    print("  A projection from FLOP counts and a roofline, not a measurement (no GPU here, no 5B student weights).\n")
    rows = project(proj, sizes, args.new_latents, args.gpus)
    for height, width in dict.fromkeys((r.height, r.width) for r in rows):
        mine = [r for r in rows if (r.height, r.width) == (height, width)]
        setup = proj.session_setup(height, width)
        print(f"[{width}x{height}] per-chunk cost (summed over GPUs); session setup before the audio, not in the latency: "
              + ", ".join(f"{k} {1000 * v:.0f} ms" for k, v in setup.items()))
        print_costs(proj, mine)
        print()
    print("  TFLOP/pass: one transformer forward; unsplit: its TFLOP every Ulysses rank computes in full (text/audio keys and values); "
          "waits s: audio past the chunk's first new frame the session must have before it starts (windows + lookahead + wav2vec2 rounding)\n")
    print("Per chunk on G GPUs (lag: audio spoken -> the chunk's first new frame exists, steady state, only when RTF >= 1)")
    print_table(rows)
    print(f"\n(counted in {time.perf_counter() - started:.0f} s)")
    for height, width in dict.fromkeys((r.height, r.width) for r in rows):
        mine = [r for r in rows if (r.height, r.width) == (height, width) and r.new_latents == args.summary_n]
        parts = ", ".join(f"G={r.gpus} {r.fps:.1f}" if r.time.feasible else f"G={r.gpus} -" for r in mine)
        print(f"live_projection {width}x{height} fps_per_gpu_count: {parts} (N={args.summary_n})")
    return rows


if __name__ == "__main__":
    main()
