"""Sizes of a preset without weights: parameter counts, token counts and memory estimates.

Users decide which GPU (or whether a CPU) can run a preset before downloading 20 GB, and the
numbers must come from the real classes, not from a table that drifts from the code. So every
component is constructed from its real class and config on PyTorch's meta device (shapes only, no
memory, no download) and counted.
"""

from __future__ import annotations

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
