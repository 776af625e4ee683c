"""Long video at the tiny preset: peak memory and time at 1 and 10 minutes, and chunk-border smoothness.

What it shows (issue 4's acceptance numbers):
- memory is flat in video length: peak RSS of a 10-minute run over a 1-minute run (target <= 1.3);
- time grows linearly: 10-minute over 1-minute wall time (target <= 12);
- chunk borders do not jump: the mean absolute difference between consecutive frames across a
  chunk border, over the same between consecutive frames inside chunks (target <= 2).

Each length runs `run_generate` (the path of `soul generate`) in its own child process, so the peak
RSS (the kernel's VmHWM, whole process: models, audio, encoder, writer) is that run's alone. The
audio is real speech from ../shared/media repeated to length (or the miniature world's synthetic
babble when that folder is absent). Frame differences are measured on the written MP4, streaming,
so the measurement itself stays flat too. Run:

    .venv/bin/python benchmarks/long_video.py            # 1 and 10 minutes
    .venv/bin/python benchmarks/long_video.py --minutes 1 3 --steps 2   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import wave
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"


def _peak_rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _write_speech(path: Path, seconds: float) -> None:
    """Mono 16 kHz speech of the given length, written as 16-bit WAV in pieces (no big array)."""
    rate = 16000
    source = MEDIA / "audio" / "hallo_3.wav"
    if source.is_file():
        from soul.media.audio import load_audio

        base = load_audio(source, rate, normalize=False).samples
    else:
        from soul.miniature.speech import synthesize_babble

        base = np.asarray(synthesize_babble(15.0, seed=0).samples, dtype=np.float32)
    pcm = (np.clip(base, -1, 1) * 32767).astype("<i2").tobytes()
    total = int(round(seconds * rate))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        written = 0
        while written < total:
            n = min(len(pcm) // 2, total - written)
            w.writeframes(pcm[: 2 * n])
            written += n


def _portrait(tmp: Path) -> Path:
    source = MEDIA / "portraits" / "hallo_6.jpg"
    if source.is_file():
        return source
    from soul.miniature.portrait import draw_portrait

    path = tmp / "portrait.png"
    draw_portrait(seed=0).save(path)
    return path


def child(args: argparse.Namespace) -> None:
    """One run in this process; prints a JSON line with time, peak RSS and the chunk records."""
    import torch

    torch.set_num_threads(args.threads)
    from soul.jobs.generate import build_request, run_generate

    request = build_request(
        preset="tiny", image=Path(args.image), audio=[Path(args.audio)], output=Path(args.output), steps=args.steps, seed=0,
        resume=False, codebook=not args.no_codebook,
    )
    result = run_generate(request)
    print(json.dumps({"seconds": result.seconds, "peak_rss": _peak_rss_bytes(), "frames": result.num_frames,
                      "fps": result.fps, "chunks": result.chunks}))


def border_smoothness(video: Path, chunks: list[dict[str, Any]]) -> dict[str, float]:
    """Mean |frame t - frame t-1| at chunk borders (t = a chunk's first frame) and elsewhere."""
    from soul.media.video import read_video

    borders, starts = set(), 0
    for c in chunks:
        if c["index"] > 0:
            borders.add(starts)
        starts += c["frames"]
    at_border, inside = [], []
    prev = None
    for t, frame in enumerate(read_video(video)):
        cur = frame.astype(np.int16)
        if prev is not None:
            (at_border if t in borders else inside).append(float(np.abs(cur - prev).mean()))
        prev = cur
    b, w = float(np.mean(at_border)), float(np.mean(inside))
    return {"border_mad": b, "within_mad": w, "ratio": b / w if w else float("inf"), "borders": len(at_border)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs=2, default=[1.0, 10.0], help="short and long lengths")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (tiny preset default when omitted)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-codebook", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--image", help=argparse.SUPPRESS)
    parser.add_argument("--audio", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    runs = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        image = _portrait(tmp)
        for minutes in args.minutes:
            audio, output = tmp / f"speech-{minutes:g}min.wav", tmp / f"video-{minutes:g}min.mp4"
            _write_speech(audio, minutes * 60)
            cmd = [sys.executable, __file__, "--child", "--image", str(image), "--audio", str(audio), "--output", str(output),
                   "--threads", str(args.threads)]
            if args.steps:
                cmd += ["--steps", str(args.steps)]
            if args.no_codebook:
                cmd.append("--no-codebook")
            res = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if res.returncode != 0:
                sys.exit(f"{minutes} min run failed:\n{res.stderr[-3000:]}")
            run = json.loads(res.stdout.strip().splitlines()[-1])
            run["smoothness"] = border_smoothness(output, run["chunks"])
            replaced = [c["replaced_fraction"] for c in run["chunks"] if c["replaced_fraction"] is not None]
            run["replaced_mean"] = float(np.mean(replaced)) if replaced else None
            runs[minutes] = run
            s = run["smoothness"]
            print(f"{minutes:>5g} min: {run['frames']} frames, {len(run['chunks'])} chunks, {run['seconds']:.1f} s, "
                  f"peak RSS {run['peak_rss'] / 2**20:.0f} MiB, border/within frame MAD {s['border_mad']:.2f}/{s['within_mad']:.2f} "
                  f"= {s['ratio']:.2f}, codebook replaced {run['replaced_mean']}", flush=True)
    short, long_ = (runs[m] for m in args.minutes)
    mem = long_["peak_rss"] / short["peak_rss"]
    tim = long_["seconds"] / short["seconds"]
    worst = max(r["smoothness"]["ratio"] for r in runs.values())
    print(f"memory ratio {mem:.3f} (target <= 1.3)  time ratio {tim:.2f} (target <= 12)  "
          f"border/within frame difference {worst:.2f} (target <= 2)")
    print(json.dumps({"memory_ratio": mem, "time_ratio": tim, "border_ratio": worst,
                      "runs": {str(k): {kk: v for kk, v in r.items() if kk != "chunks"} for k, r in runs.items()}}))


if __name__ == "__main__":
    main()
