"""The Wan2.2 video VAE (diffusers `AutoencoderKLWan`) and the latent normalisation Soul uses.

The transformer was trained on per-channel standardised latents `(z - mean) / std` with the 48
statistics stored in the VAE's config. Every place that moves between pixels and the transformer
(portrait encoding, motion prefixes, decoding, training data) must apply exactly the same
statistics, so they live here and are read from the VAE's own config rather than copied around.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLWan

from soul.config import SoulConfig, VAEConfig
from soul.errors import InputError
from soul.models.transformer import cast_model


def build_vae(
    config: SoulConfig | VAEConfig,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    meta: bool = False,
) -> AutoencoderKLWan:
    """A randomly initialised `AutoencoderKLWan` for a preset (on the meta device if `meta`)."""
    vae_config = config.vae if isinstance(config, SoulConfig) else config
    if meta:
        with torch.device("meta"):
            return cast_model(AutoencoderKLWan(**vae_config.kwargs()), dtype)
    return cast_model(AutoencoderKLWan(**vae_config.kwargs()).to(device), dtype).eval()


def load_vae(
    checkpoint: str | Path,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> AutoencoderKLWan:
    """Load `vae/` of a diffusers-layout checkpoint (e.g. Wan2.2-TI2V-5B-Diffusers)."""
    folder = Path(checkpoint) / "vae"
    if not (folder / "config.json").is_file():
        raise InputError(folder / "config.json", "missing", "download the checkpoint with `soul download`")
    if not any(folder.glob("*.safetensors")):
        raise InputError(folder / "diffusion_pytorch_model.safetensors", "missing", "download the checkpoint with `soul download`")
    return AutoencoderKLWan.from_pretrained(folder, torch_dtype=dtype).to(device).eval()


def latent_stats(vae: AutoencoderKLWan, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std `[1, C, 1, 1, 1]` from the VAE's config, on `like`'s device/dtype."""
    mean = torch.tensor(vae.config.latents_mean, dtype=torch.float32, device=like.device)
    std = torch.tensor(vae.config.latents_std, dtype=torch.float32, device=like.device)
    shape = (1, mean.numel(), 1, 1, 1)
    return mean.view(shape).to(like.dtype), std.view(shape).to(like.dtype)


def _check_latents(z: torch.Tensor, vae: AutoencoderKLWan) -> None:
    if z.ndim != 5 or z.shape[1] != vae.config.z_dim:
        raise InputError("latents", f"shape {tuple(z.shape)} is not [B, {vae.config.z_dim}, F, H, W]", "pass 5-D Wan latents")


def normalize_latents(z: torch.Tensor, vae: AutoencoderKLWan) -> torch.Tensor:
    """Raw VAE latents -> the standardised latents the transformer works in."""
    _check_latents(z, vae)
    mean, std = latent_stats(vae, z)
    return (z - mean) / std


def denormalize_latents(z: torch.Tensor, vae: AutoencoderKLWan) -> torch.Tensor:
    """Standardised latents -> raw VAE latents, ready for the decoder."""
    _check_latents(z, vae)
    mean, std = latent_stats(vae, z)
    return z * std + mean


def encode_frames(
    vae: AutoencoderKLWan,
    video: torch.Tensor,
    *,
    sample: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Video `[B, 3, T, H, W]` in [-1, 1] -> normalised latents `[B, z, (T-1)/4+1, H/16, W/16]`.

    The posterior mean is used unless `sample` is set: conditioning frames (the portrait, motion
    prefixes) should be deterministic; training may want samples.
    """
    t_factor = vae.config.scale_factor_temporal or 4
    s_factor = vae.config.scale_factor_spatial or 16
    if video.ndim != 5 or video.shape[1] != 3:
        raise InputError("video", f"shape {tuple(video.shape)} is not [B, 3, T, H, W]", "pass RGB frames as a 5-D tensor")
    _, _, frames, height, width = video.shape
    if (frames - 1) % t_factor:
        raise InputError("video", f"{frames} frames", f"use {t_factor}k+1 frames (1, 5, 9, ...)")
    if height % s_factor or width % s_factor:
        raise InputError("video", f"size {width}x{height}", f"use sides that are multiples of {s_factor}")
    param = next(vae.parameters())
    dist = vae.encode(video.to(device=param.device, dtype=param.dtype)).latent_dist
    z = dist.sample(generator) if sample else dist.mode()
    return normalize_latents(z, vae)


def decode_latents(vae: AutoencoderKLWan, z: torch.Tensor) -> torch.Tensor:
    """Normalised latents `[B, z, F, h, w]` -> video `[B, 3, 4(F-1)+1, 16h, 16w]` in [-1, 1]."""
    param = next(vae.parameters())
    raw = denormalize_latents(z.to(device=param.device, dtype=param.dtype), vae)
    return vae.decode(raw).sample.clamp(-1.0, 1.0)


class StreamingDecoder:
    """Decode a latent sequence that arrives in pieces, with the VAE's causal feature cache.

    The Wan decoder is causal in time: latent frame ``k`` needs only a small cache of activations
    from the frames before it (two time steps per causal conv), never the frames themselves. So a
    long video can be decoded as its chunks finish, in memory that does not grow with its length,
    and the result equals one ``decode_latents`` call on the whole sequence (up to float rounding;
    the same pieces in the same order give bit-identical frames). Latent frame 0 yields one video
    frame, every later latent frame four.

    The cache lives in this object, not in the VAE's own ``_feat_map``, so an ordinary
    ``vae.decode`` (or a second stream) in between does not corrupt it. Spatial tiling is not
    applied here: memory is already bounded by one latent frame at a time.
    """

    def __init__(self, vae: AutoencoderKLWan) -> None:
        self.vae = vae
        counts = getattr(vae, "_cached_conv_counts", None)
        if counts is None:  # older diffusers: count the causal convs of the decoder
            from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

            num = sum(isinstance(m, WanCausalConv3d) for m in vae.decoder.modules())
        else:
            num = counts["decoder"]
        self._cache: list[torch.Tensor | None] = [None] * num
        self.latents_seen = 0

    @torch.no_grad()
    def push(self, z: torch.Tensor) -> torch.Tensor:
        """Decode the next latent frames ``[B, C, n, h, w]`` (normalised) -> video ``[B, 3, T, H, W]`` in [-1, 1]."""
        from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

        _check_latents(z, self.vae)
        param = next(self.vae.parameters())
        raw = denormalize_latents(z.to(device=param.device, dtype=param.dtype), self.vae)
        x = self.vae.post_quant_conv(raw)  # kernel 1 in time: frame-local, no cache needed
        outs = []
        for i in range(x.shape[2]):
            out = self.vae.decoder(x[:, :, i : i + 1], feat_cache=self._cache, feat_idx=[0], first_chunk=self.latents_seen == 0)
            self.latents_seen += 1
            if self.vae.config.patch_size is not None:
                out = unpatchify(out, patch_size=self.vae.config.patch_size)
            outs.append(out.clamp(-1.0, 1.0))
        return torch.cat(outs, dim=2)


def frames_to_uint8(video: torch.Tensor) -> np.ndarray:
    """VAE output ``[1, 3, T, H, W]`` in [-1, 1] -> ``[T, H, W, 3]`` uint8."""
    x = ((video[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).contiguous().cpu().numpy()
