"""Soul's model presets: plain data that say which real classes to build, and at what size.

A preset is a YAML file under `soul/presets/` (or any YAML path a user gives). It is data, not code,
so a user can add a size or swap an audio encoder without touching Python, and so the tiny preset
used by the tests builds exactly the classes the 5B preset builds, only smaller. The pydantic
models below check a preset when it is read, so a typo fails at load time with the file's name
rather than deep inside a constructor.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from soul.errors import InputError

MODEL_SAMPLE_RATE = 16_000
"""The one audio rate: the wav2vec2 encoder was trained at 16 kHz, so every track the model or the analysis reads is resampled to it."""
DEFAULT_PRESET = "wan22-ti2v-5b"
"""The real model: without weights it stops in seconds and says how to get them, never renders noise."""

PRESET_DIR = "presets"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TransformerConfig(_Section):
    """Keyword arguments of diffusers' `WanTransformer3DModel`, spelled as diffusers spells them."""

    patch_size: tuple[int, int, int] = (1, 2, 2)
    num_attention_heads: int = Field(gt=0)
    attention_head_dim: int = Field(gt=0)
    in_channels: int = Field(gt=0)
    out_channels: int = Field(gt=0)
    text_dim: int = Field(gt=0)
    freq_dim: int = Field(gt=0)
    ffn_dim: int = Field(gt=0)
    num_layers: int = Field(gt=0)
    cross_attn_norm: bool = True
    qk_norm: str | None = "rms_norm_across_heads"
    eps: float = 1e-6
    image_dim: int | None = None
    added_kv_proj_dim: int | None = None
    rope_max_seq_len: int = 1024
    pos_embed_seq_len: int | None = None

    @field_validator("attention_head_dim")
    @classmethod
    def _rope_split(cls, value: int) -> int:
        # Wan's RoPE gives h and w 2*(d//6) dims each and t the rest; each part must be even and
        # non-empty or the rotary tables cannot be built.
        if value % 2 or value < 6:
            raise ValueError("attention_head_dim must be even and >= 6 (RoPE splits it t/h/w in even parts)")
        return value

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    def kwargs(self) -> dict[str, Any]:
        """The constructor kwargs of `WanTransformer3DModel`."""
        out = self.model_dump()
        out["patch_size"] = tuple(out["patch_size"])
        return out


class VAEConfig(_Section):
    """Keyword arguments of diffusers' `AutoencoderKLWan` (Wan2.2 layout: z=48, 16x spatial)."""

    base_dim: int = Field(gt=0)
    decoder_base_dim: int | None = None
    z_dim: int = Field(gt=0)
    dim_mult: list[int]
    num_res_blocks: int = Field(gt=0)
    attn_scales: list[float] = Field(default_factory=list)
    temperal_downsample: list[bool]
    dropout: float = 0.0
    is_residual: bool = True
    in_channels: int = 12
    out_channels: int = 12
    patch_size: int | None = 2
    scale_factor_temporal: int = 4
    scale_factor_spatial: int = 16
    latents_mean: list[float]
    latents_std: list[float]

    @model_validator(mode="after")
    def _stats_match_channels(self) -> VAEConfig:
        if len(self.latents_mean) != self.z_dim or len(self.latents_std) != self.z_dim:
            raise ValueError(f"latents_mean and latents_std need z_dim={self.z_dim} values each")
        if any(s <= 0 for s in self.latents_std):
            raise ValueError("latents_std values must be positive")
        if len(self.temperal_downsample) != len(self.dim_mult) - 1:
            raise ValueError("temperal_downsample needs len(dim_mult) - 1 entries")
        return self

    def kwargs(self) -> dict[str, Any]:
        """The constructor kwargs of `AutoencoderKLWan`."""
        return self.model_dump()


class TextEncoderConfig(_Section):
    """The umT5 encoder: where its weights live and the `transformers.UMT5Config` kwargs."""

    hub_id: str
    subfolder: str | None = None
    tokenizer_subfolder: str | None = None
    max_length: int = Field(512, gt=0)
    config: dict[str, Any]

    @model_validator(mode="after")
    def _buildable(self) -> TextEncoderConfig:
        from transformers import UMT5Config

        UMT5Config(**self.config)
        return self

    @property
    def hidden_size(self) -> int:
        return int(self.config["d_model"])


