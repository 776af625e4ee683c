"""Quality of the fast path against the base model on the miniature world (issue: speed, DESIGN 5).

Held-out drawn faces are animated by held-out speech (shared/media/audio/hallo_3.wav and
wan_talk.wav, different stretches per face; babble when shared media is absent) twice, through
the real generation path: `--base` preset (mini: 20 Euler steps, audio guidance, full VAE) and
`--fast` preset (mini-fast: 4 distilled x0 steps, one pass, light decoder). Each MP4 is read back
and scored: lip sync r with its audio and with other clips' audio (mean of 4), identity
distance and colour difference to the portrait, colour/identity drift of the last 10 s against the first 10 s, and
seconds to make. Last lines: the fast/base ratio of each quality measure.

Run: .venv/bin/python benchmarks/miniature_fast_quality.py [--faces 4] [--seconds 20]
     [--base-checkpoint DIR] [--fast-checkpoint DIR]   # default: the shipped weights
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from soul.jobs.generate import build_request, run_generate
from soul.media.audio import load_audio
from soul.media.video import read_video
from soul.miniature.drift import distance_to_portrait, drift_curves
from soul.miniature.lipsync import score_lipsync, score_mismatched
from soul.miniature.portrait import draw_face, random_face
from soul.miniature.speech import synthesize_babble
from soul.miniature.speech_pool import HELD_OUT_SPEECH

SHARED_MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
HELD_OUT_FACE = 1_000_000
PROMPT = "a drawn person talking to the camera, head and shoulders"
MEASURES = ("lipsync_r", "lipsync_r_mismatched", "identity_distance", "colour_difference", "identity_drift_end", "colour_drift_end", "seconds")


def held_out_tracks(faces: int, seconds: float) -> list[np.ndarray]:
    """One stretch of held-out speech per face (spread over the held-out recordings)."""
    n = int(round(seconds * 16_000))
    joined = [load_audio(SHARED_MEDIA / f, 16_000).samples for f in HELD_OUT_SPEECH if (SHARED_MEDIA / f).is_file()]
    if not joined:
        return [synthesize_babble(seconds, 16_000, seed=HELD_OUT_FACE + 500 + i) for i in range(faces)]
    speech = np.resize(np.concatenate(joined), max(n * faces, sum(len(j) for j in joined)))
    step = max(1, (speech.shape[0] - n) // max(1, faces - 1)) if faces > 1 else 0
    return [speech[i * step : i * step + n].astype(np.float32) for i in range(faces)]


def score(video: Path, face, portrait: np.ndarray, audio: np.ndarray, seed: int) -> dict[str, float]:  # noqa: ANN001
    reader = read_video(video)
    frames = reader.read_all()
    fps = float(reader.fps)
    curves = drift_curves(frames, face, fps, window_seconds=10.0)
    return {
        "lipsync_r": score_lipsync(frames, face, audio, fps, skip_frames=1).r,
        "lipsync_r_mismatched": score_mismatched(frames, face, fps, seed=seed, skip_frames=1),
        **distance_to_portrait(frames, face, portrait),
        "identity_drift_end": curves["identity_end"],
        "colour_drift_end": curves["colour_end"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--base", default="mini")
    parser.add_argument("--fast", default="mini-fast")
    parser.add_argument("--base-checkpoint", type=Path, default=None)
    parser.add_argument("--fast-checkpoint", type=Path, default=None)
    parser.add_argument("--fast-vae", choices=["full", "light"], default=None, help="override the fast preset's decoder (to split the student's gap from the light decoder's)")
    parser.add_argument("--out", type=Path, default=Path("runs/fast-quality"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    tracks = held_out_tracks(args.faces, args.seconds)
    rows: dict[str, list[dict[str, float]]] = {"base": [], "fast": []}
    for i, audio in enumerate(tracks):
        face = random_face(HELD_OUT_FACE + i)
        portrait = args.out / f"face{i}.png"
        draw_face(face, 512).save(portrait)
        speech = args.out / f"speech{i}.wav"
        sf.write(speech, audio, 16_000)
        for kind, preset, ckpt, vae in (("base", args.base, args.base_checkpoint, None), ("fast", args.fast, args.fast_checkpoint, args.fast_vae)):
            video = args.out / f"{kind}{i}.mp4"
            request = build_request(image=portrait, audio=[speech], output=video, preset=preset, checkpoint=ckpt, seed=i, prompt=PROMPT,
                                    resume=False, vae=vae)
            t0 = time.perf_counter()
            result = run_generate(request)
            seconds = time.perf_counter() - t0
            small = np.asarray(draw_face(face, result.width))
            rows[kind].append({**score(video, face, small, audio, i), "seconds": seconds})
            print(f"face {i} {kind:4s}: " + ", ".join(f"{k} {v:.4f}" for k, v in rows[kind][-1].items()), flush=True)
    means = {kind: {m: float(np.mean([r[m] for r in rs])) for m in MEASURES} for kind, rs in rows.items()}
    report = {"faces": args.faces, "seconds": args.seconds, "base": args.base, "fast": args.fast, "fast_vae": args.fast_vae, "rows": rows, "means": means}
    (args.out / "fast_quality.json").write_text(json.dumps(report, indent=1) + "\n")
    for m in MEASURES:
        b, f = means["base"][m], means["fast"][m]
        ratio = f / b if abs(b) > 1e-12 else float("nan")
        print(f"{m}: base {b:.4f}  fast {f:.4f}  fast/base {ratio:.3f}")


if __name__ == "__main__":
    main()
