"""Lip-sync ceiling of a mini VAE: held-out drawn clips encoded and decoded, then scored.

Why: a generated mouth can only be as legible as the VAE draws it; this separates what the VAE
loses from what the transformer has not learned. Prints PSNR, mouth PSNR and r (own audio) per
clip for a VAE directory (diffusers layout, e.g. runs/mini-vae/vae).

Run: .venv/bin/python benchmarks/miniature_vae_ceiling.py runs/mini-vae/vae [--clips 4]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from diffusers import AutoencoderKLWan

from soul.miniature.clips import draw_clip
from soul.miniature.lipsync import score_lipsync
from soul.miniature.portrait import HELD_OUT_SEED
from soul.miniature.vae_trainer import mouth_mask, psnr, reconstruct, to_tensor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("vae")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--per-frame", action="store_true", help="encode each frame alone (the image path), e.g. for an image-pretrained VAE")
    args = parser.parse_args()
    torch.set_num_threads(1)
    vae = AutoencoderKLWan.from_pretrained(args.vae).eval()
    rows = []
    for i in range(args.clips):
        clip = draw_clip(HELD_OUT_SEED + i, args.frames / 16, 16.0, 64)
        video = to_tensor(clip.frames[: args.frames])[None]
        if args.per_frame:
            rec = torch.cat([reconstruct(vae, video[:, :, t : t + 1]) for t in range(video.shape[2])], dim=2)
        else:
            rec = reconstruct(vae, video)
        u8 = ((rec[0].permute(1, 2, 3, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        m = mouth_mask(clip, 64).bool()
        rows.append({
            "psnr": round(psnr(rec, video), 2),
            "psnr_mouth": round(psnr(rec[..., m], video[..., m]), 2),
            "r_drawn": round(score_lipsync(clip.frames, clip.face, clip.audio, 16.0, skip_frames=1).r, 3),
            "r_reconstructed": round(score_lipsync(u8, clip.face, clip.audio, 16.0, skip_frames=1).r, 3),
        })
    summary = {k: round(float(np.mean([r[k] for r in rows])), 3) for k in rows[0]}
    print(json.dumps({"vae": args.vae, "mean": summary, "clips": rows}, indent=1))


if __name__ == "__main__":
    main()
