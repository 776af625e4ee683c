"""Generations (and one transformer call) whose exact results a test compares across process layouts.

Usage, under torchrun or alone: ``python parallel_generate.py JOBS.json``. JOBS.json is a list of

- ``{"kind": "generate", "request": {build_request fields}, "parallel": "ulysses=2" | null, "out": PREFIX}``:
  runs ``run_generate`` and saves, on rank 0, the frames handed to the MP4 writer (``PREFIX.frames.npy``),
  the latents of every sampled chunk (``PREFIX.latents.npy``) and the result (``PREFIX.json``);
- ``{"kind": "forward", "preset": "tiny", "parallel": ..., "out": PREFIX}``: one call of a transformer
  whose audio layers are switched on (two speakers with masks, per-token timesteps with a clean
  prefix, token shards that end inside a latent frame), output saved as ``PREFIX.pt``.

Under torchrun the process group is joined once and reused by every job. Tests import
``record_generate`` / ``forward_output`` to make the one-process references in-process.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

torch.set_num_threads(1)


@contextmanager
def recording() -> Iterator[dict[str, list[np.ndarray]]]:
    """Copies of the frames given to every ``VideoWriter`` and the latents of every saved chunk."""
    from soul.jobs.resume import ResumeState
    from soul.media.video import VideoWriter

    seen: dict[str, list[np.ndarray]] = {"frames": [], "latents": []}
    write, save = VideoWriter.write, ResumeState.save_chunk

    def write_and_keep(self: Any, frames: np.ndarray) -> None:
        if not getattr(self, "fragmented", False):
            seen["frames"].append(np.array(frames, copy=True))
        write(self, frames)

    def save_and_keep(self: Any, index: int, latents: torch.Tensor, record: dict[str, Any]) -> None:
        seen["latents"].append(latents.detach().cpu().numpy().reshape(-1).copy())
        save(self, index, latents, record)

    VideoWriter.write, ResumeState.save_chunk = write_and_keep, save_and_keep  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        VideoWriter.write, ResumeState.save_chunk = write, save  # type: ignore[method-assign]


def record_generate(request: dict[str, Any], parallel: str | None, out: str | Path) -> dict[str, Any] | None:
    """Run one job; the writing rank saves ``out``.frames.npy / .latents.npy / .json and returns the result."""
    from soul.jobs.generate import build_request, run_generate

    with recording() as seen:
        result = run_generate(build_request(**request), parallel=parallel)
    if not seen["frames"]:  # a rank that does not write
        return None
    out = str(out)
    np.save(out + ".frames.npy", np.concatenate(seen["frames"]))
    np.save(out + ".latents.npy", np.concatenate(seen["latents"]) if seen["latents"] else np.zeros(0, np.float32))
    summary = result.as_dict()
    Path(out + ".json").write_text(json.dumps(summary, default=str))
    return summary


def forward_output(preset: str, parallel: str | None, *, streams: int = 2, audio_hook: bool = True) -> torch.Tensor:
    """One transformer call with the audio layers on and a clean 2-frame prefix: ``streams`` speakers
    (with left / right masks when 2). ``audio_hook=False`` removes Soul's frame-local audio hook after
    the parallel setup: the negative control (with one speaker and no mask the layers then run, wrongly,
    on a token shard as if it held every frame)."""
    from soul.config import load_preset
    from soul.models.transformer import build_transformer
    from soul.sampling.layout import audio_frame_mask, token_timesteps

    config = load_preset(preset)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_transformer(config).eval()
        with torch.no_grad():
            for layer in model.audio_layers.values():  # zero-initialised: make them matter
                torch.nn.init.normal_(layer.attn.to_out[0].weight, std=0.2)
    g = torch.Generator().manual_seed(1)
    batch, frames, height, width = 1, 5, 4, 6  # 5 frames of 2x3 tokens: 30, split 15 | 15
    x = torch.randn(batch, 48, frames, height, width, generator=g)
    text = torch.randn(batch, 8, config.transformer.text_dim, generator=g)
    c = model.config
    feats = torch.randn(batch, streams, frames, c.audio_window, c.audio_num_hidden_states, c.audio_feature_dim, generator=g)
    masks = None
    if streams == 2:
        masks = torch.zeros(batch, streams, height, width)
        masks[:, 0, :, :3], masks[:, 1, :, 3:] = 1.0, 1.0
    t = token_timesteps(torch.tensor(700.0), (frames, height, width), tuple(c.patch_size), 2, batch, "cpu")
    if parallel is not None:
        from diffusers.hooks import HookRegistry

        from soul.parallel.runtime import init_parallel
        from soul.parallel.ulysses import AUDIO_HOOK

        init_parallel(parallel).apply(model)
        if not audio_hook:
            for layer in model.audio_layers.values():
                HookRegistry.check_if_exists_or_initialize(layer).remove_hook(AUDIO_HOOK)
    with torch.no_grad():
        return model(
            hidden_states=x, timestep=t, encoder_hidden_states=text, audio_features=feats, audio_masks=masks,
            audio_frame_mask=audio_frame_mask(frames, 2, batch, "cpu"), return_dict=False,
        )[0]


def main() -> None:
    import os

    import torch.distributed as dist

    jobs = json.loads(Path(sys.argv[1]).read_text())
    if "WORLD_SIZE" in os.environ:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    for job in jobs:
        if job["kind"] == "generate":
            record_generate(job["request"], job.get("parallel"), job["out"])
        else:
            out = forward_output(job["preset"], job.get("parallel"), streams=job.get("streams", 2), audio_hook=job.get("audio_hook", True))
            if rank == 0:
                torch.save(out, job["out"] + ".pt")
        print(f"rank {rank}: {job['out']} done", flush=True)
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
