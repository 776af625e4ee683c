"""SoulPipeline: portrait + prompt + speech -> a lip-synced video chunk, in the diffusers style.

The pipeline owns its sampling loop instead of delegating to diffusers' ``WanImageToVideoPipeline``
because Soul needs what that pipeline does not take: explicit sigmas, clean prefix frames beyond
the first (long video), three-pass text/audio guidance and audio features per latent frame. The TI2V
mechanics follow diffusers' ``expand_timesteps=True`` path exactly: the portrait's normalised latent
replaces latent frame 0 before every step and after the loop, and its tokens carry timestep 0.

The loop itself is ``soul.sampling.loop.denoise_chunk``, free of any pixels or encoders, so the
long-video driver can lay out ``[anchor | motion prefix | noisy]`` chunks and call it once per chunk.

Components are Soul's wrappers (text and audio encoders with their processors), which diffusers'
``DiffusionPipeline`` loader cannot describe in ``model_index.json``; so this class implements
``from_pretrained`` / ``save_pretrained`` / offloading itself, on the official directory layout.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler
from PIL import Image

from soul.config import DEFAULT_PRESET, SoulConfig, available_presets, load_preset
from soul.errors import InputError
from soul.media.audio import Audio
from soul.media.image import fit_image
from soul.models.audio_encoder import SAMPLE_RATE, SoulAudioEncoder, frames_for_duration, video_frames_for_duration
from soul.models.light_vae import LightDecoder, LightStreamingDecoder, light_vae_config_for
from soul.models.checkpoint import SOUL_DIR, check_transformer_files, load_transformer, save_checkpoint
from soul.models.person_masks import person_masks_for
from soul.models.text_encoder import SoulTextEncoder
from soul.models.transformer import SoulTransformer3DModel, build_transformer
from soul.models.vae import StreamingDecoder, build_vae, decode_latents, encode_frames, frames_to_uint8, load_vae
from soul.pipelines.long_video import (
    ChunkConditions,
    ChunkStore,
    FramesSink,
    LongVideoResult,
    chunk_audio,
    generate_long_video,
    sample_chunk,
)
from soul.sampling.chunks import ChunkPlan
from soul.sampling.layout import LatentLayout, latent_layout
from soul.sampling.loop import StepCallback
from soul.sampling.settings import SamplingSettings, resolve_sampling

if TYPE_CHECKING:
    from soul.parallel.runtime import ParallelRuntime

PRESET_FILE = "preset.yaml"
AUDIO_ENCODER_DIR = "audio_encoder"
LIGHT_VAE_DIR = "light_vae"
_FIX_DIR = "download it with `soul download`, or point at a directory written by SoulPipeline.save_pretrained"


@dataclass
class SoulOutput:
    """A generated clip: uint8 frames ``[T, H, W, 3]`` (None for ``output_type="latent"``), its
    normalised latents ``[1, C, F, h, w]``, the frame rate and what was run (seed, steps, ...)."""

    frames: np.ndarray | None
    latents: torch.Tensor
    fps: float
    info: dict[str, Any] = field(default_factory=dict)


def _to_pil(image: Image.Image | np.ndarray) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
        return Image.fromarray(image)
    raise InputError("image", f"got {type(image).__name__}", "pass a PIL image or a uint8 HxWx3 array (soul.media.load_image)")


def _audio_streams(audio: np.ndarray | Audio | Sequence[np.ndarray | Audio] | None, max_streams: int) -> list[np.ndarray]:
    if audio is None:
        raise InputError("audio", "no speech track given", "pass 16 kHz mono samples (soul.media.load_audio(path))")
    streams = [audio] if isinstance(audio, (np.ndarray, Audio)) else list(audio)
    if not streams:
        raise InputError("audio", "an empty list of tracks", "pass at least one 16 kHz mono track")
    if len(streams) > max_streams:
        raise InputError("audio", f"{len(streams)} speech tracks, the model supports at most {max_streams}", f"pass {max_streams} or fewer tracks (one per person)")
    out = []
    for n, s in enumerate(streams):
        if isinstance(s, Audio):
            if s.sample_rate != SAMPLE_RATE:
                raise InputError(f"audio[{n}]", f"is {s.sample_rate} Hz, the audio encoder needs {SAMPLE_RATE} Hz", f"load it with soul.media.load_audio(path, {SAMPLE_RATE})")
            s = s.mono()
        arr = np.asarray(s)
        if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.floating):
            raise InputError(f"audio[{n}]", f"shape {arr.shape} dtype {arr.dtype}", "pass a non-empty 1-D float array of 16 kHz mono samples")
        if not np.all(np.isfinite(arr)):
            raise InputError(f"audio[{n}]", "contains NaN or infinite samples", "fix or re-load the audio file")
        out.append(arr.astype(np.float32, copy=False))
    return out


class SoulPipeline:
    """Generation with Soul: ``SoulPipeline.from_pretrained(dir)(image=..., audio=..., prompt=...)``."""

    def __init__(
        self,
        transformer: SoulTransformer3DModel,
        vae: AutoencoderKLWan,
        text_encoder: SoulTextEncoder,
        audio_encoder: SoulAudioEncoder,
        config: SoulConfig,
        light_vae: LightDecoder | None = None,
    ) -> None:
        self.transformer = transformer
        self.light_vae = light_vae
        self.vae = vae
        self.text_encoder = text_encoder
        self.audio_encoder = audio_encoder
        self.config = config
        self._offload_device: torch.device | None = None
        self.parallel: ParallelRuntime | None = None

    # ------------------------------------------------------------------------------- building

    @classmethod
    def from_preset(
        cls,
        preset: str | Path | SoulConfig = "tiny",
        *,
        seed: int = 0,
        torch_dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> SoulPipeline:
        """Random weights at a preset's sizes (tests, smoke runs, training from scratch).

        Every component is seeded from ``seed`` so two builds with the same seed are identical.
        """
        config = preset if isinstance(preset, SoulConfig) else load_preset(preset)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            transformer = build_transformer(config, dtype=torch_dtype, device=device).eval()
            # float32 VAE, as from_pretrained loads it: decoding is precision-sensitive.
            vae = build_vae(config, dtype=torch.float32, device=device)
            text_encoder = SoulTextEncoder.build(config)
            audio_encoder = SoulAudioEncoder.build(config)
            # Built last so the other components' weights do not depend on it.
            light_vae = LightDecoder(light_vae_config_for(config.vae)).to(device).eval()
        text_encoder.model.to(device=device, dtype=torch_dtype)
        audio_encoder.model.to(device)
        return cls(transformer, vae, text_encoder, audio_encoder, config, light_vae=light_vae)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        preset: str | Path | SoulConfig | None = None,
        torch_dtype: torch.dtype = torch.bfloat16,
        vae_dtype: torch.dtype = torch.float32,
        audio_encoder_dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> SoulPipeline:
        """Load a checkpoint in the official Wan2.2-TI2V-5B-Diffusers layout, plus Soul's files.

        ``path`` is a directory, or a preset name whose ``hub.backbone`` was fetched into the local
        Hugging Face cache by ``soul download``. Reads ``model_index.json``, ``transformer/``,
        ``vae/``, ``text_encoder/``, ``tokenizer/`` and, when present, ``soul/`` (audio layers,
        ``audio_encoder/``, ``preset.yaml``). Without Soul's layers (the untouched official
        download) the audio layers start at zero output, i.e. plain TI2V, and the audio encoder
        comes from the preset's hub id in the cache. The VAE and the audio encoder default to
        float32 (small, and the VAE's decode is precision-sensitive); the transformer and umT5 use
        ``torch_dtype``. Every missing file, and every mismatch between the files and the preset,
        is an InputError naming the file, raised before any weight is read.
        """
        root = cls._locate(path)
        config = cls._resolve_config(root, preset)
        for sub in ("model_index.json", "vae/config.json", "text_encoder/config.json", "tokenizer"):
            if not (root / sub).exists():
                raise InputError(root / sub, "missing from the checkpoint", _FIX_DIR)
        check_transformer_files(root)
        cls._check_matches(root / "transformer/config.json", config.transformer.kwargs(), config)
        cls._check_matches(root / "vae/config.json", config.vae.kwargs(), config, skip=("latents_mean", "latents_std"))
        transformer = load_transformer(root, config=config, dtype=torch_dtype, device=device)
        vae = load_vae(root, dtype=vae_dtype, device=device)
        text_encoder = SoulTextEncoder.from_pretrained(root, config, torch_dtype=torch_dtype)
        text_encoder.model.to(device)
        audio_dir = root / SOUL_DIR / AUDIO_ENCODER_DIR
        audio_encoder = SoulAudioEncoder.from_pretrained(audio_dir if audio_dir.is_dir() else None, config, torch_dtype=audio_encoder_dtype)
        audio_encoder.model.to(device)
        light_dir = root / SOUL_DIR / LIGHT_VAE_DIR
        light_vae = LightDecoder.from_pretrained(light_dir, device=device) if light_dir.is_dir() else None
        return cls(transformer, vae, text_encoder, audio_encoder, config, light_vae=light_vae)

    @staticmethod
    def _locate(path: str | Path) -> Path:
        root = Path(path)
        if root.is_dir():
            return root
        name = str(path)
        if name not in available_presets():
            raise InputError(root, "checkpoint directory not found", _FIX_DIR)
        repo = load_preset(name).hub.backbone
        if repo is None:
            raise InputError(f"preset {name}", "has no downloadable weights", f"use SoulPipeline.from_preset({name!r}) for random weights")
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return Path(snapshot_download(repo, local_files_only=True))
        except (LocalEntryNotFoundError, OSError) as err:
            raise InputError(
                f"preset {name!r}",
                f"the weights of {repo} are not in the local Hugging Face cache",
                f"run `soul download --preset {name}`, or use SoulPipeline.from_preset({name!r}) for random weights",
            ) from err

    @staticmethod
    def _resolve_config(root: Path, preset: str | Path | SoulConfig | None) -> SoulConfig:
        saved = root / SOUL_DIR / PRESET_FILE
        if preset is None:
            return load_preset(saved) if saved.is_file() else load_preset(DEFAULT_PRESET)
        return preset if isinstance(preset, SoulConfig) else load_preset(preset)

    @staticmethod
    def _check_matches(source: Path, expected: dict[str, Any], config: SoulConfig, skip: Sequence[str] = ()) -> None:
        """The checkpoint's config.json must describe the model the preset describes."""
        try:
            found = json.loads(source.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(source, f"cannot be read as JSON ({err})", _FIX_DIR) from err

        def norm(value: Any) -> Any:
            return list(value) if isinstance(value, (list, tuple)) else value

        for key, want in expected.items():
            if key in skip or key not in found:
                continue
            if norm(found[key]) != norm(want):
                raise InputError(
                    source,
                    f"{key}={found[key]!r} but preset {config.name!r} says {want!r}",
                    "pass the preset the checkpoint was made for (preset=...)",
                )

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the official layout plus ``soul/``; ``from_pretrained`` on it reproduces this pipeline."""
        root = Path(path)
        root.mkdir(parents=True, exist_ok=True)
        save_checkpoint(self.transformer, root)
        self.vae.save_pretrained(root / "vae", safe_serialization=True)
        self.text_encoder.save_pretrained(root)
        self.audio_encoder.save_pretrained(root / SOUL_DIR / AUDIO_ENCODER_DIR)
        if self.light_vae is not None:
            self.light_vae.save_pretrained(root / SOUL_DIR / LIGHT_VAE_DIR)
        # A scheduler config, so diffusers' own Wan pipelines can load the directory too.
        UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=self.config.sampling.flow_shift
        ).save_pretrained(root / "scheduler")
        (root / SOUL_DIR / PRESET_FILE).write_text(
            yaml.safe_dump(self.config.model_dump(mode="json"), sort_keys=False), encoding="utf-8"
        )
        index = {
            "_class_name": "WanImageToVideoPipeline",
            "_diffusers_version": _diffusers_version(),
            "expand_timesteps": True,
            "boundary_ratio": None,
            "scheduler": ["diffusers", "UniPCMultistepScheduler"],
            "text_encoder": ["transformers", "UMT5EncoderModel"],
            "tokenizer": ["transformers", type(self.text_encoder.tokenizer).__name__],
            "transformer": ["diffusers", "WanTransformer3DModel"],
            "transformer_2": [None, None],
            "vae": ["diffusers", "AutoencoderKLWan"],
            "image_encoder": [None, None],
            "image_processor": [None, None],
        }
        (root / "model_index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
        return root

    # ------------------------------------------------------------------------------- devices

    def to(self, device: torch.device | str) -> SoulPipeline:
        """Move every component to ``device`` (turns offloading off)."""
        self._offload_device = None
        for module in self._modules().values():
            module.to(device)
        return self

    def enable_model_cpu_offload(self, device: torch.device | str = "cuda") -> None:
        """Keep components on the CPU and move each to ``device`` only while it runs.

        Per-component moves rather than accelerate hooks: the encoders are wrappers whose
        ``encode`` is not a module ``forward``, so a forward hook would never fire.
        """
        self._offload_device = torch.device(device)
        for module in self._modules().values():
            module.to("cpu")

    def enable_parallel(self, runtime: ParallelRuntime) -> None:
        """Generate over torchrun's processes (``soul.parallel.init_parallel``): Ulysses sequence
        parallelism in the transformer, guidance passes spread over ranks in the sampling loop.

        Every rank must then make the same calls with the same inputs; the frames are the same as
        in one process. Once per pipeline (diffusers' hooks stay on the transformer).
        """
        if self.parallel is runtime:
            return
        if self.parallel is not None:
            raise RuntimeError("this pipeline is already parallel over another process group")
        runtime.apply(self.transformer)
        self.parallel = runtime

    def enable_vae_tiling(self) -> None:
        """Decode in overlapping spatial tiles (diffusers' Wan VAE tiling) to bound memory."""
        self.vae.enable_tiling()

    def _modules(self) -> dict[str, torch.nn.Module]:
        modules = {
            "text_encoder": self.text_encoder.model,
            "audio_encoder": self.audio_encoder.model,
            "transformer": self.transformer,
            "vae": self.vae,
        }
        if self.light_vae is not None:
            modules["light_vae"] = self.light_vae
        return modules

    @property
    def device(self) -> torch.device:
        """Where computation runs (the offload target when offloading)."""
        return self._offload_device or next(self.transformer.parameters()).device

    def activate(self, name: str) -> None:
        """With CPU offload, bring component `name` to the GPU and park the others (no-op otherwise)."""
        if self._offload_device is None:
            return
        for other, module in self._modules().items():
            module.to(self._offload_device if other == name else "cpu")

    # ------------------------------------------------------------------------------- encoders

    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """umT5 embeddings ``[B, L, D]`` padded to the preset's text length."""
        self.activate("text_encoder")
        with torch.no_grad():
            return self.text_encoder.encode(prompts, max_length=self.config.text_encoder.max_length).to(self.device)

    def encode_audio(self, streams: list[np.ndarray], num_frames: int, fps: float) -> torch.Tensor:
        """Windowed wav2vec2 features ``[1, N, F_lat, W, L, D]`` aligned to the video frames."""
        self.activate("audio_encoder")
        with torch.no_grad():
            feats = self.audio_encoder.encode_streams(streams, fps=fps, num_frames=num_frames)
        return feats.unsqueeze(0).float().to(self.device)

    def encode_image(self, image: Image.Image, width: int, height: int) -> torch.Tensor:
        """The portrait fitted to the clip, VAE-encoded as one frame: ``[1, C, 1, h, w]`` normalised."""
        fitted = fit_image(image, width, height)
        pixels = torch.from_numpy(np.asarray(fitted, dtype=np.float32) / 127.5 - 1.0)
        pixels = pixels.permute(2, 0, 1)[None, :, None]
        self.activate("vae")
        with torch.no_grad():
            return encode_frames(self.vae, pixels).float().to(self.device)

    def _light(self) -> LightDecoder:
        if self.light_vae is None:
            raise InputError(
                "vae",
                "'light' was asked for but this pipeline has no light decoder",
                "train one with `soul distill vae CONFIG` and save it under soul/light_vae/, or use vae='full'",
            )
        return self.light_vae

    def decode(self, latents: torch.Tensor, vae: Literal["full", "light"] = "full") -> np.ndarray:
        """Normalised latents ``[1, C, F, h, w]`` -> uint8 frames ``[T, H, W, 3]``.

        ``vae="light"`` uses the conv-only light decoder (``soul.models.light_vae``), many times
        cheaper than the full Wan decoder at a quality cost measured in docs/speed.md.
        """
        if vae not in ("full", "light"):
            raise InputError("vae", f"{vae!r}", "use 'full' or 'light'")
        with torch.no_grad():
            if vae == "light":
                light = self._light()
                self.activate("light_vae")
                return frames_to_uint8(light(latents))
            self.activate("vae")
            return frames_to_uint8(decode_latents(self.vae, latents))

    def streaming_decoder(self, vae: Literal["full", "light"] = "full") -> StreamingDecoder | LightStreamingDecoder:
        """A decoder for latents that arrive chunk by chunk (long video); both kinds have ``push``."""
        if vae not in ("full", "light"):
            raise InputError("vae", f"{vae!r}", "use 'full' or 'light'")
        return self._light().stream() if vae == "light" else StreamingDecoder(self.vae)

    def person_mask_tokens(self, image: Image.Image, person_masks: np.ndarray | None, streams: int, layout: LatentLayout) -> torch.Tensor | None:
        """Each audio stream's region at latent resolution ``[1, N, h, w]`` (None for one person)."""
        size = (layout.latent_height, layout.latent_width)
        if person_masks is None:
            if streams == 1:
                return None
            # Found on the portrait at its own resolution, mapped through the fit: the masks cover
            # what the model sees, crop included.
            person_masks = person_masks_for(image, streams, size, frame_size=(layout.width, layout.height))
            if person_masks is None:
                raise InputError("person_masks", f"could not find {streams} people in the portrait", f"pass person_masks as an array [{streams}, H, W] (one mask per speaker)")
        masks = np.asarray(person_masks, dtype=np.float32)
        if masks.ndim != 3 or masks.shape[0] != streams:
            raise InputError("person_masks", f"shape {masks.shape}", f"pass [{streams}, H, W]: one mask per audio track")
        t = torch.from_numpy(masks)[None]
        if tuple(t.shape[-2:]) != size:
            # Masks may come at pixel resolution; area-average them onto the latent grid.
            t = F.interpolate(t, size=size, mode="area" if t.shape[-2] % size[0] == 0 and t.shape[-1] % size[1] == 0 else "bilinear")
        return t.clamp(0, 1).to(self.device)

    # ------------------------------------------------------------------------------- generation

    def encode_conditions(
        self,
        image: Image.Image,
        prompt: str,
        negative_prompt: str,
        num_streams: int,
        settings: SamplingSettings,
        person_masks: np.ndarray | None = None,
    ) -> ChunkConditions:
        """Encode once what every chunk reuses: the portrait's latent, the prompts, the speakers' masks.

        ``person_masks`` ``[N, H, W]`` (any resolution) or None: with several streams and no masks,
        people are found on the fitted portrait.
        """
        layout = latent_layout(
            num_frames=1, height=settings.height, width=settings.width, patch_size=tuple(self.config.transformer.patch_size),
            scale_spatial=self.config.vae.scale_factor_spatial, scale_temporal=self.config.vae.scale_factor_temporal,
        )
        pil = _to_pil(image)
        text = self.encode_prompt([prompt])
        null_text = self.encode_prompt([negative_prompt]) if settings.guidance.needs_negative_prompt() else None
        masks = self.person_mask_tokens(pil, person_masks, num_streams, layout)
        anchor = self.encode_image(pil, settings.width, settings.height)
        return ChunkConditions(anchor=anchor, text=text, null_text=null_text, person_masks=masks)

    def resolve(self, **overrides: Any) -> SamplingSettings:
        """This pipeline's preset defaults under ``overrides`` (``soul.sampling.settings.resolve_sampling``)."""
        return resolve_sampling(self.config, **overrides)

    @torch.no_grad()
    def __call__(
        self,
        image: Image.Image | np.ndarray,
        audio: np.ndarray | Audio | Sequence[np.ndarray | Audio],
        prompt: str,
        negative_prompt: str = "",
        *,
        num_frames: int | None = None,
        duration: float | None = None,
        height: int | None = None,
        width: int | None = None,
        fps: float | None = None,
        num_inference_steps: int | None = None,
        sigmas: Sequence[float] | None = None,
        sampler: Literal["euler", "unipc", "x0"] | None = None,
        shift: float | None = None,
        text_guidance_scale: float | None = None,
        audio_guidance_scale: float | None = None,
        guidance: bool | None = None,
        vae: Literal["full", "light"] | None = None,
        settings: SamplingSettings | None = None,
        batched_guidance: bool = False,
        generator: torch.Generator | None = None,
        person_masks: np.ndarray | None = None,
        callback: StepCallback | None = None,
        output_type: Literal["np", "latent"] = "np",
    ) -> SoulOutput:
        """Generate one chunk. Every None comes from the preset's ``sampling`` section.

        So a fast preset (``mini-fast``) samples as its student was distilled (``sampler="x0"``,
        fixed ``sigmas``, ``guidance=False``, light decoder) without the caller repeating it; a
        resolved ``settings`` object replaces all the sampling arguments.

        Length: ``num_frames`` (4k+1), else ``duration`` seconds, else the longest audio track,
        rounded up to 4k+1 frames (``info["video_frames"]`` keeps the audio's own frame count for
        the writer). Audio is 16 kHz mono samples or ``soul.media.Audio``. ``sigmas`` (noise
        levels, high to low) override ``num_inference_steps``/``shift``. ``guidance=False`` runs
        one conditional pass per step (guidance-distilled students). Several audio tracks mean
        several people; their masks come from ``person_masks`` ``[N, H, W]`` or are found on the
        portrait. ``vae="light"`` decodes with the light decoder (fast path, DESIGN 5). The chunk
        is sampled exactly as chunk 0 of ``long_video`` (same audio windows, noise and loop).
        """
        # 1. Resolve the sampling settings once, then check the inputs against them
        settings = settings or self.resolve(
            height=height, width=width, fps=fps, steps=num_inference_steps, sigmas=sigmas, shift=shift, sampler=sampler,
            text_scale=text_guidance_scale, audio_scale=audio_guidance_scale, guidance=guidance, vae=vae,
        )
        pil, streams = self.check_inputs(image, audio, prompt, output_type, settings)
        # 2. Length: the model makes 4k+1 frames; the written video keeps the audio's own length
        seconds = duration if duration is not None else max(len(s) for s in streams) / SAMPLE_RATE
        generated = num_frames if num_frames is not None else frames_for_duration(seconds, settings.fps)
        video_frames = num_frames if num_frames is not None else min(generated, video_frames_for_duration(seconds, settings.fps))
        layout = latent_layout(
            num_frames=generated, height=settings.height, width=settings.width, patch_size=tuple(self.config.transformer.patch_size),
            scale_spatial=self.config.vae.scale_factor_spatial, scale_temporal=self.config.vae.scale_factor_temporal,
        )
        # 3. Encode the portrait, the prompts and the speakers once
        conditions = self.encode_conditions(pil, prompt, negative_prompt, len(streams), settings, person_masks)
        # 4. Denoise the chunk [portrait | new frames], as chunk 0 of a long video
        seed = None
        if generator is None:
            seed = secrets.randbits(63)
            generator = torch.Generator().manual_seed(seed)
        plan = ChunkPlan(index=0, first_latent=1, new_latents=layout.latent_frames - 1, motion=0)
        latents = sample_chunk(
            self, plan, conditions.anchor, chunk_audio(self, streams, settings), conditions, settings,
            generator, total_frames=generated, batched_guidance=batched_guidance, callback=callback,
        )
        # 5. Decode
        frames = None if output_type == "latent" else self.decode(latents, vae=settings.vae)
        info = {
            "seed": seed, "num_frames": layout.num_frames, "video_frames": video_frames, "latent_shape": list(latents.shape),
            **_settings_info(settings), "num_streams": len(streams),
        }
        return SoulOutput(frames=frames, latents=latents, fps=settings.fps, info=info)

    def check_inputs(
        self, image: Image.Image | np.ndarray, audio: Any, prompt: str, output_type: str, settings: SamplingSettings
    ) -> tuple[Image.Image, list[np.ndarray]]:
        """Every input check of a call, before anything expensive: the portrait, tracks and prompt."""
        if settings.vae == "light" and output_type != "latent":
            self._light()
        pil = _to_pil(image)
        if not isinstance(prompt, str):
            raise InputError("prompt", f"got {type(prompt).__name__}", "pass the prompt as a string")
        if output_type not in ("np", "latent"):
            raise InputError("output_type", f"{output_type!r}", "use 'np' or 'latent'")
        return pil, _audio_streams(audio, self.config.audio.max_streams)

    def long_video(
        self,
        image: Image.Image | np.ndarray,
        audio: np.ndarray | Audio | Sequence[np.ndarray | Audio],
        prompt: str,
        negative_prompt: str = "",
        *,
        sink: FramesSink,
        seed: int = 0,
        settings: SamplingSettings | None = None,
        person_masks: np.ndarray | None = None,
        state: ChunkStore | None = None,
        progress: Callable[[int, int], None] | None = None,
        **overrides: Any,
    ) -> LongVideoResult:
        """Audio of any length, in chunks, frames streamed to ``sink`` as they are decoded.

        ``__call__`` makes one chunk (what the model sees at once); this is the long-video path
        (anchor + motion prefix per chunk, codebook drift control, streaming decode). Sampling
        options are those of ``resolve_sampling`` (``steps``, ``sigmas``, ``sampler``,
        ``guidance``, ``vae``, ``chunk_frames``, ``motion_latents``, ``codebook*``,
        ``max_duration``, ...), defaulting to the preset's; the video has the audio's length to
        the frame. ``soul.jobs.generate.run_generate`` is the same path from files to an MP4.
        """
        settings = settings or self.resolve(**overrides)
        pil, streams = self.check_inputs(image, audio, prompt, "np", settings)
        seconds = max(s.shape[0] for s in streams) / SAMPLE_RATE
        if seconds > settings.max_duration:
            raise InputError("audio", f"is {seconds:.1f} s, longer than the maximum of {settings.max_duration:.0f} s", "trim it or raise max_duration")
        conditions = self.encode_conditions(pil, prompt, negative_prompt, len(streams), settings, person_masks)
        return generate_long_video(
            self, conditions, streams, video_frames=video_frames_for_duration(seconds, settings.fps), settings=settings,
            seed=seed, sink=sink, state=state, progress=progress,
        )


def _settings_info(settings: SamplingSettings) -> dict[str, Any]:
    """The record of what was run, in the keys results have always used."""
    return {
        "height": settings.height, "width": settings.width, "sampler": settings.sampler,
        "sigmas": [round(float(s), 6) for s in settings.sigmas], "text_guidance_scale": settings.guidance.text_scale,
        "audio_guidance_scale": settings.guidance.audio_scale, "guidance": settings.guidance.enabled,
        "passes_per_step": settings.guidance.num_passes(), "vae": settings.vae,
    }


def _diffusers_version() -> str:
    import diffusers

    return diffusers.__version__
