"""Identity and colour drift over a long generation, codebook replacement on and off (DESIGN 4, 8).

A held-out drawn face is animated for `--seconds` (default 300) by held-out real speech
(shared/media/audio/hallo_3.wav and wan_talk.wav, looped; synthesised babble when shared media is
absent), through the real generation path (`soul.generate.run_generate`: chunks, motion prefix,
pivotal anchor, streaming MP4), once with codebook replacement on and once off, same seed. Each
MP4 is read back and measured per 10 s window against the first 10 s
(`soul.miniature.drift.drift_curves`); lip sync over the first 60 s is printed too, so a setting
that froze the mouth would show. Last lines: the end values of both curves for both settings.

Run: .venv/bin/python benchmarks/miniature_drift.py [--preset mini] [--seconds 300] [--out runs/drift]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from soul.generate import build_request, run_generate
from soul.media.audio import load_audio
from soul.media.video import read_video
from soul.miniature.drift import drift_curves
from soul.miniature.lipsync import score_lipsync
from soul.miniature.portrait import draw_face, random_face
from soul.miniature.speech import synthesize_babble
from soul.miniature.speech_pool import HELD_OUT_SPEECH

SHARED_MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
HELD_OUT_FACE = 1_000_000
PROMPT = "a drawn person talking to the camera, head and shoulders"


def held_out_speech(seconds: float, seed: int) -> tuple[np.ndarray, str]:
    """`seconds` of speech the model never trained on: the held-out recordings looped, else babble."""
    n = int(round(seconds * 16_000))
    tracks = [load_audio(SHARED_MEDIA / f, 16_000).samples for f in HELD_OUT_SPEECH if (SHARED_MEDIA / f).is_file()]
    if not tracks:
        return synthesize_babble(seconds, 16_000, seed=HELD_OUT_FACE + seed), "babble"
    joined = np.concatenate(tracks)
    return np.resize(joined, n).astype(np.float32), "+".join(HELD_OUT_SPEECH)


def run(preset: str, seconds: float, seed: int, out: Path, checkpoint: Path | None) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    face = random_face(HELD_OUT_FACE + seed)
    portrait = out / "portrait.png"
    draw_face(face, 512).save(portrait)
    audio, source = held_out_speech(seconds, seed)
    speech = out / "speech.wav"
    sf.write(speech, audio, 16_000)
    result: dict = {"preset": preset, "seconds": seconds, "seed": seed, "audio": source, "runs": {}}
    for codebook in (True, False):
        name = "on" if codebook else "off"
        video = out / f"codebook-{name}.mp4"
        request = build_request(image=portrait, audio=[speech], output=video, preset=preset, seed=seed, prompt=PROMPT,
                                codebook=codebook, checkpoint=checkpoint, resume=False)
        t0 = time.perf_counter()
        generated = run_generate(request)
        reader = read_video(video)
        fps = float(reader.fps)
        curves = drift_curves(reader.frames(), face, fps, window_seconds=10.0)
        first_minute = read_video(video).read_all()[: int(60 * fps)]
        sync = score_lipsync(first_minute, face, audio, fps, skip_frames=1)
        result["runs"][name] = {**curves, "lipsync_r_first_60s": round(sync.r, 4), "seconds_to_make": round(time.perf_counter() - t0, 1),
                                "frames": generated.num_frames, "video": str(video)}
    (out / "drift.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/drift"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = run(args.preset, args.seconds, args.seed, args.out, args.checkpoint)
    for name, r in result["runs"].items():
        print(f"codebook {name}: {r['frames']} frames in {r['seconds_to_make']} s, lip sync r (first 60 s) {r['lipsync_r_first_60s']}")
        print("  window start s | identity distance | colour drift dE")
        for s, i, c in zip(r["start_seconds"], r["identity_distance"], r["colour_drift"]):
            print(f"  {s:14.0f} | {i:17.4f} | {c:15.2f}")
    on, off = result["runs"]["on"], result["runs"]["off"]
    print(f"identity_end codebook=on: {on['identity_end']:.4f}  off: {off['identity_end']:.4f}")
    print(f"colour_end codebook=on: {on['colour_end']:.2f}  off: {off['colour_end']:.2f}")


if __name__ == "__main__":
    main()