class AudioEncoderConfig(_Section):
    """The wav2vec2 audio encoder: where its weights live and the `Wav2Vec2Config` kwargs."""

    hub_id: str | None = None
    sample_rate: int = MODEL_SAMPLE_RATE
    feature_rate: int = 50
    config: dict[str, Any]

    @model_validator(mode="after")
    def _buildable(self) -> AudioEncoderConfig:
        from transformers import Wav2Vec2Config

        Wav2Vec2Config(**self.config)
        return self

    @property
    def hidden_size(self) -> int:
        return int(self.config["hidden_size"])

    @property
    def num_hidden_states(self) -> int:
        """Hidden states Soul reads: the embedding output plus one per transformer layer."""
        return int(self.config["num_hidden_layers"]) + 1


class AudioInjectionConfig(_Section):
    """Size and placement of Soul's audio layers (DESIGN 3.2)."""

    tokens_per_frame: int = Field(32, gt=0)
    context_frames: int = Field(2, ge=0)
    layers: Literal["all"] | list[int] = "all"
    max_streams: int = Field(4, gt=0)
    projector_hidden_dim: int = Field(1024, gt=0)
    token_dim: int = Field(768, gt=0)

    @property
    def window(self) -> int:
        """Video frames per latent frame's window: the 4 frames it covers plus context both sides."""
        return 4 + 2 * self.context_frames

    def block_indices(self, num_layers: int) -> list[int]:
        """The transformer blocks that receive audio, checked against the backbone depth."""
        if self.layers == "all":
            return list(range(num_layers))
        indices = sorted(set(self.layers))
        bad = [i for i in indices if not 0 <= i < num_layers]
        if bad:
            raise InputError("audio.layers", f"block indices {bad} outside 0..{num_layers - 1}", "list valid block indices or 'all'")
        return indices


class SamplingConfig(_Section):
    """Default generation settings; the official TI2V-5B ones for the 5B preset.

    Everything `soul generate` can override lives here, so a fast preset (a distilled student's
    4-level x0 schedule, one pass per step, light decoder) is a YAML file rather than a list of
    flags the user must remember to pass together.
    """

    height: int = Field(gt=0)
    width: int = Field(gt=0)
    fps: int = Field(gt=0)
    chunk_frames: int = Field(gt=0)
    steps: int = Field(gt=0)
    flow_shift: float = Field(gt=0)
    text_scale: float = 5.0
    audio_scale: float = 4.0
    sampler: Literal["euler", "unipc", "x0"] = "euler"
    # Explicit noise levels, high to low, used as given (no flow shift); they replace `steps`. A
    # step-distilled student only knows the levels it was trained at, so its preset names them.
    sigmas: list[float] | None = None
    guidance: bool = True  # False: one conditional pass per step (CFG-distilled students)
    vae: Literal["full", "light"] = "full"

    @field_validator("chunk_frames")
    @classmethod
    def _causal_frames(cls, value: int) -> int:
        if (value - 1) % 4:
            raise ValueError("chunk_frames must be 4k+1 (the VAE is causal, 4x in time)")
        return value

    @field_validator("sigmas")
    @classmethod
    def _noise_levels(cls, value: list[float] | None) -> list[float] | None:
        # Same rule as soul.sampling.schedules.check_sigmas, checked here so a bad preset fails when
        # it is read (the final 0 is appended by the sampler, so it is not written in a preset).
        if value is None:
            return None
        if not value:
            raise ValueError("sigmas needs at least one noise level, e.g. [1.0, 0.75, 0.5, 0.25]")
        if any(not (0.0 < s <= 1.0) for s in value):
            raise ValueError(f"sigmas {value} must all lie in (0, 1] (1 = pure noise; the final 0 is implied)")
        if any(b >= a for a, b in zip(value, value[1:])):
            raise ValueError(f"sigmas {value} must be strictly decreasing")
        return value


class HubConfig(_Section):
    """Repository ids `soul download` fetches on a connected machine; null for presets built from config only."""

    backbone: str | None = None
    soul_layers: str | None = None


class SoulConfig(_Section):
    """One preset: every model Soul builds plus its sampling defaults."""

    name: str
    # Trained weights shipped inside the package (soul/models/weights/<weights>.safetensors and
    # .json); `soul generate` loads them when no --checkpoint is given. None: random weights when
    # hub.backbone is null, else a downloaded --checkpoint is required.
    weights: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    # What portraits the weights know: "drawn" for the miniature world's flat-colour faces (a
    # photo gives a meaningless video, so generation warns), "any" for models of real people.
    portraits: Literal["any", "drawn"] = "any"
    transformer: TransformerConfig
    vae: VAEConfig
    text_encoder: TextEncoderConfig
    audio_encoder: AudioEncoderConfig
    audio: AudioInjectionConfig
    sampling: SamplingConfig
    hub: HubConfig

    @model_validator(mode="after")
    def _consistent(self) -> SoulConfig:
        t, v = self.transformer, self.vae
        if t.in_channels != v.z_dim or t.out_channels != v.z_dim:
            raise ValueError(f"transformer in/out channels ({t.in_channels}/{t.out_channels}) must equal vae z_dim {v.z_dim}")
        if t.text_dim != self.text_encoder.hidden_size:
            raise ValueError(f"transformer text_dim {t.text_dim} != text encoder d_model {self.text_encoder.hidden_size}")
        self.audio.block_indices(t.num_layers)
        step = v.scale_factor_spatial * t.patch_size[1]
        if self.sampling.height % step or self.sampling.width % step:
            raise ValueError(f"sampling height/width must be multiples of {step}")
        return self

    @property
    def spatial_multiple(self) -> int:
        """Pixel sides must be multiples of this (VAE downscale x transformer patch)."""
        return self.vae.scale_factor_spatial * self.transformer.patch_size[1]


