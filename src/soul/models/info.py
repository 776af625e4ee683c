"""Sizes of a preset without weights: parameter counts, token counts and memory estimates.

Users decide which GPU (or whether a CPU) can run a preset before downloading 20 GB, and the
numbers must come from the real classes, not from a table that drifts from the code. So every
component is constructed from its real class and config on PyTorch's meta device (shapes only, no
memory, no download) and counted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from soul.config import SoulConfig
from soul.errors import InputError
from soul.models.transformer import SOUL_PREFIXES, build_transformer
from soul.models.vae import build_vae

BYTES = {"bf16": 2, "fp32": 4}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def parameter_counts(config: SoulConfig) -> dict[str, int]:
    """Parameters per component, each built from its real class on the meta device."""
    from transformers import UMT5Config, UMT5EncoderModel, Wav2Vec2Config, Wav2Vec2Model

    transformer = build_transformer(config, meta=True)
    soul = sum(p.numel() for k, p in transformer.named_parameters() if k.startswith(SOUL_PREFIXES))
    backbone = _count(transformer) - soul
    vae = build_vae(config, meta=True)
    with torch.device("meta"):
        text = UMT5EncoderModel(UMT5Config(**config.text_encoder.config))
        audio = Wav2Vec2Model(Wav2Vec2Config(**config.audio_encoder.config))
    counts = {
        "backbone": backbone,
        "soul_audio_layers": soul,
        "vae": _count(vae),
        "vae_encoder": _count(vae.encoder) + _count(vae.quant_conv),
        "vae_decoder": _count(vae.decoder) + _count(vae.post_quant_conv),
        "text_encoder": _count(text),
        "audio_encoder": _count(audio),
    }
    counts["total"] = sum(counts[k] for k in ("backbone", "soul_audio_layers", "vae", "text_encoder", "audio_encoder"))
    return counts


def check_video_size(config: SoulConfig, height: int, width: int, frames: int) -> None:
    """InputError unless the size fits the VAE and patch grid (sides k*32, frames 4k+1 for Wan2.2)."""
    step = config.spatial_multiple
    t = config.vae.scale_factor_temporal
    if height <= 0 or width <= 0 or height % step or width % step:
        raise InputError(f"--height/--width {height}x{width}", f"sides must be positive multiples of {step}", f"e.g. {config.sampling.height}x{config.sampling.width}")
    if frames <= 0 or (frames - 1) % t:
        raise InputError(f"--frames {frames}", f"frame counts must be {t}k+1", f"e.g. {config.sampling.chunk_frames}")


def token_counts(config: SoulConfig, height: int, width: int, frames: int, streams: int = 1) -> dict[str, int]:
    """Latent grid and sequence lengths the transformer sees for one chunk of this size."""
    check_video_size(config, height, width, frames)
    p_t, p_h, p_w = config.transformer.patch_size
    latent_frames = (frames - 1) // config.vae.scale_factor_temporal + 1
    latent_h = height // config.vae.scale_factor_spatial
    latent_w = width // config.vae.scale_factor_spatial
    per_frame = (latent_h // p_h) * (latent_w // p_w)
    video = (latent_frames // p_t) * per_frame
    audio_keys = streams * config.audio.tokens_per_frame + (1 if streams > 1 else 0)
    return {
        "latent_frames": latent_frames,
        "latent_height": latent_h,
        "latent_width": latent_w,
        "latent_channels": config.vae.z_dim,
        "video_tokens_per_latent_frame": per_frame,
        "video_tokens": video,
        "text_tokens": config.text_encoder.max_length,
        "audio_tokens_per_latent_frame": audio_keys,
    }


def activation_estimate(config: SoulConfig, tokens: dict[str, int], dtype: str = "bf16") -> dict[str, int]:
    """Rough peak activation bytes of one transformer forward pass (batch 1, inference).

    Largest live set inside one block: the residual stream, q/k/v/output of attention, the FFN
    hidden layer (and its GELU output), plus TI2V's per-token modulation (6 x dim per token,
    kept in the model dtype across blocks and expanded to fp32 inside each block). With a fused
    attention kernel (flash / memory-efficient SDPA) no S x S matrix exists; the unfused "math"
    path would also hold heads x S x S scores, given separately because it dominates at 5B sizes.
    """
    b = BYTES[dtype]
    t = config.transformer
    seq, dim = tokens["video_tokens"], t.inner_dim
    residual = seq * dim * b
    attention_io = 4 * seq * dim * b
    ffn = 2 * seq * t.ffn_dim * b
    modulation = seq * 6 * dim * b + seq * 6 * dim * 4
    audio = tokens["latent_frames"] * tokens["audio_tokens_per_latent_frame"] * dim * b * 3
    block_peak = residual + attention_io + ffn + modulation + audio
    return {
        "residual_stream": residual,
        "attention_qkvo": attention_io,
        "ffn_hidden": ffn,
        "per_token_modulation": modulation,
        "audio_tokens_kv": audio,
        "block_peak_fused_attention": block_peak,
        "attention_scores_if_unfused": t.num_attention_heads * seq * seq * b,
    }


def model_info(config: SoulConfig, height: int | None = None, width: int | None = None, frames: int | None = None) -> dict[str, Any]:
    """Everything `soul info` reports, as one JSON-serialisable dict."""
    height = height or config.sampling.height
    width = width or config.sampling.width
    frames = frames or config.sampling.chunk_frames
    counts = parameter_counts(config)
    tokens = token_counts(config, height, width, frames)
    weights = {
        dtype: {k: v * size for k, v in counts.items() if k not in ("vae_encoder", "vae_decoder")}
        for dtype, size in BYTES.items()
    }
    activations = {dtype: activation_estimate(config, tokens, dtype) for dtype in BYTES}
    denoiser = weights["bf16"]["backbone"] + weights["bf16"]["soul_audio_layers"]
    return {
        "preset": config.name,
        "video": {"height": height, "width": width, "frames": frames, "fps": config.sampling.fps, "seconds": round(frames / config.sampling.fps, 3)},
        "parameters": counts,
        "parameters_billions": {k: round(v / 1e9, 4) for k, v in counts.items()},
        "tokens": tokens,
        "memory_bytes": {
            "weights": weights,
            "activations_per_pass": activations,
            "denoise_pass_bf16_fused_attention": denoiser + activations["bf16"]["block_peak_fused_attention"],
        },
        "memory_notes": {
            "weights": "parameters x 2 bytes (bf16) or 4 bytes (fp32); diffusers keeps a few norms and the time embedder in fp32, which adds well under 1%.",
            "activations_per_pass": "one transformer forward at batch 1 with no gradients: the largest set of tensors alive inside one block. Classifier-free guidance runs 3 passes (text, audio, none); batched they triple this, sequential they do not.",
            "attention_scores_if_unfused": "heads x S^2 scores, only materialised by the unfused math attention path; flash / memory-efficient SDPA never hold them.",
            "denoise_pass_bf16_fused_attention": "transformer weights (backbone + Soul layers) plus one pass's activation peak in bf16; the text encoder, audio encoder and VAE can be offloaded to the CPU between uses.",
            "not_included": "VAE decoding memory (the decoder works one latent frame at a time with a feature cache; use tiling for large frames) and training (gradients + optimizer state: about 16 bytes per trained parameter with AdamW in mixed precision).",
        },
    }


# ------------------------------------------------------------------------------------------------
# Multi-GPU inference: Ulysses sequence parallelism and guidance (CFG) parallelism


@dataclass(frozen=True)
class Hardware:
    """Assumed speeds of one GPU and its links, for the time estimate only (nothing is measured).

    Defaults: an H100-class GPU in an NVLink/NVSwitch node. ``tflops`` is *sustained* dense bf16
    throughput (about 40 % of the H100 SXM's 989 TFLOP/s peak, typical of a DiT's large GEMMs and
    flash attention); ``link_gbs`` the bytes per second one GPU sends in an all-to-all or
    all-gather (below NVLink 4's 450 GB/s per direction: messages here are tens of MB split
    over peers); ``latency_us`` the fixed cost of one collective. Over PCIe use ~25 GB/s.
    """

    tflops: float = 400.0
    link_gbs: float = 200.0
    latency_us: float = 25.0


def _linear_shapes(module: torch.nn.Module) -> list[tuple[str, int, int]]:
    return [(name, m.in_features, m.out_features) for name, m in module.named_modules() if isinstance(m, torch.nn.Linear)]


def pass_flops(transformer: torch.nn.Module, tokens: dict[str, int], degree: int = 1) -> dict[str, float]:
    """FLOPs (2 per multiply-add) of one transformer forward at batch 1, as one of ``degree``
    Ulysses ranks computes them, from the Linear layers of the real (meta-device) modules.

    Per rank under Ulysses: every projection of video tokens and every attention product is cut
    ``degree`` ways (the rank's ``S/U`` tokens, or its ``H/U`` heads over all ``S`` tokens in
    self-attention); the key/value projections of the text and audio tokens are not (each rank
    projects the full, unsplit context for its own query shard). Left out, under 0.1 %: the text
    embedder (512 tokens once) and the audio projector.
    """
    seq, text, dim = tokens["video_tokens"], tokens["text_tokens"], transformer.config.num_attention_heads * transformer.config.attention_head_dim
    audio_per_frame = tokens["audio_tokens_per_latent_frame"]
    audio = tokens["latent_frames"] * audio_per_frame
    split = {"video_linear": 0.0, "attention": 0.0}
    context_linear = 0.0
    for block in transformer.blocks:
        for name, fan_in, fan_out in _linear_shapes(block):
            if name in ("attn2.to_k", "attn2.to_v", "attn2.add_k_proj", "attn2.add_v_proj"):
                context_linear += 2 * text * fan_in * fan_out
            else:
                split["video_linear"] += 2 * seq * fan_in * fan_out
        split["attention"] += 4 * seq * seq * dim + 4 * seq * text * dim  # self: QK^T and AV; text cross
    for layer in transformer.audio_layers.values():
        for name, fan_in, fan_out in _linear_shapes(layer):
            if name in ("attn.to_k", "attn.to_v"):
                context_linear += 2 * audio * fan_in * fan_out
            else:
                split["video_linear"] += 2 * seq * fan_in * fan_out
        split["attention"] += 4 * seq * audio_per_frame * dim  # frame-local: each token meets its frame's K tokens
    p_t, p_h, p_w = transformer.config.patch_size
    patch_in = transformer.config.in_channels * p_t * p_h * p_w
    embed = transformer.condition_embedder
    per_token_time = sum(2 * fi * fo for _, fi, fo in _linear_shapes(embed.time_embedder) + _linear_shapes(embed.time_proj))
    split["video_linear"] += 2 * seq * patch_in * dim + 2 * seq * dim * transformer.proj_out.out_features + seq * per_token_time  # TI2V: a timestep per token
    per_rank = (split["video_linear"] + split["attention"]) / degree + context_linear
    return {"video_linear": split["video_linear"], "attention": split["attention"], "context_linear": context_linear, "per_rank": per_rank}


@dataclass(frozen=True)
class _PlanContext:
    """What every layout of one parallel plan shares (see ``parallel_plan``)."""

    config: SoulConfig
    transformer: Any
    tokens: dict[str, Any]
    seq: int
    dim: int
    layers: int
    heads: int
    out: int
    latent: int
    params: int
    weights: int
    b: int
    passes: int
    dtype: str
    hardware: Hardware


def _layout_row(ctx: _PlanContext, n: int, u: int, c: int) -> dict[str, Any]:
    """One layout: ``n`` GPUs as ``c`` guidance groups of ``u`` Ulysses ranks.

    Per rank, with ``S`` video tokens of one chunk, model
    width ``D``, ``L`` blocks, ``b`` bytes per element (bf16: 2):

    - tokens per rank ``S / U`` (an even split of the frame-major sequence; ranks x tokens = S),
      heads per rank ``H / U``; passes per rank per step ``ceil(passes / C)`` (pass i runs on
      guidance rank i mod C);
    - weights: the whole denoiser on every rank (Ulysses and CFG replicate weights; only tokens
      and passes are split): ``params x b``;
    - activations: ``activation_estimate`` of one pass with ``S / U`` tokens (the frame-local
      audio tokens of all frames are replicated), plus Ulysses' buffers: the head-sharded copies
      of q, k, v next to the sequence-sharded ones (``3 (S/U) D b``) and the gathered output
      (``S x out x b``);
    - communication, bytes one rank sends per denoising step (it receives as many):
      Ulysses all-to-alls, 4 per self-attention (q, k, v in, the output back), each moving the
      rank's ``(S/U) x D`` tensor and keeping ``1/U`` of it::

          a2a = passes_per_rank x L x 4 x (S/U) x D x b x (U-1)/U

      plus the all-gather of ``proj_out``'s output (every rank returns the whole velocity),
      ``passes_per_rank x (U-1)/U x S x out x b``, and, with ``C > 1``, the guidance all-gather
      of each rank's predictions (float32 latents) ``(C-1) x passes_per_rank x latent x 4``.
      Cross-attentions (text, audio) need no communication: the query shard meets full keys;
    - time per step (an estimate): ``passes_per_rank x (FLOPs per rank / tflops + a2a /
      link + (4L + 1) x latency) + guidance gather``, no overlap of communication with
      compute assumed, and GEMMs assumed as efficient on ``S/U`` tokens as on ``S``; relative
      to the same formula at N = 1. Text / audio encoding and VAE decoding are not included
      (they are not split; the decoder runs on the writing rank only).
    """
    row: dict[str, Any] = {"gpus": n, "ulysses": u, "cfg": c}
    problems = [why for bad, why in (
        (ctx.heads % u, f"ulysses={u} does not divide {ctx.heads} heads"),
        (ctx.seq % u, f"ulysses={u} does not divide {ctx.seq} tokens"),
        (c > ctx.passes, f"cfg={c} exceeds {ctx.passes} passes"),
    ) if bad]
    if problems:
        return {**row, "feasible": False, "reason": "; ".join(problems)}
    local = ctx.seq // u
    slots = math.ceil(ctx.passes / c)
    act = activation_estimate(ctx.config, {**ctx.tokens, "video_tokens": local}, ctx.dtype)
    buffers = (3 * local * ctx.dim * ctx.b + ctx.seq * ctx.out * ctx.b) if u > 1 else 0
    a2a_call = 4 * local * ctx.dim * ctx.b * (u - 1) // u
    a2a = slots * ctx.layers * a2a_call
    gather_out = slots * (u - 1) * local * ctx.out * ctx.b
    cfg_gather = (c - 1) * slots * ctx.latent * 4
    flops = pass_flops(ctx.transformer, ctx.tokens, u)
    collectives = (4 * ctx.layers + 1) if u > 1 else 0
    pass_s = flops["per_rank"] / (ctx.hardware.tflops * 1e12) + (a2a_call * ctx.layers + gather_out / slots) / (ctx.hardware.link_gbs * 1e9) + collectives * ctx.hardware.latency_us * 1e-6
    step_s = slots * pass_s + ((cfg_gather / (ctx.hardware.link_gbs * 1e9) + ctx.hardware.latency_us * 1e-6) if c > 1 else 0.0)
    return {
        **row,
        "feasible": True,
        "tokens_per_rank": local,
        "heads_per_rank": ctx.heads // u,
        "passes_per_rank_per_step": slots,
        "parameters_per_rank": ctx.params,
        "weights_bytes_per_rank": ctx.weights,
        "activation_bytes_per_rank": act["block_peak_fused_attention"] + buffers,
        "ulysses_buffer_bytes": buffers,
        "memory_bytes_per_rank": ctx.weights + act["block_peak_fused_attention"] + buffers,
        "all_to_all_bytes_per_call": a2a_call,
        "all_to_all_bytes_per_step": a2a,
        "output_gather_bytes_per_step": gather_out,
        "cfg_gather_bytes_per_step": cfg_gather,
        "comm_bytes_per_step": a2a + gather_out + cfg_gather,
        "flops_per_rank_per_pass": flops["per_rank"],
        "est_step_seconds": step_s,
    }


def parallel_plan(
    config: SoulConfig,
    *,
    passes: int,
    steps: int,
    height: int | None = None,
    width: int | None = None,
    frames: int | None = None,
    gpus: tuple[int, ...] = (1, 2, 4, 8),
    hardware: Hardware = Hardware(),
    dtype: str = "bf16",
) -> dict[str, Any]:
    """Memory, communication and an estimated time per GPU for sampling one chunk on 1..N GPUs.

    Layouts are those ``soul generate --parallel ulysses=U,cfg=C`` runs (``soul.parallel``):
    ``C`` guidance groups of ``U`` ranks, ``U * C = N``, ``C <= passes``, ``U`` dividing the
    attention heads and the chunk's tokens. The per-rank formulas are in ``_layout_row``.
    """
    from soul.models.transformer import build_transformer

    height = height or config.sampling.height
    width = width or config.sampling.width
    frames = frames or config.sampling.chunk_frames
    b = BYTES[dtype]
    tokens = token_counts(config, height, width, frames)
    transformer = build_transformer(config, meta=True)
    t = config.transformer
    seq, dim, layers, heads = tokens["video_tokens"], t.inner_dim, t.num_layers, t.num_attention_heads
    out = transformer.proj_out.out_features
    latent = tokens["latent_channels"] * tokens["latent_frames"] * tokens["latent_height"] * tokens["latent_width"]
    params = _count(transformer)
    weights = params * b
    ctx = _PlanContext(config, transformer, tokens, seq, dim, layers, heads, out, latent, params, weights, b, passes, dtype, hardware)
    rows = []
    for n in gpus:
        for c in range(1, n + 1):
            if n % c == 0 and c <= max(passes, 1):
                rows.append(_layout_row(ctx, n, n // c, c))
    base = _layout_row(ctx, 1, 1, 1)["est_step_seconds"]
    for row in rows:
        if row["feasible"]:
            row["est_relative_time"] = row["est_step_seconds"] / base
            row["est_speedup"] = base / row["est_step_seconds"]
            row["est_chunk_seconds"] = row["est_step_seconds"] * steps
    flops_1 = pass_flops(transformer, tokens, 1)
    return {
        "preset": config.name,
        "video": {"height": height, "width": width, "frames": frames},
        "tokens": tokens,
        "passes_per_step": passes,
        "steps": steps,
        "dtype": dtype,
        "denoiser_parameters": params,
        "flops_per_pass": flops_1,
        "hardware": asdict(hardware),
        "layouts": rows,
        "notes": {
            "formulas": "see soul.models.info._layout_row's docstring",
            "time": "an estimate from FLOPs and bytes under the stated hardware assumptions, not a measurement",
            "memory": "weights + one pass's activation peak per rank; text/audio encoders and the VAE are extra (offloadable)",
        },
    }


def _size(n: float) -> str:
    for power, suffix in ((3, "GiB"), (2, "MiB"), (1, "KiB")):
        if n >= 1024**power:
            return f"{n / 1024**power:.2f} {suffix}"
    return f"{n:.0f} B"


def _seconds(t: float) -> str:
    return f"{t:.2f} s" if t >= 1 else f"{t * 1e3:.0f} ms" if t >= 1e-3 else f"{t * 1e6:.0f} us"


def parallel_plan_markdown(plan: dict[str, Any]) -> str:
    """The plan as a Markdown table (the README's is this output, pasted)."""
    lines = [
        "| GPUs | layout | tokens / rank | heads / rank | passes / rank / step | weights / rank | activations / rank | total / rank | sent / rank / step | est. step | est. time vs 1 GPU |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in plan["layouts"]:
        name = f"ulysses={r['ulysses']},cfg={r['cfg']}"
        if not r["feasible"]:
            lines.append(f"| {r['gpus']} | {name} | - | - | - | - | - | - | - | - | not possible: {r['reason']} |")
            continue
        lines.append(
            f"| {r['gpus']} | {name} | {r['tokens_per_rank']} | {r['heads_per_rank']} | {r['passes_per_rank_per_step']} "
            f"| {_size(r['weights_bytes_per_rank'])} | {_size(r['activation_bytes_per_rank'])} | {_size(r['memory_bytes_per_rank'])} "
            f"| {_size(r['comm_bytes_per_step'])} | {_seconds(r['est_step_seconds'])} | {r['est_relative_time']:.2f} ({r['est_speedup']:.1f}x) |"
        )
    return "\n".join(lines)
