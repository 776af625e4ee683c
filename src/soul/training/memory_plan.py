"""Per-GPU memory of a training stage, computed from the real parameter counts.

A lab deciding between DDP and FSDP, full fine-tuning and LoRA needs numbers before renting GPUs.
These come from the same meta-device model builds as `soul info` and standard accounting:
mixed-precision AdamW keeps fp32 master weights, fp32 gradients and two fp32 moments per trainable
parameter (16 bytes); frozen weights sit in bf16 (2 bytes); FSDP divides sharded tensors by the
number of GPUs and all-gathers one block (plus one prefetched) in bf16 at a time. (The trainer's
FSDP2 units are a block's attention, cross-attention and FFN and each audio layer, see
``soul.training.fsdp``; under autocast they are gathered in fp32. The largest unit, the FFN,
plus a prefetched attention is then ~0.47 GiB at 5B, under the two bf16 blocks counted here.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from soul.config import SoulConfig
from soul.models.info import activation_estimate, parameter_counts, token_counts

GB = 1024**3


@dataclass
class MemoryPlan:
    preset: str
    trainable: str
    sharding: str
    gpus: int
    trainable_params: int
    frozen_params: int
    weights_gb: float
    gradients_gb: float
    optimizer_gb: float
    gathered_block_gb: float
    activations_gb: float
    total_gb: float

    def as_dict(self) -> dict:
        return asdict(self)


def plan_memory(
    config: SoulConfig,
    *,
    trainable: Literal["audio", "all", "lora"] = "all",
    sharding: Literal["fsdp", "ddp"] = "fsdp",
    gpus: int = 8,
    height: int | None = None,
    width: int | None = None,
    frames: int | None = None,
    lora_rank: int = 64,
    gradient_checkpointing: bool = True,
) -> MemoryPlan:
    """Memory per GPU for one training stage at batch 1 per GPU, encoders' outputs cached."""
    counts = parameter_counts(config)
    backbone, soul = counts["backbone"], counts["soul_audio_layers"]
    t = config.transformer
    if trainable == "all":
        train_n, frozen_n = backbone + soul, 0
    elif trainable == "audio":
        train_n, frozen_n = soul, backbone
    else:  # LoRA on q/k/v/out of both attentions in every block: 2 * rank * (in + out) per projection
        lora = t.num_layers * 8 * 2 * lora_rank * t.inner_dim
        train_n, frozen_n = soul + lora, backbone
    shard = gpus if sharding == "fsdp" else 1
    weights = (train_n * 4 + frozen_n * 2) / shard
    gradients = train_n * 4 / shard
    optimizer = train_n * 8 / shard
    block = (backbone / t.num_layers) * 2 * 2 if sharding == "fsdp" else 0.0  # bf16, current + prefetched block
    tokens = token_counts(config, height or config.sampling.height, width or config.sampling.width, frames or config.sampling.chunk_frames)
    act = activation_estimate(config, tokens, "bf16")
    per_block_input = tokens["video_tokens"] * t.inner_dim * 2
    if gradient_checkpointing:
        activations = per_block_input * t.num_layers + act["block_peak_fused_attention"] * 2  # saved inputs + one block's recompute with grads
    else:
        activations = act["block_peak_fused_attention"] * t.num_layers * 2
    total = weights + gradients + optimizer + block + activations
    return MemoryPlan(
        preset=config.name,
        trainable=trainable,
        sharding=sharding,
        gpus=gpus,
        trainable_params=train_n,
        frozen_params=frozen_n,
        weights_gb=round(weights / GB, 2),
        gradients_gb=round(gradients / GB, 2),
        optimizer_gb=round(optimizer / GB, 2),
        gathered_block_gb=round(block / GB, 2),
        activations_gb=round(activations / GB, 2),
        total_gb=round(total / GB, 2),
    )
