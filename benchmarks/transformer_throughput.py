"""Cost of Soul's audio layers: transformer throughput and peak memory, Soul vs plain diffusers TI2V.

Two configurations, same inputs and same backbone weights for both models:
- `tiny`: the tiny preset at its default sampling size;
- `scaled-5b`: the real TI2V-5B block structure (24 heads, qk RMS norm across heads, text width
  4096 with 512 text tokens, per-token timesteps, FFN ratio 14336/3072) and the 5B preset's audio
  settings (K=32 tokens per latent frame, wav2vec2-base features, all blocks), shrunk in head width
  and depth so it runs on a 2-core CPU in seconds.

Soul's passes get precomputed audio tokens (`project_audio`), as a sampler does: the tokens depend
on neither latents nor timestep, so the projector runs once per chunk, reported separately.

Each (config, model) pair runs in its own child process so peak memory is that pair's alone: peak
RSS during the timed passes minus the RSS just before them (weights and inputs already resident).
Timing is the median of several no-grad passes after a warm-up. Run:

    .venv/bin/python benchmarks/transformer_throughput.py
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import statistics
import time
from queue import Empty
from typing import Any


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM), so build-time peaks do not count."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")


def _peak_rss_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _setup(name: str) -> dict[str, Any]:
    from soul.config import load_preset

    if name == "tiny":
        cfg = load_preset("tiny")
        return {
            "transformer": cfg.transformer.kwargs(),
            "preset": "tiny",
            "height": cfg.sampling.height,
            "width": cfg.sampling.width,
            "frames": cfg.sampling.chunk_frames,
            "text_tokens": 32,
            "repeats": 100,
        }
    big = load_preset("wan22-ti2v-5b").transformer.kwargs()
    big.update(attention_head_dim=16, ffn_dim=int(24 * 16 * 14336 / 3072), num_layers=4)
    return {"transformer": big, "preset": "wan22-ti2v-5b", "height": 256, "width": 256, "frames": 33, "text_tokens": 512, "repeats": 5}


def _build(name: str, threads: int) -> dict[str, Any]:
    """Plain and Soul models with the same backbone weights, and one set of inputs for both."""
    import torch
    from diffusers import WanTransformer3DModel

    from soul.config import load_preset
    from soul.models.transformer import SoulTransformer3DModel, soul_kwargs

    torch.set_num_threads(threads)
    setup = _setup(name)
    cfg = load_preset(setup["preset"])
    tk = setup["transformer"]
    torch.manual_seed(0)
    audio_kwargs = {**soul_kwargs(cfg), "audio_block_indices": None}  # every block of this depth
    soul = SoulTransformer3DModel(**tk, **audio_kwargs).eval()
    with torch.no_grad():  # trained-looking audio layers (a zero projection would cost the same)
        for layer in soul.audio_layers.values():
            layer.attn.to_out[0].weight.normal_(std=0.02)
    plain = WanTransformer3DModel(**soul.backbone_config()).eval()
    plain.load_state_dict(soul.backbone_state_dict())

    g = torch.Generator().manual_seed(1)
    f_lat = (setup["frames"] - 1) // 4 + 1
    h, w = setup["height"] // 16, setup["width"] // 16
    seq = f_lat * (h // 2) * (w // 2)
    timestep = torch.full((1, seq), 800.0)
    timestep[:, : (h // 2) * (w // 2)] = 0.0  # clean portrait frame, TI2V style
    args = (torch.randn(1, 48, f_lat, h, w, generator=g), timestep, torch.randn(1, setup["text_tokens"], tk["text_dim"], generator=g))
    frame_mask = torch.ones(1, f_lat, dtype=torch.bool)
    frame_mask[:, 0] = False
    audio_shape = (1, 1, f_lat, cfg.audio.window, cfg.audio_encoder.num_hidden_states, cfg.audio_encoder.hidden_size)
    features = torch.randn(audio_shape, generator=g)
    with torch.no_grad():  # once per chunk in sampling; every step and guidance pass reuses them
        tokens = soul.project_audio(features)
    soul_inputs = {"audio_tokens": tokens, "audio_frame_mask": frame_mask}
    return {
        "plain": (plain, args, {}),
        "soul": (soul, args, soul_inputs),
        "features": features,
        "tokens": seq,
        "repeats": setup["repeats"],
    }


def _peak_memory(name: str, variant: str, threads: int, queue: Any) -> None:
    """Child process: RSS growth of one pass of one model (the other model is dropped first)."""
    import ctypes
    import gc

    import torch

    built = _build(name, threads)
    model, args, kwargs = built[variant]
    del built
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed build-time memory back, so growth is the pass's
    with torch.no_grad():
        _reset_peak_rss()
        before = _rss_bytes()
        model(*args, **kwargs)
    queue.put(max(0, _peak_rss_bytes() - before))


def _child_peak(name: str, variant: str, threads: int) -> int:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_peak_memory, args=(name, variant, threads, queue))
    proc.start()
    while True:
        try:
            value = queue.get(timeout=1)
            break
        except Empty:
            if not proc.is_alive():
                raise SystemExit(f"memory measurement {name}/{variant} failed (exit code {proc.exitcode})") from None
    proc.join()
    return int(value)


def run(threads: int = 1) -> list[dict[str, Any]]:
    """Time both models in this process, alternating passes so machine load hits both alike;
    measure peak pass memory in fresh child processes."""
    import torch

    # Fixed mmap threshold: every large tensor gets its own mapping, so RSS tracks live tensors
    # instead of glibc's heap high-water mark (inherited by the spawned children).
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
    rows = []
    for name in ("tiny", "scaled-5b"):
        built = _build(name, threads)
        times: dict[str, list[float]] = {"plain": [], "soul": []}
        with torch.no_grad():
            for variant in times:  # warm-up
                model, args, kwargs = built[variant]
                model(*args, **kwargs)
            for _ in range(built["repeats"]):
                for variant in times:
                    model, args, kwargs = built[variant]
                    start = time.perf_counter()
                    model(*args, **kwargs)
                    times[variant].append(time.perf_counter() - start)
            soul_model = built["soul"][0]
            soul_model.project_audio(built["features"])
            start = time.perf_counter()
            soul_model.project_audio(built["features"])
            projector_seconds = time.perf_counter() - start
        for variant, samples in times.items():
            seconds = statistics.median(samples)
            rows.append(
                {
                    "config": name,
                    "variant": variant,
                    "parameters": sum(p.numel() for p in built[variant][0].parameters()),
                    "tokens": built["tokens"],
                    "seconds_per_pass": seconds,
                    "tokens_per_second": built["tokens"] / seconds,
                    "peak_pass_bytes": _child_peak(name, variant, threads),
                    "projector_seconds_per_chunk": projector_seconds if variant == "soul" else 0.0,
                }
            )
        del built
    return rows


def analytic_flops(height: int = 704, width: int = 1280, frames: int = 121) -> dict[str, float]:
    """Matmul FLOPs of one pass of the real 5B model at the official size, plain vs Soul.

    Counted from the preset's shapes (2 FLOPs per multiply-add), to say what the measured overhead
    at toy scale becomes at 5B scale, where self-attention over ~27k tokens dominates.
    """
    from soul.config import load_preset

    cfg = load_preset("wan22-ti2v-5b")
    t, a = cfg.transformer, cfg.audio
    f_lat = (frames - 1) // 4 + 1
    seq = f_lat * (height // 32) * (width // 32)
    d, ffn, text = t.inner_dim, t.ffn_dim, cfg.text_encoder.max_length
    k = a.tokens_per_frame
    self_attn = 2 * (4 * seq * d * d) + 2 * (2 * seq * seq * d)
    cross_attn = 2 * (2 * seq * d * d + 2 * text * d * d) + 2 * (2 * seq * text * d)
    ff = 2 * (2 * seq * d * ffn)
    plain = t.num_layers * (self_attn + cross_attn + ff)
    audio_layer = 2 * (2 * seq * d * d + 2 * f_lat * k * d * d) + 2 * (2 * seq * k * d)
    window_in = a.window * cfg.audio_encoder.hidden_size
    projector = 2 * f_lat * (window_in * a.projector_hidden_dim + a.projector_hidden_dim * k * a.token_dim + k * a.token_dim * d)
    soul = plain + len(a.block_indices(t.num_layers)) * audio_layer + projector
    return {"tokens": seq, "plain_tflop": plain / 1e12, "soul_tflop": soul / 1e12, "ratio": soul / plain}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per measurement (default 1)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    rows = run(args.threads)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'config':<10} {'model':<6} {'params':>12} {'tokens':>7} {'s/pass':>9} {'tokens/s':>10} {'peak MiB':>9}")
    for r in rows:
        print(
            f"{r['config']:<10} {r['variant']:<6} {r['parameters']:>12,} {r['tokens']:>7} {r['seconds_per_pass']:>9.4f} "
            f"{r['tokens_per_second']:>10.1f} {r['peak_pass_bytes'] / 2**20:>9.1f}"
        )
    for name in ("tiny", "scaled-5b"):
        plain = next(r for r in rows if r["config"] == name and r["variant"] == "plain")
        soul = next(r for r in rows if r["config"] == name and r["variant"] == "soul")
        mem = soul["peak_pass_bytes"] / plain["peak_pass_bytes"] if plain["peak_pass_bytes"] else float("nan")
        print(
            f"{name}: Soul/plain time per pass {soul['seconds_per_pass'] / plain['seconds_per_pass']:.3f}x, "
            f"throughput {soul['tokens_per_second'] / plain['tokens_per_second']:.3f}x, "
            f"parameters {soul['parameters'] / plain['parameters']:.3f}x, peak pass memory {mem:.2f}x; "
            f"audio projector once per chunk {soul['projector_seconds_per_chunk'] * 1e3:.1f} ms"
        )
    flops = analytic_flops()
    print(
        f"wan22-ti2v-5b at 1280x704x121 ({flops['tokens']} tokens), analytic matmul FLOPs per pass: "
        f"plain {flops['plain_tflop']:.1f} TFLOP, Soul {flops['soul_tflop']:.1f} TFLOP, ratio {flops['ratio']:.3f}x"
    )


if __name__ == "__main__":
    main()
