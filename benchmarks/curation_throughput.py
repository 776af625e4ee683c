"""Throughput of each `soul data` stage at 720p, in seconds of video per second per core.

Usage: python benchmarks/curation_throughput.py [VIDEO ...]
Without arguments it uses the talking clips of ../shared/media/clips. Each clip is first resized
to 1280x720 (the resolution the numbers are quoted at) and written to a temporary MP4; then every
stage runs on one core (torch and OpenCV limited to one thread), timed separately.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import cv2
import torch

from soul.curation.config import CurationConfig
from soul.curation.stages import CLIP_STAGES, ClipContext, _analyzer, _resize_max_side, _write_clip_files, plan_source
from soul.media.video import read_video, write_video

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = [ROOT.parent / "shared" / "media" / "clips" / f"{n}.mp4" for n in ("talking_face_1", "talking_upper_body_host", "two_people_left_speaks")]


def to_720p(src: Path, folder: Path) -> Path:
    reader = read_video(src)
    frames = (cv2.resize(f, (1280, 720), interpolation=cv2.INTER_AREA) for f in reader.frames())
    audio = reader.read_audio(48000) if reader.has_audio else None
    return write_video(folder / f"{src.stem}_720p.mp4", frames, reader.fps_fraction, audio=audio)


def main(paths: list[Path]) -> None:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    cfg = CurationConfig()
    timing: dict[str, float] = defaultdict(float)
    video_s = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for src in paths:
            clip = to_720p(src, folder)
            t = time.perf_counter()
            plans = [p for p in plan_source(clip, cfg) if p.get("kept")]
            timing["probe+shots"] += time.perf_counter() - t
            for rec in plans:
                video_s += rec["duration_s"]
                t = time.perf_counter()
                reader = read_video(rec["source_path"])
                frames = [_resize_max_side(f, 720) for f in reader.frames(rec["start_frame"], rec["end_frame"])]
                audio = reader.read_audio(16000).slice(rec["start_s"], rec["end_s"]).samples if reader.has_audio else None
                timing["decode"] += time.perf_counter() - t
                ctx = ClipContext(frames=frames, fps=rec["fps"], audio=audio, sample_rate=16000, analyzer=_analyzer(cfg.people.detect_max_side))
                for name, stage in CLIP_STAGES:
                    t = time.perf_counter()
                    stage(ctx, rec, cfg)
                    timing[name] += time.perf_counter() - t
                t = time.perf_counter()
                _write_clip_files(rec, reader, audio, cfg, folder / "out")
                timing["write clip"] += time.perf_counter() - t
    total = sum(timing.values())
    print(f"{video_s:.1f} s of 720p video, one core")
    print(f"{'stage':<14} {'seconds':>8} {'video s / s / core':>20}")
    for name, secs in list(timing.items()) + [("TOTAL", total)]:
        print(f"{name:<14} {secs:8.2f} {video_s / secs if secs > 0 else float('inf'):20.2f}")


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]] or DEFAULT)
