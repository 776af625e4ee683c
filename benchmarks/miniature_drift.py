"""Identity and colour drift over a long generation, codebook replacement on and off (DESIGN 4, 8).

A held-out drawn face is animated for `--seconds` (default 300) by held-out real speech
(shared/media/audio/hallo_3.wav and wan_talk.wav, looped; synthesised babble when shared media is
absent), through the real generation path (`soul.jobs.generate.run_generate`: chunks, motion prefix,
pivotal anchor, streaming MP4; the preset's shipped weights or `--checkpoint`), once with codebook
replacement on and once off, same seed. Each MP4 is read back and measured per 10 s window
against the first 10 s (`soul.miniature.drift.drift_curves`: identity distance, face-box colour
drift, and palette drift = the worst of skin, hair, background and shirt); lip sync over the
first 60 s is printed too, so a setting that froze the mouth would show. Last lines: the end
values of the curves and the lip sync of both settings.

Run: .venv/bin/python benchmarks/miniature_drift.py [--preset mini] [--checkpoint DIR] [--seconds 300] [--out runs/drift]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from soul.errors import InputError
from soul.jobs.generate import build_request, run_generate
from soul.jobs.resume import output_lock
from soul.media.audio import load_audio
from soul.media.video import read_video
from soul.miniature.drift import drift_curves
from soul.miniature.lipsync import score_lipsync
from soul.miniature.portrait import HELD_OUT_SEED, FaceParams, draw_face, random_face
from soul.miniature.speech import synthesize_babble
from soul.miniature.speech_pool import HELD_OUT_SPEECH

SHARED_MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
PROMPT = "a drawn person talking to the camera, head and shoulders"
WINDOW_SECONDS = 10.0
LIPSYNC_SECONDS = 60.0


def held_out_speech(seconds: float, seed: int, media: Path = SHARED_MEDIA) -> tuple[np.ndarray, str]:
    """`seconds` of 16 kHz speech the model never trained on: the held-out recordings looped, else babble."""
    n = int(round(seconds * 16_000))
    tracks = [load_audio(media / f, 16_000).samples for f in HELD_OUT_SPEECH if (media / f).is_file()]
    if not tracks:
        return synthesize_babble(seconds, 16_000, seed=HELD_OUT_SEED + seed), "babble"
    return np.resize(np.concatenate(tracks), n).astype(np.float32), "+".join(HELD_OUT_SPEECH)


def measure(video: Path, face: FaceParams, audio: np.ndarray) -> dict:
    """Drift curves of the whole MP4 (streamed) and lip sync over its first minute."""
    reader = read_video(video)
    fps = float(reader.fps)
    curves = drift_curves(reader.frames(), face, fps, window_seconds=WINDOW_SECONDS)
    first = np.stack(list(read_video(video).frames(0, int(LIPSYNC_SECONDS * fps))))
    sync = score_lipsync(first, face, audio, fps, skip_frames=1)  # frame 0 is the portrait
    return {**curves, "lipsync_r_first_60s": round(sync.r, 4), "lipsync_lag": sync.lag}


def run(preset: str, seconds: float, seed: int, out: Path, checkpoint: Path | None, steps: int | None) -> dict:
    """Generate with codebook on and off, measure both, write OUT/drift.json.

    OUT is held for the whole run: a second run on it would rewrite the portrait and speech this
    one reads again for its second video."""
    out.mkdir(parents=True, exist_ok=True)
    with output_lock(out / "drift.json"):
        return _run_in(preset, seconds, seed, out, checkpoint, steps)


def _run_in(preset: str, seconds: float, seed: int, out: Path, checkpoint: Path | None, steps: int | None) -> dict:
    face = random_face(HELD_OUT_SEED + seed)
    portrait = out / "portrait.png"
    draw_face(face, 512).save(portrait)
    audio, source = held_out_speech(seconds, seed)
    speech = out / "speech.wav"
    sf.write(speech, audio, 16_000)
    result: dict = {"preset": preset, "checkpoint": str(checkpoint) if checkpoint else None, "steps": steps,
                    "seconds": seconds, "seed": seed, "face_seed": HELD_OUT_SEED + seed, "audio": source, "runs": {}}
    for codebook in (True, False):
        name = "on" if codebook else "off"
        video = out / f"codebook-{name}.mp4"
        request = build_request(image=portrait, audio=[speech], output=video, preset=preset, seed=seed, prompt=PROMPT,
                                codebook=codebook, checkpoint=checkpoint, steps=steps, resume=False)
        t0 = time.perf_counter()
        generated = run_generate(request)
        made = time.perf_counter() - t0
        result["runs"][name] = {**measure(video, face, audio), "seconds_to_make": round(made, 1), "frames": generated.num_frames,
                                "size": [generated.height, generated.width], "weights": generated.info.get("weights"), "video": str(video)}
    (out / "drift.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def report(result: dict) -> list[str]:
    """The printed tables, one per setting, then the on/off comparison lines."""
    lines = []
    for name, r in result["runs"].items():
        regions = list(r["palette_by_region"])
        lines.append(f"codebook {name}: {r['frames']} frames ({r['size'][0]}x{r['size'][1]}) in {r['seconds_to_make']} s, weights {r['weights']}")
        lines.append("  start s | identity | colour dE | palette dE | " + " | ".join(f"{k:>10}" for k in regions))
        for i, start in enumerate(r["start_seconds"]):
            per_region = " | ".join(f"{r['palette_by_region'][k][i]:10.2f}" for k in regions)
            lines.append(f"  {start:7.0f} | {r['identity_distance'][i]:8.4f} | {r['colour_drift'][i]:9.2f} | {r['palette_drift'][i]:10.2f} | {per_region}")
        lines.append(f"  mean / max: identity {r['identity_mean']:.4f} / {r['identity_max']:.4f}, colour {r['colour_mean']:.2f} / {r['colour_max']:.2f}, "
                     f"palette {r['palette_mean']:.2f} / {r['palette_max']:.2f}")
    on, off = result["runs"]["on"], result["runs"]["off"]
    lines.append(f"identity_end codebook=on: {on['identity_end']:.4f}  off: {off['identity_end']:.4f}")
    lines.append(f"colour_end codebook=on: {on['colour_end']:.2f}  off: {off['colour_end']:.2f}")
    lines.append(f"palette_end codebook=on: {on['palette_end']:.2f}  off: {off['palette_end']:.2f}")
    lines.append(f"lipsync_r first {LIPSYNC_SECONDS:.0f} s codebook=on: {on['lipsync_r_first_60s']:.3f}  off: {off['lipsync_r_first_60s']:.3f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--checkpoint", type=Path, default=None, help="a pipeline directory instead of the preset's shipped weights")
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=0, help="sampling seed; the face is random_face(1_000_000 + seed)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the preset's)")
    parser.add_argument("--out", type=Path, default=Path("runs/drift"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        result = run(args.preset, args.seconds, args.seed, args.out, args.checkpoint, args.steps)
    except InputError as exc:  # e.g. --out held by another run: one line, not a traceback
        raise SystemExit(f"miniature_drift.py: {exc}") from None
    print("\n".join(report(result)))


if __name__ == "__main__":
    main()
