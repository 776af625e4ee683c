"""A FLOP and memory-traffic model of base vs fast Soul sampling for the real 5B model (issue 16).

Every module is built at its real size on the `meta` device (no memory, no weights) and one call
of each is run on meta tensors of the real shapes under `torch.utils.flop_counter.FlopCounterMode`:

- the Soul transformer (diffusers `WanTransformer3DModel` + Soul's audio layers), called as the
  sampler calls it (per-token timesteps, windowed wav2vec2 features, audio frame mask);
- the full Wan2.2 VAE decoder (`decode_latents`, the causal per-frame decode) and the light
  decoder at its real widths (TAEHV's 256/128/64/64 for the real VAE);
- the portrait encode (full VAE encoder, one frame; both modes run it), the umT5 text encoder
  (base: prompt + negative prompt; fast: prompt only) and wav2vec2 over the chunk's audio.

Per video: base = steps x guidance passes x transformer forward (per chunk, each at the latent
frames the transformer really sees: anchor + motion prefix + new), + full decode, + encoders;
fast = 4 x 1 pass + light decode + encoders. The schedules come from the presets themselves
(`wan22-ti2v-5b` / `wan22-ti2v-5b-fast`) through `resolve_sampling`, the chunks from `plan_video`.

Attention: `scaled_dot_product_attention` is intercepted; its FLOPs as the counter sees them
(on meta it decomposes into two counted `bmm`s) are compared with 4 * Sq * Sk * d per call, and the
analytic value is added where the counter saw none (e.g. CPU's fused flash kernel). Elementwise
ops (norms, activations, RoPE, softmax) are not FLOPs here, as in FlopCounterMode.

Memory traffic (bytes through HBM, per call), two bounds from the same run:
- fused: every matmul/conv reads its inputs (activations and weights) and writes its output once,
  elementwise ops are fused into them, attention is a fused (flash) kernel that moves q, k, v and
  out once; this is what the roofline uses;
- eager: every non-view aten op reads all its inputs and writes its output (PyTorch eager without
  fusion; attention still fused).
Tensors count at the dtype they have in a bf16 model (diffusers keeps Wan's norms, time embedder
and modulation in float32). The projected GPU time of one call is the roofline
max(FLOPs / (peak x MFU), fused bytes / (HBM bandwidth x bandwidth utilisation)), summed over calls.

As a check, the same counting at the sizes `benchmarks/speed.py` measured on this CPU (mini, its
`scaled-5b`) and for mini's own base vs mini-fast on 20 s (the quality table), printed beside the
CPU seconds of one `benchmarks/speed.py` run, read from the files it wrote (`--measured DIR`, its
`--out`, default runs/speed-quality; without them those columns say "-"). Run (about a minute, 1 thread):

    .venv/bin/python benchmarks/speed.py && .venv/bin/python benchmarks/flop_model.py
    .venv/bin/python benchmarks/flop_model.py --frames 481     # a 20 s video: 5 chunks, motion prefix
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from soul.config import SoulConfig, load_preset
from soul.models.light_vae import LightDecoder, LightVAEConfig, light_vae_config_for
from soul.models.transformer import SOUL_PREFIXES, build_transformer
from soul.models.vae import build_vae, decode_latents, encode_frames
from soul.sampling.chunks import plan_video
from soul.sampling.layout import audio_frame_mask, latent_layout, token_timesteps
from soul.sampling.loop import as_velocity_model
from soul.sampling.settings import resolve_sampling

aten = torch.ops.aten
TERA = 1e12
GIGA = 1e9


@dataclass(frozen=True)
class GPU:
    """The assumed accelerator: H100 SXM5 (dense bf16 tensor-core peak, HBM3)."""

    name: str = "H100 SXM"
    peak_tflops: float = 989.0  # dense bf16 (1979 is the 2:4 sparse figure)
    hbm_tbps: float = 3.35
    mfu: float = 0.40  # achievable fraction of peak FLOP/s
    bw_util: float = 0.70  # achievable fraction of peak HBM bandwidth

    def seconds(self, cost: Cost, eager: bool = False) -> tuple[float, str]:
        """Roofline time of one call and what bounds it (with the eager traffic bound if `eager`)."""
        compute = cost.flops / (self.peak_tflops * TERA * self.mfu)
        memory = (cost.bytes_eager if eager else cost.bytes_fused) / (self.hbm_tbps * TERA * self.bw_util)
        return (compute, "compute") if compute >= memory else (memory, "memory")


# ------------------------------------------------------------------------------------ counting


@dataclass
class Cost:
    """One call's FLOPs and bytes. `flops` = the counter's total plus attention added analytically."""

    flops: float = 0.0
    attention_counted: float = 0.0  # FLOPs the counter attributed to scaled_dot_product_attention
    attention_analytic: float = 0.0  # 4 * Sq * Sk * d (per head, summed) over the same calls
    attention_added: float = 0.0  # analytic attention FLOPs added because the counter saw none
    bytes_fused: float = 0.0
    bytes_eager: float = 0.0
    weight_bytes: float = 0.0  # parameters of the modules run, at their dtype (read once)
    notes: list[str] = field(default_factory=list)

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            *(getattr(self, k) + getattr(other, k) for k in ("flops", "attention_counted", "attention_analytic", "attention_added", "bytes_fused", "bytes_eager", "weight_bytes")),
            notes=sorted(set(self.notes) | set(other.notes)),
        )

    def times(self, n: float) -> Cost:
        return Cost(
            *(getattr(self, k) * n for k in ("flops", "attention_counted", "attention_analytic", "attention_added", "bytes_fused", "bytes_eager", "weight_bytes")),
            notes=list(self.notes),
        )

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOPs per fused byte."""
        return self.flops / self.bytes_fused if self.bytes_fused else math.inf


