"""Training configuration: one YAML file per run, checked when it is read.

Stages of the 5B recipe are separate files under `configs/train/` (audio layers only, then all
weights or LoRA, then the long-video stage with random motion-prefix lengths); the tiny file runs
the same code on this CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from soul.errors import InputError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Section):
    """Where clips come from and how training windows are cut from them."""

    path: str  # a `soul data` output directory (manifest.parquet + clips/) or a directory / glob of shards
    num_frames: int = Field(17, gt=0)  # video frames per training window: 4k+1
    fps: float = Field(16.0, gt=0)
    buckets: list[tuple[int, int]] = Field(default_factory=lambda: [(64, 64)])  # (height, width) choices by aspect
    categories: list[str] | None = None  # keep only these categories (None = all kept clips)
    workers: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _causal(self) -> "DataConfig":
        if (self.num_frames - 1) % 4:
            raise ValueError("data.num_frames must be 4k+1 (the VAE is causal, 4x in time)")
        return self


class ConditioningConfig(_Section):
    """Guidance dropout and the long-video layout the model must learn."""

    drop_text: float = Field(0.1, ge=0, le=1)
    drop_audio: float = Field(0.1, ge=0, le=1)
    drop_both: float = Field(0.05, ge=0, le=1)
    max_prefix_latents: int = Field(0, ge=0)  # motion prefix M drawn uniformly from 0..max (0 = TI2V only)
    reference_from_clip: bool = True  # anchor frame drawn from anywhere in the clip, not its first frame
    mouth_weight: float = Field(1.0, ge=1.0)  # loss weight inside the annotated mouth/face region
    # Weight of a second loss: the predicted clean latents decoded by the frozen VAE, squared error
    # in pixels inside the mouth boxes (soul.training.pixel_loss). 0 = off (no decode per step).
    pixel_mouth_weight: float = Field(0.0, ge=0.0)
    # Latent cells a side of the window decoded around each mouth: the box plus a cell or more of
    # margin (a box wider than the window is scored on the part inside it).
    pixel_mouth_crop: int = Field(6, gt=0)


class OptimConfig(_Section):
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = Field(0, ge=0)
    schedule: Literal["constant", "cosine"] = "constant"
    grad_clip: float = Field(1.0, gt=0)
    batch_size: int = Field(1, gt=0)  # per process
    grad_accum: int = Field(1, gt=0)


class TrainConfig(_Section):
    """A whole run."""

    preset: str = "tiny"
    init_checkpoint: str | None = None  # Soul/official checkpoint directory; None = preset's random init
    trainable: Literal["audio", "all", "lora"] = "audio"
    lora_rank: int = Field(32, gt=0)
    data: DataConfig
    conditioning: ConditioningConfig = Field(default_factory=ConditioningConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    max_steps: int = Field(1000, gt=0)
    seed: int = 0
    timestep_sampling: Literal["logit_normal", "uniform"] = "logit_normal"
    flow_shift: float = Field(1.0, gt=0)  # shift applied to sampled training t, as at inference
    checkpoint_every: int = Field(100, gt=0)
    keep_last: int = Field(3, gt=0)
    log_every: int = Field(1, gt=0)
    max_nonfinite: int = Field(10, ge=0)  # skipped non-finite steps tolerated before the run aborts
    mixed_precision: Literal["no", "bf16"] = "no"
    gradient_checkpointing: bool = False
    distributed: Literal["auto", "ddp", "fsdp"] = "auto"
    cache_dir: str | None = None  # caches of text embeddings, audio features and VAE latents
    output: str = "runs/train"


def load_yaml_config(path: str | Path, model: type[BaseModel], overrides: dict | None = None, example: str = "configs/train/tiny.yaml") -> Any:
    """Read a YAML config into `model`; a missing file, bad YAML or a bad field is one InputError
    naming the file and the field. Relative paths inside are relative to the working directory."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "config not found", f"give a YAML file, e.g. {example}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise InputError(path, f"not valid YAML: {err}", "fix the YAML syntax") from None
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(path, f"{where}: {first['msg']}", f"compare with {example}") from None


def load_train_config(path: str | Path, overrides: dict | None = None) -> TrainConfig:
    """Read a training YAML (see `load_yaml_config`)."""
    return load_yaml_config(path, TrainConfig, overrides)
