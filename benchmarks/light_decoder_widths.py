"""Which light-decoder widths can reproduce the full decoder, and what each costs (DESIGN 5, "Light VAE").

The scaled-5b row of benchmarks/speed.py times a light decoder at a quarter of TAEHV's widths
(64/32/16/16, the ratio of TAEHV to the real Wan2.2 decoder) on random weights; this script says
what such a decoder reaches once trained, next to TAEHV's own widths (256/128/64/64), the
miniature's TAEHV ratio (24/12/8/8) and the widths `mini-fast` ships (64/48/32/32).

Every width is trained the same way, from scratch, for the same number of steps (`soul distill
vae`'s trainer, `VAEDistiller`): teacher = the shipped `mini16` VAE (the 16x VAE `mini-fast` decodes for), 64x64 drawn talking clips of
training seeds, L1 + MSE against the full decoder's frames. Quality is measured once, at the end,
on held-out clips (seeds 5_000.. of the trainer's eval pool; nothing is stopped or selected on
them): PSNR against the full decoder and flicker (mean |change of mean brightness| between frames)
beside the full decoder's own. Time: median seconds to decode 5 latents at the miniature size
(64x64) and at the scaled-5b size (256x256), next to the full decoder on the same latents.

    .venv/bin/python benchmarks/light_decoder_widths.py                 # ~20 min, one thread
    .venv/bin/python benchmarks/light_decoder_widths.py --steps 100     # quick look

Last lines: `light_decoder <widths>: <dB> dB vs full, flicker <f> (full <f>), <x>x faster than full at 64x64`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

WIDTHS = ("256,128,64,64", "64,32,16,16", "24,12,8,8", "64,48,32,32")
NAMES = {"256,128,64,64": "TAEHV", "64,32,16,16": "TAEHV / 4 (scaled-5b)", "24,12,8,8": "TAEHV x 24/256 (mini ratio)", "64,48,32,32": "mini-fast ships"}


def decode_seconds(decoder: torch.nn.Module, latents: torch.Tensor, repeats: int = 3) -> float:
    with torch.no_grad():
        decoder(latents)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            decoder(latents)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", nargs="+", default=list(WIDTHS), help="comma-separated stage widths, one set per value")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--eval-clips", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from soul.miniature.clips import draw_clip
    from soul.models.light_vae import LightDecoder, light_vae_config_for
    from soul.models.shipped import has_shipped_weights
    from soul.models.vae import decode_latents
    from soul.pipelines.shipped import load_shipped_pipeline
    from soul.training.distill_vae import DistillVAEConfig, VAEDistiller

    if not has_shipped_weights("mini16"):
        raise SystemExit("the shipped mini16 weights are not installed: this benchmark trains against the mini16 VAE")
    print(f"light decoder widths on miniature latents: {args.steps} steps each from scratch, {args.clips} training clips, "
          f"{args.eval_clips} held-out clips; torch threads {args.threads}")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        teacher_dir = Path(tmp) / "mini16"
        load_shipped_pipeline("mini16").save_pretrained(teacher_dir)
        for spec in args.widths:
            widths = tuple(int(w) for w in spec.split(","))
            cfg = DistillVAEConfig(preset="mini16", init_checkpoint=str(teacher_dir), widths=widths, num_clips=args.clips, eval_clips=args.eval_clips,
                                   batch_size=4, lr=5e-4, max_steps=args.steps, checkpoint_every=args.steps, log_every=max(1, args.steps // 4),
                                   output=str(Path(tmp) / f"run-{'-'.join(map(str, widths))}"))
            distiller = VAEDistiller(cfg, lambda seed: draw_clip(seed, cfg.seconds, cfg.fps, cfg.size).frames)
            t0 = time.perf_counter()
            history = distiller.train()
            minutes = (time.perf_counter() - t0) / 60
            last = history[-1]
            student: LightDecoder = distiller.student.eval()
            small = torch.randn(1, 48, 5, 4, 4, generator=torch.Generator().manual_seed(1))
            light_s, full_s = decode_seconds(student, small), decode_seconds(lambda z: decode_latents(distiller.vae, z), small)
            big_cfg = light_vae_config_for(distiller.vae.config, widths=widths)
            big = LightDecoder(big_cfg).eval()
            big_s = decode_seconds(big, torch.randn(1, 48, 5, 16, 16, generator=torch.Generator().manual_seed(1)))
            params = sum(p.numel() for p in student.parameters()) / 1e6
            results.append((spec, last, light_s, full_s, big_s, params, minutes))
            print(f"  {spec:16s} {NAMES.get(spec, ''):28s} {params:6.3f} M params, {minutes:5.1f} min: PSNR {last['eval_psnr_vs_full']:.2f} dB vs full, "
                  f"flicker {last['eval_flicker']:.4f} (full {last['eval_flicker_full']:.4f}); decode 5 latents: 64x64 {light_s * 1e3:.1f} ms "
                  f"(full {full_s * 1e3:.1f} ms), 256x256 {big_s * 1e3:.1f} ms", flush=True)
    print()
    for spec, last, light_s, full_s, _, _, _ in results:
        print(f"light_decoder {spec}: {last['eval_psnr_vs_full']:.2f} dB vs full, flicker {last['eval_flicker']:.4f} "
              f"(full {last['eval_flicker_full']:.4f}), {full_s / light_s:.1f}x faster than full at 64x64")


if __name__ == "__main__":
    main()