_FREE = {
    aten.detach, aten.alias, aten._unsafe_view, aten.lift_fresh, aten.empty, aten.empty_strided,
    aten.empty_like, aten.new_empty, aten.new_empty_strided, aten._local_scalar_dense, aten.set_,
}
"""Ops that move no data (besides true views, recognised by `is_view`)."""
_COMPUTE = {aten.mm, aten.addmm, aten.bmm, aten.baddbmm, aten.convolution, aten._convolution, aten.matmul}
"""The ops the fused traffic bound keeps: elementwise work is assumed fused into these."""


def _nbytes(tree: Any) -> int:
    leaves, _ = tree_flatten(tree)
    return sum(t.numel() * t.element_size() for t in leaves if isinstance(t, torch.Tensor))


def attention_flops(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> float:
    """FLOPs of softmax(q k^T) v: 2 Sq Sk d (scores) + 2 Sq Sk d_v (weighted sum), over batch and heads."""
    *batch, sq, d = q.shape
    sk, dv = k.shape[-2], v.shape[-1]
    return float(math.prod(batch) * 2 * sq * sk * (d + dv))


class _CountingState:
    def __init__(self, flops: FlopCounterMode) -> None:
        self.flops = flops
        self.inside_attention = 0
        self.cost = Cost()


class _AttentionMode(TorchFunctionMode):
    """Sees every `F.scaled_dot_product_attention` before it decomposes: counts it as one fused kernel."""

    def __init__(self, state: _CountingState) -> None:
        super().__init__()
        self.state = state

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if func is not F.scaled_dot_product_attention:
            return func(*args, **kwargs)
        names = ("query", "key", "value", "attn_mask")
        given = dict(zip(names, args))
        given.update({k: v for k, v in kwargs.items() if k in names})
        q, k, v = given["query"], given["key"], given["value"]
        s = self.state
        before = s.flops.get_total_flops()
        s.inside_attention += 1
        try:
            out = func(*args, **kwargs)
        finally:
            s.inside_attention -= 1
        counted = s.flops.get_total_flops() - before
        analytic = attention_flops(q, k, v)
        s.cost.attention_counted += counted
        s.cost.attention_analytic += analytic
        if counted == 0:
            s.cost.attention_added += analytic
        moved = _nbytes((q, k, v, given.get("attn_mask"), out))
        s.cost.bytes_fused += moved
        s.cost.bytes_eager += moved
        return out


class _TrafficMode(TorchDispatchMode):
    """Adds up the bytes every aten op reads and writes (outside attention, counted as one kernel)."""

    def __init__(self, state: _CountingState) -> None:
        super().__init__()
        self.state = state

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.state.inside_attention or func.is_view or func.overloadpacket in _FREE:
            return out
        moved = _nbytes((args, kwargs)) + _nbytes(out)
        self.state.cost.bytes_eager += moved
        if func.overloadpacket in _COMPUTE:
            self.state.cost.bytes_fused += moved
        return out


def count(fn: Callable[..., Any], *args: Any, modules: Iterable[torch.nn.Module] = (), **kwargs: Any) -> tuple[Cost, Any]:
    """Run `fn(*args, **kwargs)` once under the counters; returns its `Cost` and its output.

    Works on meta tensors (no memory) and on real ones. `modules` are those whose parameters the
    call reads (for `weight_bytes`).
    """
    counter = FlopCounterMode(display=False)
    state = _CountingState(counter)
    with torch.no_grad(), counter, _TrafficMode(state), _AttentionMode(state):
        out = fn(*args, **kwargs)
    cost = state.cost
    cost.flops = float(counter.get_total_flops()) + cost.attention_added
    if cost.attention_added:
        cost.notes.append("attention FLOPs added analytically (the counter saw none)")
    seen: set[int] = set()
    for module in modules:
        for p in module.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                cost.weight_bytes += p.numel() * p.element_size()
    return cost, out


# ------------------------------------------------------------------------------------ models


@dataclass
class Models:
    """Every module of one size, on the meta device."""

    config: SoulConfig
    transformer: torch.nn.Module
    vae: torch.nn.Module
    light: LightDecoder
    text: torch.nn.Module
    audio: torch.nn.Module


def build_models(config: SoulConfig, light: LightVAEConfig, dtype: torch.dtype = torch.bfloat16) -> Models:
    """The preset's transformer (with audio layers), Wan VAE, light decoder, umT5 and wav2vec2 on meta."""
    from transformers import UMT5Config, UMT5EncoderModel, Wav2Vec2Config, Wav2Vec2Model

    transformer = build_transformer(config, dtype=dtype, meta=True).eval()
    vae = build_vae(config, dtype=dtype, meta=True).eval()
    with torch.device("meta"):
        light_decoder = LightDecoder(light).to(dtype).eval()
        text = UMT5EncoderModel(UMT5Config(**config.text_encoder.config)).to(dtype).eval()
        audio = Wav2Vec2Model(Wav2Vec2Config(**config.audio_encoder.config)).to(dtype).eval()
    return Models(config, transformer, vae, light_decoder, text, audio)


def count_transformer(models: Models, latent_frames: int, clean_frames: int, height: int, width: int) -> Cost:
    """One transformer pass over a chunk ``[anchor | motion | new]``, called as the sampler calls it."""
    cfg = models.config
    lat_h, lat_w = height // cfg.vae.scale_factor_spatial, width // cfg.vae.scale_factor_spatial
    dev = torch.device("meta")
    x = torch.empty(1, cfg.vae.z_dim, latent_frames, lat_h, lat_w, device=dev)
    t = token_timesteps(500.0, (latent_frames, lat_h, lat_w), tuple(cfg.transformer.patch_size), clean_frames, 1, dev)
    text = torch.empty(1, cfg.text_encoder.max_length, cfg.text_encoder.hidden_size, device=dev)
    audio = torch.empty(1, 1, latent_frames, cfg.audio.window, cfg.audio_encoder.num_hidden_states, cfg.audio_encoder.hidden_size, device=dev)
    model = as_velocity_model(models.transformer)
    cost, _ = count(
        model, hidden_states=x, timestep=t, encoder_hidden_states=text, audio_features=audio,
        audio_frame_mask=audio_frame_mask(latent_frames, clean_frames, 1, dev), audio_masks=None, modules=[models.transformer],
    )
    return cost


def analytic_transformer_flops(config: SoulConfig, latent_frames: int, height: int, width: int) -> dict[str, float]:
    """Closed-form matmul FLOPs of one transformer pass (the counter's cross-check)."""
    t, a = config.transformer, config.audio
    d, L, ffn = t.inner_dim, t.num_layers, t.ffn_dim
    p_t, p_h, p_w = t.patch_size
    lat_h, lat_w = height // config.vae.scale_factor_spatial, width // config.vae.scale_factor_spatial
    per_frame = (lat_h // p_h) * (lat_w // p_w)
    s = (latent_frames // p_t) * per_frame
    text_len, text_dim = config.text_encoder.max_length, t.text_dim
    k_audio = a.tokens_per_frame
    n_audio_layers = len(a.block_indices(L))
    patch = t.in_channels * p_t * p_h * p_w
    linear = 2 * s * L * (4 * d * d + 2 * d * d + 2 * d * ffn)  # self q,k,v,o; cross q,o; FFN
    linear += 2 * s * n_audio_layers * 2 * d * d  # audio q, o
    linear += 2 * text_len * L * 2 * d * d  # cross k, v on the text tokens
    linear += 2 * latent_frames * k_audio * n_audio_layers * 2 * d * d  # audio k, v on the audio tokens
    linear += 2 * text_len * (text_dim * d + d * d)  # text embedder
    linear += 2 * s * (t.freq_dim * d + d * d + d * 6 * d)  # per-token timestep embedding (TI2V)
    linear += 2 * s * patch * d * 2  # patch embedding + proj_out
    audio_in = a.window * config.audio_encoder.hidden_size
    linear += 2 * latent_frames * audio_in * config.audio_encoder.num_hidden_states  # projector's mix of wav2vec2 layers
    linear += 2 * latent_frames * (audio_in * a.projector_hidden_dim + a.projector_hidden_dim * k_audio * a.token_dim + k_audio * a.token_dim * d)
    attention = 4 * s * s * d * L + 4 * s * text_len * d * L + 4 * s * k_audio * d * n_audio_layers
    return {"tokens": float(s), "linear": float(linear), "attention": float(attention), "total": float(linear + attention)}


def count_decode(models: Models, kind: str, latent_frames: int, height: int, width: int) -> Cost:
    cfg = models.config
    z = torch.empty(1, cfg.vae.z_dim, latent_frames, height // cfg.vae.scale_factor_spatial, width // cfg.vae.scale_factor_spatial, device="meta")
    if kind == "light":
        return count(models.light, z, modules=[models.light])[0]
    return count(decode_latents, models.vae, z, modules=[models.vae.decoder, models.vae.post_quant_conv])[0]


def count_encode(models: Models, height: int, width: int) -> Cost:
    pixels = torch.empty(1, 3, 1, height, width, device="meta")
    return count(encode_frames, models.vae, pixels, modules=[models.vae.encoder, models.vae.quant_conv])[0]


def count_text(models: Models) -> Cost:
    # No attention mask: on meta the mask's "all ones?" shortcut cannot be evaluated; a padded
    # max_length prompt costs the same FLOPs either way.
    ids = torch.zeros(1, models.config.text_encoder.max_length, dtype=torch.long, device="meta")
    return count(lambda: models.text(input_ids=ids).last_hidden_state, modules=[models.text])[0]


def count_audio(models: Models, seconds: float) -> Cost:
    samples = torch.empty(1, int(round(seconds * models.config.audio_encoder.sample_rate)), device="meta", dtype=next(models.audio.parameters()).dtype)
    return count(lambda: models.audio(samples, output_hidden_states=True).hidden_states, modules=[models.audio])[0]


# ------------------------------------------------------------------------------------ scenarios


@dataclass(frozen=True)
class Mode:
    """How one mode samples: schedule length, passes per step, decoder, prompts encoded."""

    label: str
    steps: int
    passes: int
    vae: str
    prompts: int  # 2 when a pass needs the negative prompt


@dataclass(frozen=True)
class Scenario:
    name: str
    config: SoulConfig
    light: LightVAEConfig
    frames: int
    height: int
    width: int
    fps: float
    chunk_frames: int
    motion_latents: int
    base: Mode
    fast: Mode


def mode_of(config: SoulConfig, label: str, **overrides: Any) -> Mode:
    s = resolve_sampling(config, **overrides)
    return Mode(label, s.steps, s.guidance.num_passes(has_audio=True), s.vae, 2 if s.guidance.needs_negative_prompt() else 1)


def speed_py_base(config: SoulConfig) -> Mode:
    """benchmarks/speed.py's base: 50 UniPC steps, three passes forced on, full decoder."""
    text = config.sampling.text_scale if config.sampling.text_scale > 1 else 5.0
    audio = config.sampling.audio_scale if config.sampling.audio_scale > 1 else 4.0
    return mode_of(config, "speed.py base: 50 UniPC x 3 passes, full VAE", steps=50, sampler="unipc", guidance=True, text_scale=text, audio_scale=audio, vae="full")


def real_scenario(frames: int) -> Scenario:
    base_cfg, fast_cfg = load_preset("wan22-ti2v-5b"), load_preset("wan22-ti2v-5b-fast")
    s = resolve_sampling(base_cfg)
    return Scenario(
        "wan22-ti2v-5b", base_cfg, light_vae_config_for(base_cfg.vae), frames, s.height, s.width, s.fps, s.chunk_frames, s.motion_latents,
        mode_of(base_cfg, "base = wan22-ti2v-5b"), mode_of(fast_cfg, "fast = wan22-ti2v-5b-fast"),
    )


def _speed_module() -> Any:
    path = Path(__file__).resolve().parent / "speed.py"
    spec = importlib.util.spec_from_file_location("soul_bench_speed", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def mini_light() -> LightVAEConfig:
    """The shipped mini-fast light decoder's widths (what speed.py timed), else the TAEHV ratio."""
    cfg = load_preset("mini16")
    try:
        from soul.models.shipped import has_shipped_weights, shipped_info

        if has_shipped_weights("mini-fast"):
            info = shipped_info("mini-fast")["light_vae"]
            return replace(light_vae_config_for(cfg.vae), widths=tuple(info["widths"]), blocks_per_stage=int(info["blocks_per_stage"]))
    except (ImportError, KeyError, OSError):
        pass
    return light_vae_config_for(cfg.vae)


def check_scenarios() -> list[Scenario]:
    mini, mini_fast = load_preset("mini16"), load_preset("mini-fast")
    scaled = _speed_module().scaled_config()
    fast_5b = mode_of(load_preset("wan22-ti2v-5b-fast"), "fast = wan22-ti2v-5b-fast")
    out = [
        Scenario("mini16 (speed.py)", mini, mini_light(), 17, 64, 64, 16, 81, 2, speed_py_base(mini), mode_of(mini_fast, "fast = mini-fast")),
        Scenario("scaled-5b (speed.py)", scaled, light_vae_config_for(scaled.vae), 17, 256, 256, 16, 17, 2, speed_py_base(scaled), fast_5b),
    ]
    s = resolve_sampling(mini)
    out.append(Scenario("mini16 20 s (quality table)", mini, mini_light(), 321, s.height, s.width, s.fps, s.chunk_frames, s.motion_latents,
                        mode_of(mini, "base = mini"), mode_of(mini_fast, "fast = mini-fast")))
    return out


def measured_seconds(directory: Path) -> dict[str, dict[str, tuple[float, float]]]:
    """(base, fast) seconds per row, from the files `benchmarks/speed.py --out DIR` wrote in one run.

    `speed_timing.json` (its timing section: per config the base and fast calls per stage and the
    two decoders) and `speed_quality.json` (its quality section: mean seconds per 20 s video of
    `base`, `fast` and `fast-full`). Rows whose file is missing print "-": no figure is kept here.
    """
    out: dict[str, dict[str, tuple[float, float]]] = {}
    timing, quality = directory / "speed_timing.json", directory / "speed_quality.json"
    if timing.is_file():
        runs = json.loads(timing.read_text())
        for name, label in (("mini16", "mini16 (speed.py)"), ("scaled-5b", "scaled-5b (speed.py)")):
            r = runs.get(name)
            if r:
                base, fast = r["base"], r["fast"]
                out[label] = {"transformer": (base["transformer"], fast["transformer"]), "decoder": tuple(r["decoder"]),  # type: ignore[dict-item]
                              "vae stage": (base["vae"], fast["vae"]), "whole call": (base["total"], fast["total"])}
    if quality.is_file():
        t = json.loads(quality.read_text())["timing"]
        if {"base", "fast", "fast-full"} <= set(t):
            b, f, ff = t["base"]["total"], t["fast"]["total"], t["fast-full"]["total"]
            out["mini16 20 s (quality table)"] = {"whole call": (b, f), "sampling only (fast w/ full decoder)": (b, ff), "decoder only (fast w/ full vs light)": (ff, f)}
    return out


@dataclass
class Part:
    name: str
    unit: Cost
    base_calls: int
    fast_calls: int


def video_parts(sc: Scenario, models: Models) -> tuple[list[Part], dict[str, Any]]:
    """The parts of one video and how often each mode calls them."""
    layout = latent_layout(num_frames=sc.frames, height=sc.height, width=sc.width, patch_size=tuple(sc.config.transformer.patch_size),
                           scale_spatial=sc.config.vae.scale_factor_spatial, scale_temporal=sc.config.vae.scale_factor_temporal)
    plan = plan_video(sc.frames, sc.chunk_frames, sc.motion_latents)
    total_latents = (plan.generated_frames - 1) // 4 + 1
    shapes: dict[tuple[int, int], int] = {}  # (latent frames seen, clean prefix frames) -> chunks
    for chunk in plan.chunks:
        key = (chunk.model_latents, 1 + chunk.motion)
        shapes[key] = shapes.get(key, 0) + 1
    parts: list[Part] = []
    for (n_lat, clean), n_chunks in shapes.items():
        unit = count_transformer(models, n_lat, clean, sc.height, sc.width)
        prefix = f"{clean} clean" if clean > 1 else "anchor"
        parts.append(Part(f"transformer pass, {n_lat} latents ({prefix}) x{n_chunks} chunk{'s' if n_chunks > 1 else ''}", unit,
                          sc.base.steps * sc.base.passes * n_chunks, sc.fast.steps * sc.fast.passes * n_chunks))
    full = count_decode(models, "full", total_latents, sc.height, sc.width)
    light = count_decode(models, "light", total_latents, sc.height, sc.width)
    parts.append(Part(f"full Wan2.2 VAE decode, {total_latents} latents", full, int(sc.base.vae == "full"), int(sc.fast.vae == "full")))
    parts.append(Part(f"light decode, {total_latents} latents", light, int(sc.base.vae == "light"), int(sc.fast.vae == "light")))
    parts.append(Part("portrait encode (full VAE encoder)", count_encode(models, sc.height, sc.width), 1, 1))
    parts.append(Part(f"umT5 text encode, {sc.config.text_encoder.max_length} tokens", count_text(models), sc.base.prompts, sc.fast.prompts))
    # Each chunk's audio: its frames plus the encoder's 2 s context on the right (left clamps at 0 for chunk 0).
    audio_costs = Cost()
    for chunk in plan.chunks:
        seconds = 4 * (chunk.model_latents - 1) / sc.fps + 2.0 + (2.0 if chunk.index else 0.0)
        audio_costs = audio_costs + count_audio(models, seconds)
    parts.append(Part("wav2vec2 audio encode (all chunks)", audio_costs, 1, 1))
    info = {"latents": [1, sc.config.vae.z_dim, layout.latent_frames, layout.latent_height, layout.latent_width], "chunks": len(plan.chunks),
            "tokens": plan.chunks[0].model_latents // layout.patch_size[0] * layout.tokens_per_frame, "plan": plan, "total_latents": total_latents}
    return parts, info


def totals(parts: list[Part], gpu: GPU, which: str) -> tuple[Cost, float, float]:
    """Summed cost of one mode, and its projected seconds with the fused and with the eager traffic."""
    cost, fused, eager = Cost(), 0.0, 0.0
    for p in parts:
        n = p.base_calls if which == "base" else p.fast_calls
        if n:
            cost = cost + p.unit.times(n)
            fused += n * gpu.seconds(p.unit)[0]
            eager += n * gpu.seconds(p.unit, eager=True)[0]
    return cost, fused, eager


def _params(module: torch.nn.Module) -> float:
    return float(sum(p.numel() for p in module.parameters()))


# ------------------------------------------------------------------------------------ report


def report_real(sc: Scenario, gpu: GPU) -> dict[str, Any]:
    models = build_models(sc.config, sc.light)
    parts, info = video_parts(sc, models)
    tr = models.transformer
    soul = sum(p.numel() for n, p in tr.named_parameters() if n.startswith(SOUL_PREFIXES))
    print(f"[{sc.name}] {sc.width}x{sc.height}, {sc.frames} frames at {sc.fps:g} fps -> latents {info['latents']}; "
          f"{info['chunks']} chunk(s) of <= {sc.chunk_frames} frames, motion prefix {sc.motion_latents} latents after chunk 0; "
          f"{info['tokens']} tokens in a {info['plan'].chunks[0].model_latents}-latent pass")
    print(f"  parameters: transformer {_params(tr) / 1e9:.3f} B (backbone {(_params(tr) - soul) / 1e9:.3f} B + audio layers {soul / 1e9:.3f} B), "
          f"Wan2.2 VAE decoder {(_params(models.vae.decoder) + _params(models.vae.post_quant_conv)) / 1e6:.0f} M, encoder "
          f"{(_params(models.vae.encoder) + _params(models.vae.quant_conv)) / 1e6:.0f} M, light decoder {_params(models.light) / 1e6:.2f} M "
          f"(widths {list(sc.light.widths)}), umT5 {_params(models.text) / 1e9:.2f} B, wav2vec2 {_params(models.audio) / 1e6:.0f} M")
    print(f"  {sc.base.label}: {sc.base.steps} steps x {sc.base.passes} passes, {sc.base.vae} decoder | "
          f"{sc.fast.label}: {sc.fast.steps} steps x {sc.fast.passes} pass, {sc.fast.vae} decoder")
    print(f"  GPU model: {gpu.name}, {gpu.peak_tflops:g} TFLOP/s dense bf16 at {gpu.mfu:.0%} = {gpu.peak_tflops * gpu.mfu:.0f} TFLOP/s; "
          f"HBM {gpu.hbm_tbps:g} TB/s at {gpu.bw_util:.0%}; bf16 weights and activations (norms/time embedding fp32 as diffusers keeps them)")
    print()
    header = f"  {'part (one call)':50s} {'base':>5s} {'fast':>5s} {'TFLOP':>10s} {'attn TFLOP ctr/analytic':>24s} {'weights GB':>10s} {'fused GB':>9s} {'eager GB':>9s} {'FLOP/B':>7s} {'H100 s':>8s} {'eager s':>8s}"
    print(header)
    for p in parts:
        u = p.unit
        sec, bound = gpu.seconds(u)
        attn = f"{u.attention_counted / TERA:.2f}/{u.attention_analytic / TERA:.2f}" if u.attention_analytic else "-"
        print(f"  {p.name:50s} {p.base_calls:5d} {p.fast_calls:5d} {u.flops / TERA:10.3f} {attn:>24s} {u.weight_bytes / GIGA:10.2f} "
              f"{u.bytes_fused / GIGA:9.1f} {u.bytes_eager / GIGA:9.1f} {u.intensity:7.0f} {sec:8.3f} {gpu.seconds(u, eager=True)[0]:8.3f}{'' if bound == 'compute' else '  fused-bound: memory'}")
    first = parts[0].unit
    ana = analytic_transformer_flops(sc.config, info["plan"].chunks[0].model_latents, sc.height, sc.width)
    print(f"  check, transformer pass ({info['plan'].chunks[0].model_latents} latents): counter {first.flops / TERA:.2f} TFLOP "
          f"(attention {first.attention_counted / TERA:.2f} counted by FlopCounterMode, {first.attention_added / TERA:.2f} added) vs closed form "
          f"{ana['total'] / TERA:.2f} (linear {ana['linear'] / TERA:.2f} + attention {ana['attention'] / TERA:.2f}): "
          f"{100 * (first.flops / ana['total'] - 1):+.2f} %")
    notes = sorted({n for p in parts for n in p.unit.notes})
    print(f"  attention: {'; '.join(notes) if notes else 'every scaled_dot_product_attention was counted by FlopCounterMode (as bmm on meta); none added'}")
    print()
    out: dict[str, Any] = {}
    for which in ("base", "fast"):
        cost, seconds, eager_seconds = totals(parts, gpu, which)
        out[which] = (cost, seconds, eager_seconds)
        tr_parts = [p for p in parts if p.name.startswith("transformer")]
        tr_flops = sum(p.unit.flops * (p.base_calls if which == "base" else p.fast_calls) for p in tr_parts)
        forwards = sum(p.base_calls if which == "base" else p.fast_calls for p in tr_parts)
        weights = sum(p.unit.weight_bytes * (p.base_calls if which == "base" else p.fast_calls) for p in tr_parts)
        print(f"  {which}: {forwards} transformer passes, {cost.flops / TERA:,.0f} TFLOP ({100 * tr_flops / cost.flops:.1f} % transformer); "
              f"transformer weights read {weights / GIGA:,.0f} GB; fused traffic {cost.bytes_fused / 1e12:.2f} TB, eager {cost.bytes_eager / 1e12:.2f} TB; "
              f"intensity {cost.intensity:,.0f} FLOP/B; projected {seconds:.2f} s on one {gpu.name} ({eager_seconds:.2f} s with eager traffic)")
    return out


def report_checks(gpu: GPU, measured_by_row: dict[str, dict[str, tuple[float, float]]]) -> None:
    print("Check: FLOP ratios at the sizes timed on this CPU beside one benchmarks/speed.py run's seconds (--measured) "
          "(speed.py rows: its timing section, 1 thread, 17 frames; quality-table rows: mean generation call per 20 s video)")
    print(f"  {'config':27s} {'part':44s} {'GFLOP base':>10s} {'GFLOP fast':>10s} {'FLOP ratio':>10s} {'eager-B ratio':>13s} {'CPU ratio':>9s} {'CPU GFLOP/s b/f':>16s}")
    for sc in check_scenarios():
        models = build_models(sc.config, sc.light)
        parts, info = video_parts(sc, models)
        tr = [p for p in parts if p.name.startswith("transformer")]
        by = {p.name: p for p in parts}
        full = next(p for p in parts if p.name.startswith("full"))
        light = next(p for p in parts if p.name.startswith("light"))
        enc = by["portrait encode (full VAE encoder)"]

        def amount(selected: list[Part], which: str, what: str = "flops") -> float:
            return sum(getattr(p.unit, what) * (p.base_calls if which == "base" else p.fast_calls) for p in selected)

        # (FLOPs base, FLOPs fast, eager bytes base, eager bytes fast)
        rows: dict[str, tuple[float, float, float, float]] = {
            "transformer": (amount(tr, "base"), amount(tr, "fast"), amount(tr, "base", "bytes_eager"), amount(tr, "fast", "bytes_eager")),
            "decoder": (full.unit.flops, light.unit.flops, full.unit.bytes_eager, light.unit.bytes_eager),
            "vae stage": (full.unit.flops + enc.unit.flops, light.unit.flops + enc.unit.flops,
                          full.unit.bytes_eager + enc.unit.bytes_eager, light.unit.bytes_eager + enc.unit.bytes_eager),
            "whole call": (amount(parts, "base"), amount(parts, "fast"), amount(parts, "base", "bytes_eager"), amount(parts, "fast", "bytes_eager")),
        }
        if sc.name.startswith("mini16 20 s"):
            # the quality table's third column: fast sampling with the full decoder
            swap = [p for p in parts if not p.name.startswith(("full", "light"))]
            fast_full = (amount(swap, "fast") + full.unit.flops, amount(swap, "fast", "bytes_eager") + full.unit.bytes_eager)
            rows["sampling only (fast w/ full decoder)"] = (rows["whole call"][0], fast_full[0], rows["whole call"][2], fast_full[1])
            rows["decoder only (fast w/ full vs light)"] = (fast_full[0], rows["whole call"][1], fast_full[1], rows["whole call"][3])
        f_base = sum(p.base_calls for p in tr)
        f_fast = sum(p.fast_calls for p in tr)
        labels = {
            "transformer": f"transformer ({f_base} vs {f_fast} passes)",
            "decoder": f"decoder only (full vs light, {info['total_latents']} latents)",
            "vae stage": "vae stage (portrait encode + decode)",
            "whole call": "whole call" + (f" ({info['chunks']} chunks)" if sc.name.startswith("mini16 20 s") else ""),
        }
        measured = measured_by_row.get(sc.name, {})
        for key, (b, f, eb, ef) in rows.items():
            m = measured.get(key)
            cpu = f"{b / m[0] / GIGA:6.1f} / {f / m[1] / GIGA:6.1f}" if m else "-"
            print(f"  {sc.name:27s} {labels.get(key, key):44s} {b / GIGA:10.2f} {f / GIGA:10.2f} {b / f:9.1f}x {eb / ef:12.1f}x "
                  f"{(f'{m[0] / m[1]:.1f}x' if m else '-'):>9s} {cpu:>16s}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=None, help="video frames for the 5B model (default: the preset's chunk_frames, 121)")
    parser.add_argument("--peak-tflops", type=float, default=GPU.peak_tflops)
    parser.add_argument("--mfu", type=float, default=GPU.mfu)
    parser.add_argument("--hbm-tbps", type=float, default=GPU.hbm_tbps)
    parser.add_argument("--bw-util", type=float, default=GPU.bw_util)
    parser.add_argument("--no-checks", action="store_true", help="skip the CPU-size checks")
    parser.add_argument("--measured", type=Path, default=Path("runs/speed-quality"),
                        help="the --out directory of a benchmarks/speed.py run, whose seconds are printed beside the FLOP ratios")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    gpu = GPU(peak_tflops=args.peak_tflops, mfu=args.mfu, hbm_tbps=args.hbm_tbps, bw_util=args.bw_util)
    frames = args.frames or load_preset("wan22-ti2v-5b").sampling.chunk_frames
    print("Soul FLOP and memory-traffic model: real-size modules on the meta device, FlopCounterMode + a byte counter, one call each\n")
    real = real_scenario(frames)
    out = report_real(real, gpu)
    if not args.no_checks:
        print()
        report_checks(gpu, measured_seconds(args.measured))
    (b_cost, b_sec, b_eager), (f_cost, f_sec, f_eager) = out["base"], out["fast"]
    print(f"\n(model built and counted in {time.perf_counter() - started:.0f} s)")
    print(f"flop_ratio {real.name} base/fast ({real.width}x{real.height}, {real.frames} frames): {b_cost.flops / f_cost.flops:.1f}")
    print(f"traffic_ratio {real.name} base/fast (fused bytes): {b_cost.bytes_fused / f_cost.bytes_fused:.1f}")
    print(f"projected_seconds {real.name} ({gpu.name}, {gpu.peak_tflops:g} TFLOP/s x {gpu.mfu:.0%}, {gpu.hbm_tbps:g} TB/s x {gpu.bw_util:.0%}) "
          f"base: {b_sec:.1f}, fast: {f_sec:.2f} -> {b_sec / f_sec:.1f}x (eager traffic: base {b_eager:.1f}, fast {f_eager:.2f} -> {b_eager / f_eager:.1f}x)")


if __name__ == "__main__":
    main()
