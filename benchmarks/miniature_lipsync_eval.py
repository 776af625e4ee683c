"""Lip sync of a trained miniature Soul model on people and audio it never trained on.

For each held-out face (seeds from 1_000_000, disjoint from training), the pipeline animates the
drawn portrait with (a) held-out synthesised babble and (b) held-out real speech (shared/media/
audio hallo_3.wav and wan_talk.wav, never chopped into training clips); the generated mouths are
scored with `soul.miniature.lipsync.score_lipsync` against the audio that drove them (r) and
against unrelated babble of the same length (r_mismatched, mean of 4 tracks, which should be ~0). The VAE's own
ceiling is reported too: drawn clips encoded and decoded, scored the same way.

Run: .venv/bin/python benchmarks/miniature_lipsync_eval.py CHECKPOINT_DIR [--faces 4] [--steps 20]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from soul.media.audio import load_audio
from soul.miniature.clips import draw_clip
from soul.miniature.lipsync import score_lipsync, score_mismatched
from soul.miniature.portrait import HELD_OUT_SEED, draw_face, random_face
from soul.miniature.speech import synthesize_babble
from soul.miniature.speech_pool import HELD_OUT_SPEECH
from soul.pipelines.soul_pipeline import SoulPipeline

SHARED_MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
CAPTION = "a drawn person talking to the camera, head and shoulders"


def generate(pipe: SoulPipeline, seed: int, audio: np.ndarray, frames: int, steps: int, audio_scale: float | None) -> np.ndarray:
    face = random_face(seed)
    out = pipe(
        image=draw_face(face, pipe.config.sampling.width),
        audio=audio,
        prompt=CAPTION,
        num_frames=frames,
        num_inference_steps=steps,
        audio_guidance_scale=audio_scale,
        generator=torch.Generator().manual_seed(seed),
    )
    return out.frames


def evaluate(pipe: SoulPipeline, faces: int, steps: int, frames: int = 81, audio_scale: float | None = None) -> dict:
    """Mean r and r_mismatched over held-out faces, for babble and for real speech."""
    fps = float(pipe.config.sampling.fps)
    seconds = frames / fps
    n_audio = int(round(seconds * 16000))
    tracks: dict[str, list[np.ndarray]] = {"babble": [synthesize_babble(seconds, seed=HELD_OUT_SEED + 500 + i) for i in range(faces)]}
    # Held-out recordings only (never chopped into training clips), a different stretch per face.
    held = [load_audio(SHARED_MEDIA / f, 16000).samples for f in HELD_OUT_SPEECH if (SHARED_MEDIA / f).is_file()]
    if held:
        speech = np.concatenate(held)
        step = max(1, (speech.shape[0] - n_audio) // max(1, faces))
        tracks["real"] = [speech[i * step : i * step + n_audio] for i in range(faces)]
    result: dict = {"faces": faces, "steps": steps, "frames": frames}
    for kind, audios in tracks.items():
        own, mismatched, lags = [], [], []
        for i, audio in enumerate(audios):
            seed = HELD_OUT_SEED + i
            video = generate(pipe, seed, audio, frames, steps, audio_scale)
            s = score_lipsync(video, random_face(seed), audio, fps, skip_frames=1)
            own.append(s.r)
            lags.append(s.lag)
            mismatched.append(score_mismatched(video, random_face(seed), fps, seed=seed, skip_frames=1))
        result[kind] = {"r": round(float(np.mean(own)), 3), "r_each": [round(v, 3) for v in own], "lags": lags, "r_mismatched": round(float(np.mean(mismatched)), 3), "r_mismatched_each": [round(v, 3) for v in mismatched]}
    # The VAE's ceiling: drawn clips through encode/decode, scored against their own audio.
    from soul.models.vae import decode_latents, encode_frames

    ceiling = []
    for i in range(faces):
        clip = draw_clip(HELD_OUT_SEED + i, seconds, fps, pipe.config.sampling.width)
        video = torch.from_numpy(clip.frames[:frames]).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
        with torch.no_grad():
            rec = decode_latents(pipe.vae, encode_frames(pipe.vae, video))
        rec_u8 = ((rec[0].permute(1, 2, 3, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        ceiling.append(score_lipsync(rec_u8, clip.face, clip.audio, fps, skip_frames=1).r)
    result["vae_ceiling_r"] = round(float(np.mean(ceiling)), 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--faces", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--audio-scale", type=float, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    pipe = SoulPipeline.from_pretrained(args.checkpoint, torch_dtype=torch.float32)
    result = evaluate(pipe, args.faces, args.steps, args.frames, args.audio_scale)
    result["checkpoint"] = str(args.checkpoint)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
