"""Multi-person drawn clips: each mouth follows its own voice; shards carry each voice and place;
the trainer binds each voice to its person (masks reach the model, and the loss depends on who
gets which voice)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from soul.miniature.clips import write_clip_shards
from soul.miniature.group import draw_group_clip
from soul.miniature.lipsync import score_lipsync
from soul.training.config import ConditioningConfig, DataConfig, OptimConfig, TrainConfig
from soul.training.trainer import Trainer


@pytest.mark.parametrize("people", [2, 3, 4])
def test_each_drawn_mouth_follows_its_own_voice(people: int) -> None:
    group = draw_group_clip(7, people, 12.0)
    assert group.frames.shape == (192, 64, 64 * people, 3)
    assert np.array_equal(group.frames, draw_group_clip(7, people, 12.0).frames)
    masks = group.person_masks()
    assert not (masks.sum(axis=0) > 1).any() and masks.all(axis=0).sum() == 0 and masks.any(axis=0).all()
    for k in range(people):
        crop = group.slots[k].crop(group.frames)
        own = score_lipsync(crop, group.faces[k], group.audios[k], group.fps).r
        cross = [score_lipsync(crop, group.faces[k], group.audios[j], group.fps).r for j in range(people) if j != k]
        assert own > 0.85 and own - max(cross) > 0.4, (k, own, cross)
    assert any(s.size < 64 for s in group.slots) or people == 2  # people of different sizes


def test_group_shards_carry_each_voice_and_place(tmp_path: Path) -> None:
    write_clip_shards(tmp_path, 6, seconds=1.0, seed=2, people=(1, 2, 3))
    seen = set()
    for shard in sorted((tmp_path / "shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            names = tar.getnames()
            for name in (n for n in names if n.endswith(".json")):
                meta = json.loads(tar.extractfile(name).read())  # type: ignore[union-attr]
                key = name[: -len(".json")]
                n = len(meta.get("speakers") or []) or 1
                seen.add(n)
                assert meta["width"] == 64 * n and meta["height"] == 64
                assert all(f"{key}.{k}.wav" in names for k in range(n if n > 1 else 0)) and f"{key}.{n}.wav" not in names
    assert seen == {1, 2, 3}


def _config(data: Path, out: Path) -> TrainConfig:
    return TrainConfig(
        preset="tiny", trainable="all",
        data=DataConfig(path=str(data), num_frames=9, fps=16, buckets=[(64, 64), (64, 128), (64, 192)]),
        conditioning=ConditioningConfig(max_prefix_latents=1, mouth_weight=2.0, drop_text=0.0, drop_audio=0.0, drop_both=0.0),
        optim=OptimConfig(lr=2e-3, warmup_steps=1, batch_size=1), max_steps=2, checkpoint_every=10, output=str(out),
    )


def test_the_trainer_binds_each_voice_to_its_person(tmp_path: Path) -> None:
    torch.manual_seed(0)
    write_clip_shards(tmp_path / "data", 4, seconds=1.0, seed=5, people=(2, 3))
    trainer = Trainer(_config(tmp_path / "data", tmp_path / "run"))
    seen: list[tuple[int, ...] | None] = []
    forward = trainer.model.forward

    def recording(*args: object, **kwargs: object) -> object:
        masks = kwargs.get("audio_masks")
        seen.append(None if masks is None else tuple(masks.shape))  # type: ignore[union-attr]
        return forward(*args, **kwargs)

    trainer.model.forward = recording  # type: ignore[method-assign]
    samples = trainer.load_samples([0, 1, 2])
    with torch.no_grad():
        losses = trainer.sample_losses(samples, [0, 1, 2])
    assert torch.isfinite(losses).all()
    for sample, shape in zip(samples, seen):
        n, (_, height, width, _) = len(sample.speakers), sample.frames.shape
        assert n in (2, 3) and shape == (1, n, height // 16, width // 16), (n, shape)
        assert not torch.equal(trainer._speaker_masks(sample, height // 16, width // 16)[0, 0], trainer._speaker_masks(sample, height // 16, width // 16)[0, 1])
    # Who hears which voice reaches the loss: the same window with the voices handed to the
    # wrong people gives another loss (same noise, same timestep: the per-index generator). The
    # audio layers start as a no-op (zero output projections), so wake them first.
    with torch.no_grad():
        for param in trainer.transformer.audio_layers.parameters():
            param.add_(0.05 * torch.randn_like(param))
        losses = trainer.sample_losses(samples[:1], [0])
    swapped = samples[0]
    swapped.speakers = [type(s)(other.audio, s.box, s.mouth_box) for s, other in zip(swapped.speakers, swapped.speakers[::-1])]
    with torch.no_grad():
        again = trainer.sample_losses([swapped], [0])
    assert not torch.isclose(again[0], losses[0], rtol=1e-5), (again, losses)
    assert np.isfinite(trainer.train_step()["loss"])
