"""Ulysses sequence parallelism for ``SoulTransformer3DModel``, through diffusers' context-parallel hooks.

diffusers (``hooks/context_parallel.py``) does the heavy part: hooks split module inputs / outputs
along the token sequence and gather the output, and every self-attention swaps its sequence shard
for a head shard with all-to-alls (``TemplatedUlyssesAttention``: q, k, v in, the output back), so
each rank attends over all tokens with ``heads / U`` heads. Cross-attentions (text, and Soul's
audio) stay local: a query shard attends to the full, unsplit keys.

Soul's plan differs from diffusers' ``WanTransformer3DModel._cp_plan`` in two places:

- the hidden states are split at ``sequence_entry`` (an identity module just before the blocks),
  not at ``blocks.0``: Soul's audio blocks run their block step by step, so ``blocks.0.forward``
  is not called when block 0 carries audio. The per-token audio frame gate is split there too.
- the audio cross-attention is frame-local: tokens of latent frame ``k`` attend to the audio
  tokens of frame ``k`` through a per-token speaker mask, with frames folded into the batch. After
  the split, a rank holds tokens ``[r * S/U, (r + 1) * S/U)``, which need not start or end on a
  frame boundary. ``FrameLocalAudioHook`` (on every ``audio_layers.<i>``) cuts the shard at frame
  boundaries into at most three runs (a partial first frame, whole frames, a partial last frame)
  and calls the layer once per run with that run's frames of audio tokens and rows of the mask.
  Every token therefore meets exactly the keys it meets in one process; the layer's own code runs
  unchanged.

Everything else needs nothing: the rotary tables and the per-token timesteps (2-D, 0 on the clean
anchor / motion frames) are split by the plan like the tokens, so prefix frames keep timestep 0
and no audio, and ``proj_out``'s output is gathered, so every rank returns the whole velocity.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput

from soul.errors import InputError
from soul.models.transformer import AudioCrossAttention, SoulTransformer3DModel

AUDIO_HOOK = "soul_frame_local_audio"
CHECK_HOOK = "soul_sequence_check"

SOUL_CP_PLAN: dict[str, Any] = {
    "rope": {
        0: ContextParallelInput(split_dim=1, expected_dims=4, split_output=True),
        1: ContextParallelInput(split_dim=1, expected_dims=4, split_output=True),
    },
    "sequence_entry": {
        "hidden_states": ContextParallelInput(split_dim=1, expected_dims=3),
        "frame_gate": ContextParallelInput(split_dim=1, expected_dims=3),
    },
    "proj_out": ContextParallelOutput(gather_dim=1, expected_dims=3),
    "": {"timestep": ContextParallelInput(split_dim=1, expected_dims=2)},
}
"""diffusers' Wan plan with the hidden-state split moved to ``sequence_entry`` (see the module doc)."""


@dataclass(frozen=True)
class FrameRun:
    """Consecutive shard rows lying in frames ``[frame, frame + frames)``, rows ``[row, row + rows)`` of each."""

    frame: int
    frames: int
    row: int
    rows: int

    @property
    def length(self) -> int:
        return self.frames * self.rows


def frame_runs(start: int, length: int, per_frame: int) -> list[FrameRun]:
    """Cut tokens ``[start, start + length)`` of a frame-major sequence into frame-aligned runs.

    At most three: the tail of a partly held first frame, the whole frames, the head of a partly
    held last frame (one run if the shard lies inside one frame).
    """
    if per_frame < 1 or start < 0 or length < 0:
        raise ValueError(f"bad shard: start {start}, length {length}, {per_frame} tokens per frame")
    runs, pos, end = [], start, start + length
    while pos < end:
        frame, row = divmod(pos, per_frame)
        if row or end - pos < per_frame:
            stop = min(end, (frame + 1) * per_frame)
            runs.append(FrameRun(frame, 1, row, stop - pos))
            pos = stop
        else:
            whole = (end - pos) // per_frame
            runs.append(FrameRun(frame, whole, 0, per_frame))
            pos += whole * per_frame
    return runs


def _cp_rank_and_size(parallel_config: Any) -> tuple[int, int]:
    """This rank's index and the size of the sequence split (the mesh diffusers' sharder uses)."""
    mesh = parallel_config._flattened_mesh
    return dist.get_rank(mesh.get_group()), mesh.size()


