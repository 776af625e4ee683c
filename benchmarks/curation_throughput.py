"""Throughput of `soul data annotate` at 720p on one core, and how it grows with source length.

Usage: python benchmarks/curation_throughput.py [--core N] [--minutes 1 10]

Sources are built at benchmark time in a temporary folder from the real talking clips of
../shared/media/clips (three talking faces, the TV host, the two-person clip): each clip is fitted
into 1280x720 (letterboxed, never stretched), brought to 25 fps and encoded once as H.264
(x264 preset medium, CRF 23, a keyframe every 2 s: an ordinary web video) with its own sound;
the 24-second unit is then repeated, by copying its packets, into a 1-minute and a 10-minute
source (AAC 48 kHz audio), so both have the same content density: a cut every ~5 s.

Each source is annotated by the real entry point (`soul.curation.annotate`, local engine, one
worker, every default stage on: quality, people, speech, DNSMOS, sync, motion, caption, clip
writing, manifest and shards) in this process, pinned to one core (torch, OpenCV and
onnxruntime at one thread; FFmpeg's threads share the same core). Start-up (imports, model
loading) is inside the timed runs: the figures are what a worker sees. The last two lines are

  curation_realtime_factor 720p: X       seconds of video annotated per second per core (10-min source)
  long_source_time_ratio 10min/1min: Y   time for the 10-minute source over the 1-minute one
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media" / "clips"
CLIPS = ("talking_face_1", "talking_face_2", "talking_upper_body_host", "two_people_left_speaks", "talking_face_3")
FPS = 25
SIZE = (1280, 720)
AUDIO_RATE = 48000


def _fit(frame, size):  # noqa: ANN001, ANN202 - numpy arrays
    """Fit a frame into `size` keeping its aspect ratio, on black (letter/pillarbox)."""
    import cv2
    import numpy as np

    w, h = size
    s = min(w / frame.shape[1], h / frame.shape[0])
    nw, nh = round(frame.shape[1] * s) // 2 * 2, round(frame.shape[0] * s) // 2 * 2
    img = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    out = np.zeros((h, w, 3), np.uint8)
    y, x = (h - nh) // 2, (w - nw) // 2
    out[y : y + nh, x : x + nw] = img
    return out


def build_unit(folder: Path, seconds: int = 60) -> tuple[Path, object]:
    """The real clips back to back (looped, the last one cut) for exactly `seconds` at 720p / 25 fps.

    Returns a video-only H.264 file and its sound (Audio).
    """
    import av
    import numpy as np

    from soul.media.audio import Audio, load_audio
    from soul.media.video import read_video

    path = folder / "unit.mp4"
    sound = []
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = *SIZE, "yuv420p"
        stream.options = {"crf": "23", "preset": "medium", "x264-params": f"keyint={2 * FPS}:min-keyint={FPS}"}
        index, total, turn = 0, seconds * FPS, 0
        while index < total:
            name = CLIPS[turn % len(CLIPS)]
            turn += 1
            reader = read_video(MEDIA / f"{name}.mp4")
            frames = list(reader.frames())
            count = min(int(len(frames) / reader.fps * FPS), total - index)
            for k in range(count):  # nearest source frame at 25 fps
                rgb = _fit(frames[min(len(frames) - 1, int(k * reader.fps / FPS))], SIZE)
                vf = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
                vf.pts = index
                index += 1
                out.mux(stream.encode(vf))
            audio = load_audio(MEDIA / f"{name}.mp4", AUDIO_RATE, normalize=False).samples
            want = count * AUDIO_RATE // FPS
            sound.append(np.pad(audio[:want], (0, max(0, want - audio.shape[0]))))
        out.mux(stream.encode(None))
    return path, Audio(np.concatenate(sound).astype(np.float32), AUDIO_RATE)


def build_source(unit: Path, sound, seconds: float, path: Path) -> Path:  # noqa: ANN001
    """`unit` repeated (packets copied, every repeat starts on a keyframe) to `seconds`, with AAC sound."""
    import av
    import numpy as np

    with av.open(str(unit)) as src:
        packets = [(p.pts, p.dts, p.is_keyframe, bytes(p)) for p in src.demux(src.streams.video[0]) if p.size]
        template = src.streams.video[0]
        unit_frames = len(packets)
        repeats = max(1, round(seconds * FPS / unit_frames))  # the unit is one minute long
        with av.open(str(path), "w") as out:
            vs = out.add_stream_from_template(template)
            vs.time_base = template.time_base
            a = out.add_stream("aac", rate=AUDIO_RATE)
            a.layout = "mono"
            ticks = int(round(unit_frames / FPS / template.time_base))
            for r in range(repeats):
                for pts, dts, key, data in packets:
                    p = av.Packet(data)
                    p.pts, p.dts, p.is_keyframe, p.stream = pts + r * ticks, dts + r * ticks, key, vs
                    p.time_base = template.time_base
                    out.mux(p)
            samples = np.tile(sound.samples, repeats)
            pts = 0
            for start in range(0, samples.shape[0], 1024):
                chunk = samples[start : start + 1024]
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk[None]), format="flt", layout="mono")
                frame.sample_rate, frame.pts = AUDIO_RATE, pts
                pts += chunk.shape[0]
                out.mux(a.encode(frame))
            out.mux(a.encode(None))
    return path


def run(source: Path, out: Path) -> tuple[float, float, dict[str, float]]:
    """Annotate one source; (seconds taken, seconds of video, per-step seconds)."""
    from soul.curation import annotate
    from soul.curation import stages
    from soul.media.video import read_video

    stages.STAGE_SECONDS.clear()
    t = time.perf_counter()
    summary = annotate([source], out, workers=1)
    took = time.perf_counter() - t
    steps = dict(stages.STAGE_SECONDS)
    steps["manifest+shards"] = max(0.0, took - sum(steps.values()))
    assert summary["clips"] > 0 and summary["kept"] > 0, summary
    return took, read_video(source).duration, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--core", type=int, default=None, help="CPU to pin to (default: the last allowed one)")
    parser.add_argument("--sources", type=Path, default=None, help="keep the built sources here and reuse them")
    args = parser.parse_args()
    allowed = sorted(os.sched_getaffinity(0))
    core = args.core if args.core is not None else allowed[-1]
    os.sched_setaffinity(0, {core})  # everything below, FFmpeg's threads included, shares one core
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    if not MEDIA.is_dir():
        sys.exit(f"{MEDIA} is missing: the benchmark builds its sources from the real clips there")
    with tempfile.TemporaryDirectory(prefix="soul-curation-bench-") as tmp:
        folder = Path(tmp)
        keep = args.sources or folder
        keep.mkdir(parents=True, exist_ok=True)
        short, long = keep / "source_1min.mp4", keep / "source_10min.mp4"
        t = time.perf_counter()
        if not (short.is_file() and long.is_file()):
            unit, sound = build_unit(folder)
            build_source(unit, sound, 60, short)
            build_source(unit, sound, 600, long)
        print(f"sources ready in {time.perf_counter() - t:.1f} s (not timed below); pinned to core {core}", flush=True)
        t1, v1, _ = run(short, folder / "out_1min")
        print(f"1-minute source: {v1:.1f} s of video in {t1:.1f} s", flush=True)
        t10, v10, steps = run(long, folder / "out_10min")
        print(f"10-minute source: {v10:.1f} s of video in {t10:.1f} s", flush=True)
    print(f"\nper step, 10-minute source ({v10:.0f} s of 1280x720 25 fps video, one core):")
    print(f"{'step':<16} {'seconds':>8} {'share':>6} {'video s / s':>12}")
    for name, secs in sorted(steps.items(), key=lambda kv: -kv[1]) + [("TOTAL", t10)]:
        rate = f"{v10 / secs:12.1f}" if secs > 0 else f"{'-':>12}"
        print(f"{name:<16} {secs:8.2f} {secs / t10:6.1%} {rate}")
    from soul.curation.stages import CLIP_WRITES

    print(f"kept clips written: {CLIP_WRITES['copied']} copied packet for packet, {CLIP_WRITES['re-encoded']} re-encoded (both runs)")
    print(f"curation_realtime_factor 720p: {v10 / t10:.2f}")
    print(f"long_source_time_ratio 10min/1min: {t10 / t1:.2f}")


if __name__ == "__main__":
    main()
