"""A light, conv-only video decoder for Soul's latents (DESIGN 5, "Light VAE").

On a CPU the full Wan2.2 decoder dominates a pipeline call (REFERENCE: ~90 % at 81 frames 256²):
its 3-D causal convolutions run at full width on every frame. This decoder follows the TAEHV idea
instead: every layer is a 2-D conv applied per frame; time is mixed only by "memory blocks" (each
sees its own input and the previous frame's) and grown by 1x1 "time-grow" convs that split one
frame's channels into several frames. Three x2 spatial upsamples and a final pixel shuffle (patch
2) give Wan2.2's 16x spatial factor; two time-grow stages give its 4x temporal factor. For an 8x
VAE (the miniature `mini`) the first stage keeps its size (``space_upscale``): its upsample becomes
an identity at the same index, so the module layout, and TAEHV's key names, stay as they are.

Conventions (checked against ``AutoencoderKLWan``):
- input: Soul's *normalised* latents ``[B, 48, F, h, w]``; they are un-normalised here with the
  full VAE's ``latents_mean/std`` (the light decoder, like TAEHV, works on raw latents);
- output: frames ``[B, 3, 1 + 4 (F - 1), 16 h, 16 w]`` (8 h, 8 w for an 8x VAE) in [-1, 1], like ``decode_latents``: the
  decoder makes 4 frames per latent and drops the first 3 of the stream, so latent 0 gives one
  frame and every later latent four, and frame ``t`` depends only on latents ``<= t``'s latent;
- streaming: ``LightStreamingDecoder.push`` decodes a sequence in pieces with its own memory and
  gives exactly what one ``decode`` call on the whole sequence gives.

The module layout (``decoder.<index>....``) matches the published TAEHV ``taew2_2`` checkpoint's
decoder (learned from the TAEHV repository's layout, not copied), so a user who has that file can
load it with ``LightDecoder.from_taehv_checkpoint``; its encoder weights are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from soul.errors import InputError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"

TAEHV_WIDTHS: tuple[int, int, int, int] = (256, 128, 64, 64)
"""Stage widths of the published TAEHV decoders (taew2_2 included)."""


@dataclass
class LightVAEConfig:
    """Shape of a light decoder. The defaults are the ``taew2_2`` layout (48 latent channels,
    patch 2, widths 256/128/64/64, time growth in the last two stages)."""

    latent_channels: int = 48
    patch_size: int = 2
    widths: tuple[int, int, int, int] = TAEHV_WIDTHS
    blocks_per_stage: int = 3
    time_upscale: tuple[bool, bool, bool] = (False, True, True)
    space_upscale: tuple[bool, bool, bool] = (True, True, True)  # (False, True, True): an 8x VAE
    # 1x1 memory blocks on the output patches (not in TAEHV's layout, so 0 for its checkpoints).
    # Why: every TAEHV layer after the last time-grow sees one frame only,
    # so the frames split from one parent differ in brightness and nothing can even that out; at
    # the miniature's size this was the flicker that kept the fast path from equal quality.
    final_memory_blocks: int = 0
    latents_mean: list[float] = field(default_factory=lambda: [0.0] * 48)
    latents_std: list[float] = field(default_factory=lambda: [1.0] * 48)

    def __post_init__(self) -> None:
        self.widths = tuple(int(w) for w in self.widths)  # type: ignore[assignment]
        self.time_upscale = tuple(bool(t) for t in self.time_upscale)  # type: ignore[assignment]
        self.space_upscale = tuple(bool(s) for s in self.space_upscale)  # type: ignore[assignment]
        if len(self.widths) != 4 or min(self.widths) < 1:
            raise InputError("light_vae.widths", f"{self.widths}", "give four positive stage widths, e.g. [256, 128, 64, 64]")
        if self.final_memory_blocks < 0:
            raise InputError("light_vae.final_memory_blocks", f"{self.final_memory_blocks}", "give 0 (TAEHV's layout) or more")
        if len(self.time_upscale) != 3:
            raise InputError("light_vae.time_upscale", f"{self.time_upscale}", "give three booleans, e.g. [false, true, true]")
        if len(self.space_upscale) != 3:
            raise InputError("light_vae.space_upscale", f"{self.space_upscale}", "give three booleans, e.g. [true, true, true] for a 16x VAE")
        if len(self.latents_mean) != self.latent_channels or len(self.latents_std) != self.latent_channels:
            raise InputError("light_vae.latents_mean/std", f"lengths {len(self.latents_mean)}/{len(self.latents_std)}", f"give {self.latent_channels} values each")

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(self.time_upscale)

    @property
    def spatial_factor(self) -> int:
        return 2 ** sum(self.space_upscale) * self.patch_size


# ------------------------------------------------------------------------------------ blocks


def _conv3(n_in: int, n_out: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(n_in, n_out, 3, padding=1, bias=bias)


class SoftClamp(nn.Module):
    """Bounds raw latents smoothly to (-3, 3): outliers in sampled latents must not blow up a
    decoder with no normalisation layers."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class MemoryBlock(nn.Module):
    """Residual conv block that also sees the previous frame's input: the decoder's only way to
    mix information across time, so it stays causal and streamable."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(_conv3(2 * n_in, n_out), nn.ReLU(), _conv3(n_out, n_out), nn.ReLU(), _conv3(n_out, n_out))
        self.skip: nn.Module = nn.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(torch.cat([x, past], 1)) + self.skip(x))


class OutputMemoryBlock(MemoryBlock):
    """A 1x1 conv on the output patches and the previous frame's: ``y = x + conv([x, past])``.

    Placed after the last conv (3p² channels), it is the cheapest place to let a frame see the one
    before it (a tenth of a 3x3 block at the output frame rate); evening out brightness between
    frames needs no spatial context. Zero-initialised, so it starts as the identity."""

    def __init__(self, width: int) -> None:
        nn.Module.__init__(self)
        self.conv = nn.Sequential(nn.Conv2d(2 * width, width, 1))
        self.skip = nn.Identity()
        self.act = nn.Identity()
        nn.init.zeros_(self.conv[0].weight)
        nn.init.zeros_(self.conv[0].bias)


class TimeGrow(nn.Module):
    """A 1x1 conv that makes ``stride`` frames out of one: channel group ``j`` becomes frame ``j``."""

    def __init__(self, n_f: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(n_f, n_f * stride, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return self.conv(x).reshape(n * self.stride, c, h, w)


# ------------------------------------------------------------------------------------ decoder


class LightDecoder(nn.Module):
    """Normalised Soul latents -> frames in [-1, 1], per-frame convs plus cheap temporal mixing."""

    def __init__(self, config: LightVAEConfig | None = None) -> None:
        super().__init__()
        self.config = config or LightVAEConfig()
        cfg = self.config
        w = cfg.widths
        layers: list[nn.Module] = [SoftClamp(), _conv3(cfg.latent_channels, w[0]), nn.ReLU()]
        for stage in range(3):
            layers += [MemoryBlock(w[stage], w[stage]) for _ in range(cfg.blocks_per_stage)]
            layers += [
                nn.Upsample(scale_factor=2) if cfg.space_upscale[stage] else nn.Identity(),
                TimeGrow(w[stage], 2 if cfg.time_upscale[stage] else 1),
                _conv3(w[stage], w[stage + 1], bias=False),
            ]
        out = 3 * cfg.patch_size**2
        layers += [nn.ReLU(), _conv3(w[3], out), *(OutputMemoryBlock(out) for _ in range(cfg.final_memory_blocks))]
        self.decoder = nn.Sequential(*layers)
        shape = (1, cfg.latent_channels, 1, 1, 1)
        self.register_buffer("latents_mean", torch.tensor(cfg.latents_mean, dtype=torch.float32).view(shape), persistent=False)
        self.register_buffer("latents_std", torch.tensor(cfg.latents_std, dtype=torch.float32).view(shape), persistent=False)

    def with_final_memory_blocks(self, count: int) -> LightDecoder:
        """This decoder with ``count`` output memory blocks, the rest of its weights kept; new
        blocks start as the identity, so the frames are unchanged until they are trained."""
        cfg = LightVAEConfig(**{**asdict(self.config), "final_memory_blocks": count})
        out = LightDecoder(cfg)
        old, new = list(self.decoder), list(out.decoder)
        head = len(old) - self.config.final_memory_blocks  # every layer up to the last conv, then the blocks
        for i in range(head + min(count, self.config.final_memory_blocks)):
            new[i].load_state_dict(old[i].state_dict())
        return out.to(self.latents_mean.device)

    @property
    def frames_to_trim(self) -> int:
        """Leading frames dropped so latent 0 yields one frame, as in Wan's causal VAE."""
        return self.config.temporal_factor - 1

    def run(self, raw: torch.Tensor, memory: list[torch.Tensor | None] | None = None) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """Raw latents ``[N, T, C, h, w]`` -> untrimmed patch-space frames ``[N, T', 3p², H/p, W/p]``.

        ``memory`` holds, per layer, the last frame each memory block saw (None at the start of a
        stream); it is returned updated, which is what makes chunked decoding exact.
        """
        n, t = raw.shape[:2]
        memory = list(memory) if memory is not None else [None] * len(self.decoder)
        x = raw.reshape(n * t, *raw.shape[2:])
        for i, block in enumerate(self.decoder):
            if isinstance(block, MemoryBlock):
                cur = x.reshape(n, t, *x.shape[1:])
                first = memory[i] if memory[i] is not None else torch.zeros_like(cur[:, :1])
                past = torch.cat([first, cur[:, :-1]], 1)
                memory[i] = cur[:, -1:].detach()
                x = block(x, past.reshape(x.shape))
            elif isinstance(block, TimeGrow):
                x = block(x)
                t *= block.stride
            else:
                x = block(x)
        return x.reshape(n, t, *x.shape[1:]), memory

    def to_pixels(self, patches: torch.Tensor) -> torch.Tensor:
        """``[N, T, 3p², h, w]`` in [0, 1] units -> ``[N, 3, T, H, W]`` in [-1, 1]."""
        n, t = patches.shape[:2]
        x = F.pixel_shuffle(patches.reshape(n * t, *patches.shape[2:]), self.config.patch_size)
        x = x.reshape(n, t, *x.shape[1:]).permute(0, 2, 1, 3, 4)
        return (x * 2 - 1).clamp(-1, 1)

    def raw_latents(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised ``[B, C, F, h, w]`` -> raw latents in TAEHV's ``[B, F, C, h, w]`` layout."""
        if z.ndim != 5 or z.shape[1] != self.config.latent_channels:
            raise InputError("latents", f"shape {tuple(z.shape)} is not [B, {self.config.latent_channels}, F, h, w]", "pass 5-D Wan latents")
        param = self.decoder[1].weight
        z = z.to(device=param.device, dtype=param.dtype)
        raw = z * self.latents_std.to(z.dtype) + self.latents_mean.to(z.dtype)
        return raw.permute(0, 2, 1, 3, 4)

    def decode_unclamped(self, z: torch.Tensor) -> torch.Tensor:
        """Like ``forward`` without the final clamp (training needs gradients at the edges)."""
        out, _ = self.run(self.raw_latents(z))
        n, t = out.shape[:2]
        x = F.pixel_shuffle(out.reshape(n * t, *out.shape[2:]), self.config.patch_size)
        x = x.reshape(n, t, *x.shape[1:]).permute(0, 2, 1, 3, 4)
        return (x * 2 - 1)[:, :, self.frames_to_trim :]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised latents ``[B, C, F, h, w]`` -> video ``[B, 3, 1 + 4(F-1), s h, s w]`` in [-1, 1]
        (``s`` = ``config.spatial_factor``, 16 for Wan2.2's VAE)."""
        out, _ = self.run(self.raw_latents(z))
        return self.to_pixels(out)[:, :, self.frames_to_trim :]

    def stream(self) -> LightStreamingDecoder:
        """A fresh streaming decoder over this module (one per video)."""
        return LightStreamingDecoder(self)

    # ------------------------------------------------------------------------------- files

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` + safetensors weights; ``LightDecoder.from_pretrained`` reads them."""
        from safetensors.torch import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        cfg = asdict(self.config)
        for key in ("widths", "time_upscale", "space_upscale"):
            cfg[key] = list(cfg[key])
        (out / CONFIG_FILE).write_text(json.dumps({"_class_name": "SoulLightDecoder", **cfg}, indent=2) + "\n", encoding="utf-8")
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}, str(out / WEIGHTS_FILE))
        return out

    @classmethod
    def from_pretrained(cls, directory: str | Path, device: torch.device | str = "cpu") -> LightDecoder:
        """Load a decoder written by ``save_pretrained`` (e.g. by ``soul distill vae``)."""
        from safetensors.torch import load_file

        root = Path(directory)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (root / name).is_file():
                raise InputError(root / name, "missing", "train one with `soul distill vae CONFIG` or pass the directory it wrote")
        raw = json.loads((root / CONFIG_FILE).read_text(encoding="utf-8"))
        raw.pop("_class_name", None)
        model = cls(LightVAEConfig(**raw))
        model.load_state_dict(load_file(str(root / WEIGHTS_FILE)))
        return model.to(device).eval()

    @classmethod
    def from_taehv_checkpoint(
        cls,
        source: str | Path | Mapping[str, torch.Tensor],
        latents_mean: Sequence[float],
        latents_std: Sequence[float],
    ) -> LightDecoder:
        """Build a decoder from a TAEHV ``taew2_2`` state dict (``.pth`` / ``.safetensors`` path or mapping).

        ``latents_mean/std`` are the full VAE's (TAEHV has none: it decodes raw latents). Only
        ``decoder.*`` keys are used. A checkpoint whose stride-1 time-grow conv was stored with
        more output channels keeps its last frame's channels, as the layout's own loader does.
        """
        state = _read_state(source) if not isinstance(source, Mapping) else dict(source)
        dec = {k[len("decoder.") :]: v for k, v in state.items() if k.startswith("decoder.")}
        if not dec:
            raise InputError("taehv checkpoint", "has no decoder.* weights", "pass the taew2_2 .pth file from the TAEHV release")
        first = dec.get("1.weight")
        if first is None or first.ndim != 4:
            raise InputError("taehv checkpoint", "lacks decoder.1.weight", "pass a TAEHV checkpoint (decoder.N.* keys)")
        widths = (
            int(first.shape[0]),
            int(dec["8.weight"].shape[0]),
            int(dec["14.weight"].shape[0]),
            int(dec["20.weight"].shape[0]),
        )
        patch = int(round((dec["22.weight"].shape[0] // 3) ** 0.5))
        cfg = LightVAEConfig(
            latent_channels=int(first.shape[1]),
            patch_size=patch,
            widths=widths,
            time_upscale=(False, True, True),
            latents_mean=[float(v) for v in latents_mean],
            latents_std=[float(v) for v in latents_std],
        )
        model = cls(cfg)
        own = model.decoder.state_dict()
        for i, block in enumerate(model.decoder):
            key = f"{i}.conv.weight"
            if isinstance(block, TimeGrow) and key in dec and dec[key].shape[0] > own[key].shape[0]:
                dec[key] = dec[key][-own[key].shape[0] :]
        missing = sorted(set(own) - set(dec))
        unexpected = sorted(set(dec) - set(own))
        if missing or unexpected:
            raise InputError("taehv checkpoint", f"missing {missing[:4]} unexpected {unexpected[:4]}", "pass the taew2_2 checkpoint (48 latent channels, patch 2)")
        for key, value in dec.items():
            if tuple(value.shape) != tuple(own[key].shape):
                raise InputError("taehv checkpoint", f"decoder.{key} has shape {tuple(value.shape)}, expected {tuple(own[key].shape)}", "pass the taew2_2 checkpoint")
        model.decoder.load_state_dict(dec)
        return model.eval()


def _read_state(path: str | Path) -> dict[str, torch.Tensor]:
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "not found", "download taew2_2.pth from the TAEHV release")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(p))
    return torch.load(p, map_location="cpu", weights_only=True)


class LightStreamingDecoder:
    """Decode latents that arrive in pieces: same interface as ``soul.models.vae.StreamingDecoder``.

    Each memory block keeps the last frame it saw, so the frames equal one ``LightDecoder``
    call on the whole sequence (up to float rounding), in memory that does not grow with length.
    """

    def __init__(self, decoder: LightDecoder) -> None:
        self.decoder = decoder
        self._memory: list[torch.Tensor | None] | None = None
        self.latents_seen = 0

    @torch.no_grad()
    def push(self, z: torch.Tensor) -> torch.Tensor:
        """Decode the next latent frames ``[B, C, n, h, w]`` (normalised) -> video ``[B, 3, T, H, W]``."""
        out, self._memory = self.decoder.run(self.decoder.raw_latents(z), self._memory)
        frames = self.decoder.to_pixels(out)
        if self.latents_seen == 0:
            frames = frames[:, :, self.decoder.frames_to_trim :]
        self.latents_seen += z.shape[2]
        return frames


def light_vae_config_for(preset_vae: object, widths: Sequence[int] | None = None) -> LightVAEConfig:
    """A light decoder config matching a preset's VAE (latent channels and statistics).

    Widths default to TAEHV's scaled by the full decoder's width relative to the real one
    (``decoder_base_dim / 256``, at least 8): TAEHV's ratio to the real Wan2.2 decoder is what
    makes it cheap, and a scaled-down full decoder (miniature, benchmarks) should keep that ratio.
    """
    z_dim = int(getattr(preset_vae, "z_dim"))
    base = int(getattr(preset_vae, "decoder_base_dim", 256) or 256)
    if widths is None:
        widths = tuple(max(8, w * min(base, 256) // 256) for w in TAEHV_WIDTHS)
    mean = list(getattr(preset_vae, "latents_mean", None) or [0.0] * z_dim)
    std = list(getattr(preset_vae, "latents_std", None) or [1.0] * z_dim)
    raw_patch = getattr(preset_vae, "patch_size", 2)
    patch = 1 if raw_patch is None else int(raw_patch)  # None: no patchify (the 4x mini VAE)
    factor = int(getattr(preset_vae, "scale_factor_spatial", 16) or 16)
    upsamples = {8: 3, 4: 2}.get(factor // patch)  # x2 stages after the patch's own factor
    if upsamples is None:
        raise InputError("vae.scale_factor_spatial", f"{factor} with patch {patch}", "a light decoder is built for 16x or 8x VAEs with patch 2, or 4x without a patch")
    space = tuple(stage >= 3 - upsamples for stage in range(3))  # the first stages keep their size
    return LightVAEConfig(latent_channels=z_dim, patch_size=patch, widths=tuple(widths), space_upscale=space, latents_mean=mean, latents_std=std)  # type: ignore[arg-type]