class FrameLocalAudioHook(ModelHook):
    """Runs an ``AudioCrossAttention`` on a rank's token shard with the audio of the shard's frames.

    The layer is called as ``layer(hidden_states [B, S/U, dim], audio_tokens [B*F, T, dim],
    num_frames=F, attention_mask [B*F, 1, S/F, T] | None)``: ``hidden_states`` is the shard, the
    rest describe all ``F`` frames (they are per frame, so the plan does not split them).
    """

    def __init__(self, parallel_config: Any) -> None:
        super().__init__()
        self.parallel_config = parallel_config
        self.signature = inspect.signature(AudioCrossAttention.forward)

    def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> torch.Tensor:
        bound = self.signature.bind(module, *args, **kwargs)
        bound.apply_defaults()
        hidden, tokens, frames, mask = (bound.arguments[k] for k in ("hidden_states", "audio_tokens", "num_frames", "attention_mask"))
        forward = self.fn_ref.original_forward
        rank, size = _cp_rank_and_size(self.parallel_config)
        batch, local, _ = hidden.shape
        total = local * size
        if total % frames:
            raise ValueError(f"{total} tokens do not make {frames} equal frames")
        per_frame = total // frames
        tokens = tokens.unflatten(0, (batch, frames))  # [B, F, T, dim]
        if mask is not None:
            mask = mask.unflatten(0, (batch, frames))  # [B, F, 1, per_frame, T]
        outputs, offset = [], 0
        for run in frame_runs(rank * local, local, per_frame):
            part = hidden[:, offset : offset + run.length]
            run_tokens = tokens[:, run.frame : run.frame + run.frames].flatten(0, 1)
            run_mask = None
            if mask is not None:
                run_mask = mask[:, run.frame : run.frame + run.frames, :, run.row : run.row + run.rows].flatten(0, 1)
            outputs.append(forward(part, run_tokens, run.frames, run_mask))
            offset += run.length
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)


class SequenceCheckHook(ModelHook):
    """Fails with a clear message when a call's token count does not split evenly over the ranks."""

    def __init__(self, degree: int, patch_size: tuple[int, int, int]) -> None:
        super().__init__()
        self.degree, self.patch_size = degree, patch_size

    def pre_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        if isinstance(hidden, torch.Tensor) and hidden.ndim == 5:
            p_t, p_h, p_w = self.patch_size
            tokens = (hidden.shape[2] // p_t) * (hidden.shape[3] // p_h) * (hidden.shape[4] // p_w)
            if tokens % self.degree:
                raise InputError(
                    "--parallel",
                    f"ulysses={self.degree} cannot split a chunk of {tokens} tokens evenly",
                    "pick a size or --chunk-frames whose token count per chunk is a multiple of the ulysses degree",
                )
        return args, kwargs


@contextmanager
def _cpu_device_count() -> Iterator[None]:
    """Make a process without accelerator report one device while diffusers sets up parallelism.

    diffusers 0.42.1's ``_resolve_parallel_config`` computes ``rank % torch.accelerator.device_count()``,
    which is 0 on a CPU-only machine (ZeroDivisionError); with 1 it picks ``cpu:0``, which is
    all it uses the value for. Applied only when no accelerator is present, undone on exit.
    """
    if torch.accelerator.is_available():
        yield
        return
    original = torch.accelerator.device_count
    torch.accelerator.device_count = lambda: 1  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.accelerator.device_count = original  # type: ignore[assignment]


@contextmanager
def _quiet_diffusers() -> Iterator[None]:
    """diffusers logs an "experimental feature" warning per rank and call; Soul pins the version it tested."""
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)


# diffusers 0.42's gather hook calls funcol.all_gather_tensor, which torch 2.13 deprecates (a
# FutureWarning per rank, nothing a user can act on).
warnings.filterwarnings("ignore", message=r".*all_gather_tensor.* is deprecated", category=FutureWarning)


def enable_sequence_parallel(transformer: SoulTransformer3DModel, mesh: Any, degree: int) -> None:
    """Split every call of ``transformer`` over ``degree`` ranks (Ulysses), in place.

    ``mesh`` is a 2-D device mesh with dims ("ring", "ulysses") of shape (1, degree): this rank's
    sequence-parallel group (a slice of a larger mesh when guidance parallelism is combined with it).
    Collective: every rank of the mesh must call it.
    """
    from diffusers import ContextParallelConfig

    heads = int(transformer.config.num_attention_heads)
    if heads % degree:
        raise InputError("--parallel", f"ulysses={degree} does not divide the model's {heads} attention heads", f"use a divisor of {heads}")
    # Ulysses needs a backend that can run on a head shard after the all-to-all; "native" (torch
    # SDPA) does, on CPU and GPU. Keep a backend the user already chose.
    if all(getattr(m.processor, "_attention_backend", None) is None for m in transformer.modules() if hasattr(m, "processor")):
        with _quiet_diffusers():
            transformer.set_attention_backend("native")
    config = ContextParallelConfig(ulysses_degree=degree, mesh=mesh)
    with _cpu_device_count(), _quiet_diffusers():
        transformer.enable_parallelism(config=config, cp_plan=SOUL_CP_PLAN)
    cp_config = transformer._parallel_config.context_parallel_config
    for layer in transformer.audio_layers.values():
        HookRegistry.check_if_exists_or_initialize(layer).register_hook(FrameLocalAudioHook(cp_config), AUDIO_HOOK)
    patch = tuple(int(p) for p in transformer.config.patch_size)
    HookRegistry.check_if_exists_or_initialize(transformer).register_hook(SequenceCheckHook(degree, patch), CHECK_HOOK)  # type: ignore[arg-type]


def all_to_all_bytes(*, batch: int, tokens: int, heads: int, head_dim: int, degree: int, element_size: int) -> int:
    """Bytes one rank sends in the all-to-alls of one self-attention call (q, k, v in; output back).

    Each all-to-all moves a rank's ``[B, S/U, H, D]`` tensor, keeping ``1/U`` of it; the output
    all-to-all moves a tensor of the same size back. Received bytes are the same.
    """
    local = batch * (tokens // degree) * heads * head_dim * element_size
    return 4 * local * (degree - 1) // degree
