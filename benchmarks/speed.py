"""Base vs fast Soul, end to end, in one run on the same inputs (DESIGN 5, "Measured end to end").

- base: 50 UniPC steps, three-pass guidance (text + audio), full Wan VAE decode;
- fast: the `sampling` section of the config's fast preset, i.e. what `soul generate --preset
  <name>-fast` runs: `mini-fast` for mini (and for tiny, which has no fast preset of its own),
  `wan22-ti2v-5b-fast` for scaled-5b. Today that is the distilled 4-level schedule t = [1000, 750,
  500, 250] with the x0-renoise sampler, one pass per step (guidance off) and the light decoder.

Configs:
- `tiny` and `mini`: the presets as shipped (their own sizes and sampling resolution);
- `scaled-5b`: `wan22-ti2v-5b-fast` with the real TI2V-5B transformer block structure (24 heads,
  qk RMS norm across heads, FFN ratio 14336/3072, per-token timesteps, audio layers with 32 tokens
  per latent frame) and the real Wan2.2 VAE architecture (dim_mult [1,2,4,4], 2 res blocks, z=48, 4x16x16) at a quarter of
  the VAE width and 16-wide heads, 4 layers, 256x256, 17 frames; the light decoder is shrunk by
  the same quarter. Text and audio encoders are toy-sized (they run once per call in both modes).

Speed depends on model sizes, not on weight values: `mini` runs on the shipped `mini-fast`
weights when installed (its light decoder's shipped widths), the others on random weights; each
block names its weights. Per-stage seconds come from wrappers around the pipeline's own stage methods (VAE counts
the portrait encode plus the decode). Last lines: `timing_ratio <config> ...: <ratio>x` (timing only: this base is
not a preset's own sampling, so the ratio is not a speed-up at equal quality; docs/speed.md). Run:

    .venv/bin/python benchmarks/speed.py            # all configs
    .venv/bin/python benchmarks/speed.py --configs tiny
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from soul.config import SamplingConfig, SoulConfig, load_preset
from soul.models.vae import decode_latents
from soul.pipelines.soul_pipeline import SoulPipeline

CONFIGS = ("tiny", "mini", "scaled-5b")
FAST_PRESETS = {"tiny": "mini-fast", "mini": "mini-fast", "scaled-5b": "wan22-ti2v-5b-fast"}
"""The preset whose sampling section is each config's fast mode (tiny has no fast preset: it borrows mini's)."""


def fast_sampling(name: str) -> SamplingConfig:
    """The fast mode of config `name`, read from its fast preset so the benchmark measures what ships."""
    return load_preset(FAST_PRESETS[name]).sampling


def scaled_config() -> SoulConfig:
    """The fast 5B preset with the real block structure at reduced width/depth (see module doc)."""
    big = load_preset(FAST_PRESETS["scaled-5b"]).model_dump(mode="json")
    tiny = load_preset("tiny").model_dump(mode="json")
    big["name"] = "scaled-5b"
    big["transformer"].update(attention_head_dim=16, ffn_dim=int(24 * 16 * 14336 / 3072), num_layers=4, text_dim=tiny["transformer"]["text_dim"])
    big["vae"].update(base_dim=40, decoder_base_dim=64)
    big["text_encoder"] = tiny["text_encoder"]
    big["audio_encoder"] = tiny["audio_encoder"]
    big["audio"] = {**tiny["audio"], "tokens_per_frame": 32}
    big["sampling"].update(height=256, width=256, fps=16, chunk_frames=17)
    big["hub"] = {"backbone": None}
    big["weights"] = None
    return SoulConfig.model_validate(big)


def build(name: str) -> tuple[SoulPipeline, str]:
    """The pipeline for one config and where its weights come from.

    `mini` runs on the shipped distilled weights when installed, so its light decoder has the
    widths that ship (wider than the TAEHV ratio, see configs/distill/mini-vae.yaml); speed does
    not depend on the weights' values, only on these sizes. Otherwise random weights, with a light
    decoder sized like the full one (`light_vae_config_for`: a quarter of TAEHV's widths for the
    quarter-width scaled VAE).
    """
    if name == "mini":
        from soul.models.shipped import has_shipped_weights
        from soul.pipelines.shipped import load_shipped_pipeline

        if has_shipped_weights("mini-fast"):
            return load_shipped_pipeline("mini-fast"), "shipped mini-fast"
    config = scaled_config() if name == "scaled-5b" else load_preset(name)
    return SoulPipeline.from_preset(config, seed=0), "random"


class StageTimer:
    """Wraps the pipeline's stage methods and the transformer's forward to add up wall time."""

    def __init__(self, pipe: SoulPipeline) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._wrap(pipe, "encode_prompt", "text")
        self._wrap(pipe.audio_encoder, "encode", "audio")  # wav2vec2 over each stretch of audio a chunk reads
        self._wrap(pipe, "encode_image", "vae")
        self._wrap(pipe, "decode", "vae")
        self._wrap(pipe.transformer, "forward", "transformer")

    def _wrap(self, owner: Any, attr: str, stage: str) -> None:
        inner: Callable[..., Any] = getattr(owner, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - start
                self.calls[stage] += 1

        setattr(owner, attr, timed)

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()


def inputs(pipe: SoulPipeline) -> dict[str, Any]:
    """One portrait, one speech-like track, one prompt: the same for base and fast."""
    cfg = pipe.config.sampling
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (cfg.height, cfg.width, 3), dtype=np.uint8)
    frames = 17
    seconds = (frames - 1) / cfg.fps
    t = np.arange(int(seconds * 16000)) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    return {"image": image, "audio": audio, "prompt": "a person talking", "num_frames": frames}


def fast_kwargs(fast: SamplingConfig) -> dict[str, Any]:
    """Pipeline call arguments for a fast preset's sampling section (its sigmas, else its steps)."""
    schedule: dict[str, Any] = {"sigmas": list(fast.sigmas)} if fast.sigmas else {"num_inference_steps": fast.steps, "shift": fast.flow_shift}
    return dict(**schedule, sampler=fast.sampler, guidance=fast.guidance, text_guidance_scale=fast.text_scale,
                audio_guidance_scale=fast.audio_scale, vae=fast.vae)


