"""One generation over torchrun's processes: process groups, the device mesh, who writes.

``init_parallel(spec, device)`` joins the process group torchrun set up the environment for
(gloo for CPU tensors, NCCL for CUDA ones) and builds a device mesh ``("cfg", "ring", "ulysses")``
of shape ``(C, 1, U)``: ranks ``c*U .. c*U + U - 1`` form guidance group ``c``'s sequence-parallel
group (neighbours, so the all-to-alls stay on the fastest links), and ranks with the same Ulysses
index form a guidance group. The ring dimension has size 1: diffusers' mesh needs it, and ring
attention needs GPU attention backends that return the log-sum-exp.

Every rank runs the same generation: the same inputs, the same per-chunk seeded noise, the same
decisions; sampling is where they cooperate. Rank 0 alone writes (the MP4, the resume state); the
other ranks see the resume state through ``SharedChunkStore`` and pass no frame sink, so they skip
decoding.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh

from soul.errors import InputError
from soul.parallel.cfg import GuidanceParallel, check_guidance_degree
from soul.parallel.spec import ParallelSpec
from soul.parallel.ulysses import enable_sequence_parallel
from soul.sampling.guidance import GuideFn, guided_velocity

_LAUNCH = "launch it as: torchrun --nproc_per_node {n} -m soul {command} ... --parallel {spec}"


@dataclass
class ParallelRuntime:
    """This process's place in a parallel generation."""

    spec: ParallelSpec
    rank: int
    world_size: int
    device: torch.device
    mesh: Any  # torch DeviceMesh ("cfg", "ring", "ulysses")
    owns_process_group: bool = False

    @property
    def is_writer(self) -> bool:
        """Whether this rank writes the outputs (rank 0)."""
        return self.rank == 0

    @property
    def cfg_rank(self) -> int:
        return self.mesh["cfg"].get_local_rank()

    @property
    def ulysses_rank(self) -> int:
        return self.mesh["ulysses"].get_local_rank()

    @property
    def guide(self) -> GuideFn:
        """What combines a step's guidance passes on this rank (``denoise_chunk(..., guide=)``)."""
        if self.spec.cfg == 1:
            return guided_velocity
        return GuidanceParallel(self.mesh["cfg"].get_group(), self.spec.cfg, self.cfg_rank)

    def check(self, *, heads: int, num_passes: int, chunk_tokens: list[int]) -> None:
        """The checks that need only the config and the settings, made before any model is loaded.

        ``chunk_tokens``: the transformer tokens of each chunk, which Ulysses splits evenly.
        """
        u = self.spec.ulysses
        if heads % u:
            raise InputError("--parallel", f"ulysses={u} does not divide the model's {heads} attention heads", f"use a divisor of {heads}")
        uneven = sorted({n for n in chunk_tokens if n % u})
        if uneven:
            raise InputError(
                "--parallel", f"ulysses={u} cannot split chunks of {uneven[0]} tokens evenly",
                "pick a size or --chunk-frames whose token count per chunk is a multiple of the ulysses degree",
            )
        check_guidance_degree(self.spec.cfg, num_passes)

    def apply(self, transformer: torch.nn.Module) -> None:
        """Sequence-parallel ``transformer`` over this rank's Ulysses group (nothing for ulysses=1)."""
        if self.spec.ulysses > 1:
            enable_sequence_parallel(transformer, self.mesh["ring", "ulysses"], self.spec.ulysses)  # type: ignore[arg-type]

    def share_store(self, store: Any) -> SharedChunkStore:
        """Rank 0's resume state (``store``; None on the other ranks) as every rank must see it."""
        return SharedChunkStore(store if self.is_writer else None, self.device)

    def close(self) -> None:
        """Leave the process group if this runtime joined it."""
        if self.owns_process_group and dist.is_initialized():
            dist.destroy_process_group()


def init_parallel(spec: ParallelSpec | str, device: str | torch.device = "cpu", *, command: str = "generate") -> ParallelRuntime:
    """Join torchrun's process group and build the mesh for ``spec`` (``"ulysses=2,cfg=1"``).

    ``device`` is the device type to run on: ``cpu`` (gloo) or ``cuda`` (NCCL; rank ``r`` uses
    ``cuda:LOCAL_RANK``). The world size must be ``ulysses * cfg``. An already initialised process
    group is reused (and left open by ``close``). ``command`` is the soul command the error messages
    tell the user to launch under torchrun.
    """
    spec = ParallelSpec.parse(spec) if isinstance(spec, str) else spec
    device = torch.device(device)
    world = int(os.environ.get("WORLD_SIZE", "1")) if not dist.is_initialized() else dist.get_world_size()
    if "WORLD_SIZE" not in os.environ and not dist.is_initialized():
        raise InputError("--parallel", f"{spec} needs {spec.world_size} processes and this is a single process", _LAUNCH.format(n=spec.world_size, spec=spec, command=command))
    if world != spec.world_size:
        raise InputError(
            "--parallel", f"{spec} needs {spec.world_size} processes (ulysses x cfg) but {world} were launched",
            _LAUNCH.format(n=spec.world_size, spec=spec, command=command),
        )
    if device.type == "cuda":
        if device.index is not None:
            raise InputError("--device", f"{device} names a GPU, but under --parallel each rank takes its own", "pass --device cuda (rank r uses cuda:LOCAL_RANK)")
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise InputError("--device", f"{device.type} is not supported with --parallel", "use cpu (gloo) or cuda (NCCL)")
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", device_id=device if device.type == "cuda" else None)
    mesh = init_device_mesh(device.type, (spec.cfg, 1, spec.ulysses), mesh_dim_names=("cfg", "ring", "ulysses"))
    return ParallelRuntime(spec=spec, rank=dist.get_rank(), world_size=world, device=device, mesh=mesh, owns_process_group=owns)


class SharedChunkStore:
    """A ``ChunkStore`` (``soul.pipelines.long_video``) whose files only rank 0 holds.

    Rank 0 reads its resume state and broadcasts what the driver reads (finished chunks, their
    records, their latents), so every rank skips the same chunks and continues from the same
    motion frames; only rank 0 saves. Every method is a collective where the driver calls it on
    every rank (construction, ``load_chunk``).
    """

    def __init__(self, inner: Any, device: torch.device) -> None:
        self.inner, self.device = inner, device
        payload: list[Any] = [(inner.num_done, [dict(c) for c in inner.chunks]) if inner is not None else None]
        dist.broadcast_object_list(payload, src=0, device=device if device.type == "cuda" else None)
        self._num_done, self._chunks = payload[0]

    @property
    def num_done(self) -> int:
        return self._num_done

    @property
    def chunks(self) -> list[dict[str, Any]]:
        return self.inner.chunks if self.inner is not None else self._chunks

    def load_chunk(self, index: int) -> torch.Tensor:
        payload: list[Any] = [self.inner.load_chunk(index).cpu() if self.inner is not None else None]
        dist.broadcast_object_list(payload, src=0, device=self.device if self.device.type == "cuda" else None)
        return payload[0]

    def save_chunk(self, index: int, latents: torch.Tensor, record: dict[str, Any]) -> None:
        if self.inner is not None:
            self.inner.save_chunk(index, latents, record)
