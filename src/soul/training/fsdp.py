"""FSDP2 (``torch.distributed.fsdp.fully_shard``) for the Soul transformer: where to shard, and
how full state dicts go in and out of a sharded model.

Where to shard. FSDP2 all-gathers a unit's parameters in a forward pre-hook of the module it was
applied to, so a unit must be entered through ``module(...)``. Blocks without audio are, but Soul
runs each audio block step by step from the model (``SoulTransformer3DModel._audio_block``: it
calls ``block.attn1``, ``block.norm2``, ``block.attn2``, ``block.ffn`` and reads
``block.scale_shift_table`` directly) and never calls ``block(...)``. Sharding whole blocks
therefore fails on the first audio block ("aten.add.Tensor got mixed torch.Tensor and DTensor").
So the units are each block's children that hold parameters (attention, text cross-attention,
FFN, norms with weights) and each audio layer; what remains (a block's ``scale_shift_table``, the
patch / condition embedders, the audio projector, the output head: well under 1 % of the weights
at 5B) belongs to the root unit, which is gathered for the whole forward and backward.

Gradient accumulation: gradients are reduce-scattered after every micro-batch. Skipping that
(``set_requires_gradient_sync(False)``) would keep unsharded gradients of the whole model until
the last micro-batch, which is exactly the memory FSDP is used to avoid.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def shard_transformer(module: nn.Module, **fsdp_kwargs: Any) -> nn.Module:
    """Apply ``fully_shard`` to the units described above, then to the root; returns ``module``
    (FSDP2 shards in place: parameters become ``DTensor`` shards along dim 0)."""
    from torch.distributed.fsdp import fully_shard

    for block in getattr(module, "blocks", []):
        for child in block.children():
            if any(True for _ in child.parameters()):
                fully_shard(child, **fsdp_kwargs)
    for layer in getattr(module, "audio_layers", {}).values():
        fully_shard(layer, **fsdp_kwargs)
    return fully_shard(module, **fsdp_kwargs)


def is_sharded(module: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def full_model_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The whole state dict with full (unsharded) tensors on the CPU.

    Sharded: a collective (every rank must call it); rank 0 receives the tensors, the other ranks
    an empty dict (``cpu_offload=True`` keeps one full copy, on rank 0 only). Unsharded: the
    module's own state dict, detached, on the CPU.
    """
    if not is_sharded(module):
        return {k: v.detach().cpu() for k, v in module.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_model_state(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy full tensors (every rank holds ``state``; a subset of keys is fine) into the module,
    each rank keeping its own shard."""
    if not is_sharded(module):
        params = dict(module.named_parameters())
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value.to(params[name].device, params[name].dtype))
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(module, state, options=StateDictOptions(full_state_dict=True, strict=False))


def full_optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimiser state keyed by parameter name with full tensors (collective; rank 0 gets it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(module, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_full_optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any], names: list[str]) -> None:
    """Load a full optimiser state (every rank holds it). ``names`` are the optimised parameters'
    names in optimiser order: a state saved by one process (``optimizer.state_dict()``, keyed by
    position) is renamed first, so a single-process checkpoint resumes under FSDP."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    state = by_name(state, names)
    unknown = sorted(set(state["state"]) - set(names))
    if unknown:
        raise ValueError(f"optimiser state for parameters this run does not train: {unknown[:5]}")
    # strict=False: a trained parameter that never received a gradient (e.g. the audio null token
    # of single-speaker data) has no AdamW state in any layout, and that is not an error.
    set_optimizer_state_dict(module, optimizer, optim_state_dict=state, options=StateDictOptions(full_state_dict=True, strict=False))


def by_name(state: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """``optimizer.state_dict()`` (parameters by position) -> the same keyed by parameter name."""
    if all(isinstance(k, str) for k in state["state"]) and all(isinstance(p, str) for g in state["param_groups"] for p in g["params"]):
        return state
    return {
        "state": {names[int(k)]: v for k, v in state["state"].items()},
        "param_groups": [{**g, "params": [names[int(p)] for p in g["params"]]} for g in state["param_groups"]],
    }


def by_position(state: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The inverse of ``by_name``: what ``optimizer.load_state_dict`` of an unsharded run takes."""
    if all(isinstance(k, int) for k in state["state"]):
        return state
    index = {n: i for i, n in enumerate(names)}
    return {
        "state": {index[k]: v for k, v in state["state"].items()},
        "param_groups": [{**g, "params": [index[p] for p in g["params"]]} for g in state["param_groups"]],
    }