def run_mode(pipe: SoulPipeline, timer: StageTimer, mode: str, data: dict[str, Any], fast: SamplingConfig) -> dict[str, Any]:
    """One generation in ``mode`` ("base" or "fast", the latter from ``fast``); returns total and per-stage seconds."""
    text_scale = pipe.config.sampling.text_scale if pipe.config.sampling.text_scale > 1 else 5.0
    audio_scale = pipe.config.sampling.audio_scale if pipe.config.sampling.audio_scale > 1 else 4.0
    if mode == "base":
        kwargs: dict[str, Any] = dict(num_inference_steps=50, sampler="unipc", guidance=True, text_guidance_scale=text_scale,
                                      audio_guidance_scale=audio_scale, vae="full")  # explicit: the pipeline's own defaults may be a fast preset's
    else:
        kwargs = fast_kwargs(fast)
    timer.reset()
    start = time.perf_counter()
    out = pipe(**data, generator=torch.Generator().manual_seed(0), **kwargs)
    total = time.perf_counter() - start
    return {"total": total, "stages": dict(timer.seconds), "forwards": timer.calls["transformer"], "passes": out.info["passes_per_step"], "steps": len(out.info["sigmas"]) - 1, "frames": out.frames.shape}


def decoder_times(pipe: SoulPipeline, repeats: int) -> tuple[float, float, tuple[int, ...]]:
    """Median seconds of the full and the light decoder on the same latents (17 frames)."""
    cfg = pipe.config
    lat = (1, cfg.vae.z_dim, 5, cfg.sampling.height // 16, cfg.sampling.width // 16)
    z = torch.randn(lat, generator=torch.Generator().manual_seed(1))
    assert pipe.light_vae is not None
    full, light = [], []
    with torch.no_grad():
        decode_latents(pipe.vae, z)
        pipe.light_vae(z)
        for _ in range(repeats):
            t0 = time.perf_counter()
            decode_latents(pipe.vae, z)
            full.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            pipe.light_vae(z)
            light.append(time.perf_counter() - t0)
    return statistics.median(full), statistics.median(light), lat


def params(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--decoder-repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"Soul speed benchmark: speed depends on model sizes, not weight values; torch threads {args.threads}")
    speedups = {}
    for name in args.configs:
        pipe, weights = build(name)
        timer = StageTimer(pipe)
        data = inputs(pipe)
        cfg = pipe.config
        fast = fast_sampling(name)
        print(
            f"\n[{name}] {cfg.sampling.width}x{cfg.sampling.height}, {data['num_frames']} frames; transformer {params(pipe.transformer):.2f} M, "
            f"full VAE decoder {params(pipe.vae.decoder):.2f} M, light decoder {params(pipe.light_vae):.2f} M; weights {weights}"  # type: ignore[arg-type]
        )
        print(f"  fast = {FAST_PRESETS[name]}: sampler {fast.sampler}, sigmas {fast.sigmas or f'{fast.steps} steps'}, guidance {'on' if fast.guidance else 'off'}, vae {fast.vae}")
        run_mode(pipe, timer, "fast", data, fast)  # warm-up (allocator, first-call paths)
        results = {mode: run_mode(pipe, timer, mode, data, fast) for mode in ("base", "fast")}
        for mode, r in results.items():
            stages = ", ".join(f"{k} {r['stages'].get(k, 0.0):.3f}s" for k in ("text", "audio", "transformer", "vae"))
            print(f"  {mode:4s}: total {r['total']:.3f}s | {stages} | {r['steps']} steps x {r['passes']} passes = {r['forwards']} forwards | frames {tuple(r['frames'])}")
        full, light, lat = decoder_times(pipe, args.decoder_repeats)
        print(f"  decoder at latents {lat}: full {full:.3f}s, light {light:.4f}s -> {full / light:.1f}x")
        speedups[name] = results["base"]["total"] / results["fast"]["total"]
    print()
    for name, ratio in speedups.items():
        print(f"timing_ratio {name} (50-step three-pass base / fast; timing only, not at equal quality: docs/speed.md): {ratio:.1f}x")


if __name__ == "__main__":
    main()
