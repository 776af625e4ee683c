"""Live on this CPU: a long session at real-time pace, its latency, memory and drift (docs/live.md).

One run, in this order (the same held-out drawn face and held-out real speech throughout, as in
benchmarks/miniature_drift.py):

1. **Session** (`soul live` path: `soul.jobs.live.run_live_file`, `--preset` default mini-fast,
   codebook on): `--seconds` (default 600) of speech delivered at real-time pace in 20 ms pieces,
   the fragmented MP4 written as it is made. Per chunk: latency (last audio it waited for in ->
   frames out of the encoder), compute, and the process's resident memory; per minute: the
   latency distribution, the median and highest memory.
2. **Codebook off**: the same session, audio delivered as fast as the session takes it (the frames
   do not depend on delivery timing, only on the audio: `tests/test_live.py`).
3. **Drift per minute** of both streams, read back from their MP4s (`drift_curves`, 10 s
   windows against the first 10 s, averaged per minute): identity distance and face colour dE.
4. **Live vs offline** on the first `--compare-seconds` (default 60): lip sync r of the live stream,
   of `soul generate` with the live layout (`--chunk-frames 13 --first-chunk-frames 5
   --audio-lookahead 0.25 --audio-norm causal`: the same frames up to the two H.264 encodes) and of
   `soul generate` with the preset's own layout (81-frame chunks, whole-track normalisation, 2 s
   look-ahead); each beside its mismatched-audio control (the same video against other speech).
   Pixel difference of the live stream to both offline videos, and to a different seed (control).

Last lines: `first_frame_latency_s`, `realtime_factor`, latency p50/p99/max, memory growth from the
second minute to the end, drift at the end with the codebook on and off, lip sync live/offline.

Run: .venv/bin/python benchmarks/live.py [--seconds 600] [--preset mini-fast] [--out runs/live]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from miniature_drift import PROMPT, held_out_speech  # noqa: E402  (a sibling benchmark: the same face and speech)
from transformer_throughput import _rss_bytes  # noqa: E402  (its reading of /proc/self/statm)

from soul.jobs.generate import build_request, run_generate  # noqa: E402
from soul.jobs.live import build_live_request, run_live_file  # noqa: E402
from soul.media.live_stream import LiveMP4Stream  # noqa: E402
from soul.media.video import read_video  # noqa: E402
from soul.miniature.drift import drift_curves  # noqa: E402
from soul.miniature.lipsync import score_lipsync  # noqa: E402
from soul.miniature.portrait import HELD_OUT_SEED, draw_face, random_face  # noqa: E402

LIVE_LAYOUT = {"chunk_frames": 13, "first_chunk_frames": 5, "audio_lookahead": 0.25, "audio_norm": "causal"}


def rss_mb() -> float:
    """Resident memory of this process now, in MB."""
    return _rss_bytes() / 1e6


def session(image: Path, speech: Path, out: Path, *, preset: str, seed: int, codebook: bool, realtime: bool) -> dict[str, Any]:
    # Four floats per chunk, preallocated: the benchmark's own bookkeeping must not be what grows.
    table = np.zeros((int(np.ceil(sf.info(str(speech)).duration * 16 / 4)) + 16, 4))
    made = [0]

    def on_chunk(record: dict[str, Any]) -> None:
        if made[0] < table.shape[0]:
            table[made[0]] = (record["video_time_s"], record["latency_s"], record["compute_s"], rss_mb())
            made[0] += 1

    request = build_live_request(image=image, prompt=PROMPT, preset=preset, seed=seed, codebook=codebook)
    t0 = time.perf_counter()
    summary = run_live_file(request, speech, out, realtime=realtime, on_chunk=on_chunk)
    summary["wall_seconds"] = round(time.perf_counter() - t0, 1)
    records = [{"video_time_s": v, "latency_s": lat, "compute_s": c, "rss_mb": round(m, 1)} for v, lat, c, m in table[: made[0]]]
    return {"summary": summary, "chunks": records}


def per_minute(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    minutes = int(np.ceil(max(r["video_time_s"] for r in records) / 60))
    for m in range(minutes):
        part = [r for r in records if m * 60 < r["video_time_s"] <= (m + 1) * 60] or records[-1:]
        lat = np.array([r["latency_s"] for r in part])
        rows.append({
            "minute": m + 1, "chunks": len(part), "latency_p50": round(float(np.percentile(lat, 50)), 4),
            "latency_p99": round(float(np.percentile(lat, 99)), 4), "latency_max": round(float(lat.max()), 4),
            "compute_mean": round(float(np.mean([r["compute_s"] for r in part])), 4),
            "rss_mb": round(float(np.median([r["rss_mb"] for r in part])), 1), "rss_max_mb": max(r["rss_mb"] for r in part),
        })
    return rows


def drift_per_minute(video: Path, face: Any) -> dict[str, Any]:
    reader = read_video(video)
    curves = drift_curves(reader.frames(), face, float(reader.fps), window_seconds=10.0)
    starts = np.array(curves["start_seconds"])
    out: dict[str, Any] = {"identity_end": curves["identity_end"], "colour_end": curves["colour_end"], "minutes": []}
    for m in range(int(np.ceil((starts.max() + 10) / 60))):
        sel = (starts >= m * 60) & (starts < (m + 1) * 60)
        if sel.any():
            out["minutes"].append({
                "minute": m + 1, "identity": round(float(np.mean(np.array(curves["identity_distance"])[sel])), 4),
                "colour_dE": round(float(np.mean(np.array(curves["colour_drift"])[sel])), 3),
            })
    return out


def frames_of(video: Path, seconds: float) -> tuple[np.ndarray, float]:
    reader = read_video(video)
    fps = float(reader.fps)
    return np.stack(list(read_video(video).frames(0, int(round(seconds * fps))))), fps


def compare(image: Path, face: Any, audio: np.ndarray, live_video: Path, out: Path, *, preset: str, seed: int, seconds: float) -> dict[str, Any]:
    """Lip sync (with mismatched controls) and pixel differences: live vs offline, first `seconds`."""
    n = int(round(seconds * 16_000))
    speech = out / f"speech-{seconds:g}s.wav"
    sf.write(speech, audio[:n], 16_000)
    other = audio[:n][::-1].copy()  # the same speech reversed: same voices and level, unrelated timing (the mismatched control)
    videos = {"live": live_video}
    for name, extra, s in (("offline-live-layout", LIVE_LAYOUT, seed), ("offline-default", {}, seed), ("offline-live-layout-seed+1", LIVE_LAYOUT, seed + 1)):
        path = out / f"{name}.mp4"
        run_generate(build_request(image=image, audio=[speech], output=path, preset=preset, seed=s, prompt=PROMPT, resume=False, **extra))
        videos[name] = path
    frames = {k: frames_of(v, seconds)[0] for k, v in videos.items()}
    fps = frames_of(live_video, 1.0)[1]
    count = min(f.shape[0] for f in frames.values())
    result: dict[str, Any] = {"seconds": seconds, "lipsync": {}, "pixel_mad_to_live": {}}
    for name, f in frames.items():
        if name.endswith("seed+1"):
            continue
        own = score_lipsync(f[:count], face, audio[:n], fps, skip_frames=1)
        mismatched = score_lipsync(f[:count], face, other, fps, skip_frames=1)
        result["lipsync"][name] = {"r": round(own.r, 4), "lag": own.lag, "mismatched_r": round(mismatched.r, 4)}
    live = frames["live"][:count].astype(np.float32)
    for name, f in frames.items():
        if name != "live":
            result["pixel_mad_to_live"][name] = round(float(np.abs(f[:count].astype(np.float32) - live).mean()), 3)
    # The floor two different H.264 encodes put under any such difference: the offline video's
    # frames through the live stream's encoder, decoded again, against themselves.
    reencoded = out / "offline-live-layout-reencoded.mp4"
    with open(reencoded, "wb") as sink:
        stream = LiveMP4Stream(lambda data, kind: sink.write(data), fps)
        stream.write_frames(frames["offline-live-layout"][:count])
        stream.close()
    again = frames_of(reencoded, seconds)[0][:count].astype(np.float32)
    result["codec_floor_mad"] = round(float(np.abs(again - frames["offline-live-layout"][:count].astype(np.float32)).mean()), 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mini-fast")
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--compare-seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/live"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the session (the feeder is a second thread)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    face = random_face(HELD_OUT_SEED + args.seed)
    image = out / "portrait.png"
    draw_face(face, 512).save(image)
    audio, source = held_out_speech(args.seconds, args.seed)
    speech = out / "speech.wav"
    sf.write(speech, audio, 16_000)
    audio = sf.read(speech, dtype="float32")[0]  # what the sessions read (16-bit)
    print(f"[live] {args.preset}, {args.seconds:.0f} s of {source}, face seed {HELD_OUT_SEED + args.seed}, torch threads {args.threads}", flush=True)

    result: dict[str, Any] = {"preset": args.preset, "seconds": args.seconds, "audio": source, "seed": args.seed}
    on = session(image, speech, out / "live-codebook-on.mp4", preset=args.preset, seed=args.seed, codebook=True, realtime=True)
    result["session"] = {**on["summary"], "minutes": per_minute(on["chunks"]), "rss_mb_per_chunk": [r["rss_mb"] for r in on["chunks"]]}
    print("minute | chunks | latency p50 / p99 / max (s) | compute mean (s) | RSS MB median / max")
    for row in result["session"]["minutes"]:
        print(f"{row['minute']:6d} | {row['chunks']:6d} | {row['latency_p50']:.3f} / {row['latency_p99']:.3f} / {row['latency_max']:.3f} | {row['compute_mean']:.4f} | {row['rss_mb']:.1f} / {row['rss_max_mb']:.1f}", flush=True)
    off = session(image, speech, out / "live-codebook-off.mp4", preset=args.preset, seed=args.seed, codebook=False, realtime=False)
    result["codebook_off_session"] = off["summary"]
    result["drift"] = {"on": drift_per_minute(out / "live-codebook-on.mp4", face), "off": drift_per_minute(out / "live-codebook-off.mp4", face)}
    print("minute | identity on / off | colour dE on / off")
    for a, b in zip(result["drift"]["on"]["minutes"], result["drift"]["off"]["minutes"]):
        print(f"{a['minute']:6d} | {a['identity']:.4f} / {b['identity']:.4f} | {a['colour_dE']:.2f} / {b['colour_dE']:.2f}", flush=True)
    result["compare"] = compare(image, face, audio, out / "live-codebook-on.mp4", out, preset=args.preset, seed=args.seed, seconds=min(args.compare_seconds, args.seconds))
    (out / "live.json").write_text(json.dumps(result, indent=1) + "\n")

    s, minutes = result["session"], result["session"]["minutes"]
    lat = s["chunk_latency_s"]
    growth = minutes[-1]["rss_mb"] - minutes[min(1, len(minutes) - 1)]["rss_mb"]
    c = result["compare"]
    print(f"lipsync first {c['seconds']:.0f} s (r / mismatched): " + ", ".join(f"{k} {v['r']:.3f} / {v['mismatched_r']:.3f}" for k, v in c["lipsync"].items()))
    print("pixel MAD to the live stream (0-255): " + ", ".join(f"{k} {v:.2f}" for k, v in c["pixel_mad_to_live"].items())
          + f"; one more H.264 encode alone: {c['codec_floor_mad']:.2f}")
    print(f"drift_end codebook on: identity {result['drift']['on']['identity_end']:.4f}, colour {result['drift']['on']['colour_end']:.2f} dE; "
          f"off: identity {result['drift']['off']['identity_end']:.4f}, colour {result['drift']['off']['colour_end']:.2f} dE")
    print(f"memory_growth_mb median of minute 2 -> of minute {minutes[-1]['minute']}: {growth:+.1f} (RSS {minutes[-1]['rss_mb']:.0f} MB, "
          f"highest {max(m['rss_max_mb'] for m in minutes):.0f} MB; audio held {s['audio_held_seconds']} s)")
    print(f"chunk_latency_s p50 {lat['p50']} p99 {lat['p99']} max {lat['max']}")
    print(f"first_frame_latency_s {s['first_frame_latency_s']}")
    print(f"realtime_factor {s['realtime_factor']} ({s['video_seconds']:.0f} s of video, {s['busy_seconds']:.0f} s of compute, {s['wall_seconds']:.0f} s wall)")


if __name__ == "__main__":
    main()