def available_presets() -> list[str]:
    """Names of the presets shipped inside the package."""
    root = resources.files("soul").joinpath(PRESET_DIR)
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_preset(name_or_path: str | Path) -> SoulConfig:
    """Read a shipped preset by name, or any YAML file by path, into a checked `SoulConfig`.

    A preset may start with `extends: <preset>` (a shipped name, or a YAML path relative to the
    file): its mappings are merged over the parent's, key by key, so a variant such as `mini-fast`
    states only what differs and follows its parent when the parent changes. Lists and scalars
    replace the parent's value; `name` is always the child's own.
    """
    source = str(name_or_path)
    data = _resolve(source, None, ())
    try:
        return SoulConfig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise InputError(source, f"{where}: {first['msg']}", f"{len(err.errors())} problem(s); compare with soul/presets/tiny.yaml") from err


def merge_presets(parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """`child` over `parent`: mappings merge recursively, anything else (lists too) is replaced."""
    out = dict(parent)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_presets(out[key], value)
        else:
            out[key] = value
    return out


_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader when PyYAML was built with it: the same documents, ~10x faster. Every
generation reads its preset, and the pure-Python parser took 0.06 s of a 0.9 s fast-path call."""


def _resolve(source: str, base_dir: Path | None, chain: tuple[str, ...]) -> dict[str, Any]:
    """One preset's raw mapping with its `extends` chain merged in (not yet validated).

    `chain` is the labels of the presets that extend this one (empty at the top level).
    """
    data, label, default_name, own_dir = _read_raw(source, base_dir, nested=bool(chain))
    if label in chain:
        raise InputError(source, f"extends itself through {' -> '.join([*chain, label])}", "remove the cycle of `extends:`")
    name = data.get("name", default_name)
    parent = data.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str) or not parent:
            raise InputError(source, f"extends: {parent!r} is not a preset name", f"name one of: {', '.join(available_presets())}")
        try:
            base = _resolve(parent, own_dir, (*chain, label))
        except InputError as err:  # name the preset that asked for the parent, not only the parent
            raise InputError(source, f"extends {parent!r}: {err.subject}: {err.problem}", err.fix) from err
        data = merge_presets(base, data)
    data["name"] = name
    return data


def _read_raw(source: str, base_dir: Path | None, nested: bool) -> tuple[dict[str, Any], str, str, Path | None]:
    """The YAML mapping of a preset name or path, a label for cycle checks, its default name, its folder.

    At the top level any existing path counts as a file (as `--preset` always allowed); inside
    `extends:` only a `.yaml`/`.yml` value is a path (relative to the extending file), anything
    else a shipped name, so a stray folder in the working directory cannot shadow a preset.
    """
    path = Path(source)
    is_yaml = path.suffix in {".yaml", ".yml"}
    if is_yaml and base_dir is not None and not path.is_absolute():
        path = base_dir / path
    if is_yaml or (not nested and path.exists()):
        if not path.is_file():
            raise InputError(path, "preset file not found", f"give an existing YAML file or one of: {', '.join(available_presets())}")
        text = path.read_text(encoding="utf-8")
        label, default_name, own_dir = str(path.resolve()), path.stem, path.parent
    else:
        names = available_presets()
        if source not in names:
            raise InputError(f"preset {source!r}", "unknown preset", f"available presets: {', '.join(names)}")
        text = resources.files("soul").joinpath(PRESET_DIR, f"{source}.yaml").read_text(encoding="utf-8")
        label, default_name, own_dir = f"preset:{source}", source, None
    try:
        data = yaml.load(text, Loader=_SAFE_LOADER)
    except yaml.YAMLError as err:
        raise InputError(source, f"not valid YAML: {err}", "fix the YAML syntax") from err
    if not isinstance(data, dict):
        raise InputError(source, "a preset must be a YAML mapping", "see soul/presets/tiny.yaml for the layout")
    return data, label, default_name, own_dir
