"""The trainer learns, resumes exactly, and splits a batch across processes without changing gradients."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from soul.errors import RuntimeFailure
from soul.miniature.clips import write_clip_shards
from soul.training.config import ConditioningConfig, DataConfig, OptimConfig, TrainConfig, load_train_config
from soul.training.metrics import read_metrics
from soul.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def drawn_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("drawn")
    write_clip_shards(out, num_clips=6, seconds=2.0, fps=16, size=64, seed=1, clips_per_shard=4)
    return out


def _config(data: Path, out: Path, **kw: object) -> TrainConfig:
    base = dict(
        preset="tiny",
        trainable="all",
        data=DataConfig(path=str(data), num_frames=9, fps=16, buckets=[(64, 64)]),
        conditioning=ConditioningConfig(max_prefix_latents=1, mouth_weight=2.0),
        optim=OptimConfig(lr=2e-3, warmup_steps=5, batch_size=1),
        max_steps=20,
        checkpoint_every=10,
        output=str(out),
    )
    base.update(kw)
    return TrainConfig(**base)


def test_shipped_configs_parse() -> None:
    for path in sorted((ROOT / "configs" / "train").glob("*.yaml")):
        cfg = load_train_config(path)
        assert cfg.max_steps > 0, path


def test_loss_decreases_over_200_steps(drawn_data: Path, tmp_path: Path) -> None:
    cfg = _config(drawn_data, tmp_path / "run", max_steps=200, checkpoint_every=200, optim=OptimConfig(lr=2e-3, warmup_steps=10, batch_size=1))
    history = Trainer(cfg).train()
    losses = [h["loss"] for h in history]
    assert len(losses) == 200
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < first, (first, last)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert len(records) == 200 and {"loss", "lr", "grad_norm", "samples_per_s"} <= set(records[0])


def test_resume_gives_the_same_losses(drawn_data: Path, tmp_path: Path) -> None:
    straight = Trainer(_config(drawn_data, tmp_path / "a", max_steps=20)).train()
    first = Trainer(_config(drawn_data, tmp_path / "b", max_steps=20)).train(max_steps=10)
    resumed_trainer = Trainer(_config(drawn_data, tmp_path / "b", max_steps=20), resume=True)
    assert resumed_trainer.step == 10
    second = resumed_trainer.train()
    combined = [h["loss"] for h in first + second]
    expected = [h["loss"] for h in straight]
    assert len(combined) == 20
    assert max(abs(a - b) for a, b in zip(combined, expected)) <= 1e-6
    steps = [r["step"] for r in read_metrics(tmp_path / "b" / "metrics.jsonl")]
    assert steps == list(range(1, 21))


def test_nonfinite_losses_are_skipped_then_abort(drawn_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = Trainer(_config(drawn_data, tmp_path / "nan", max_nonfinite=2, trainable="audio"))
    before = {n: p.detach().clone() for n, p in trainer.transformer.named_parameters() if p.requires_grad}
    monkeypatch.setattr(trainer, "sample_losses", lambda s, i: torch.tensor([float("nan")], requires_grad=True))
    record = trainer.train_step()
    assert record["nonfinite_steps"] == 1 and record["loss"] != record["loss"]
    after = {n: p.detach() for n, p in trainer.transformer.named_parameters() if p.requires_grad}
    assert all(torch.equal(before[n], after[n]) for n in before)
    trainer.train_step()
    with pytest.raises(RuntimeFailure, match="non-finite"):
        trainer.train_step()


def test_audio_stage_trains_only_soul_layers(drawn_data: Path, tmp_path: Path) -> None:
    trainer = Trainer(_config(drawn_data, tmp_path / "audio", trainable="audio"))
    names = [n for n, p in trainer.transformer.named_parameters() if p.requires_grad]
    assert names and all(n.startswith(("audio_projector.", "audio_layers.")) for n in names)


def test_ddp_gradients_equal_single_process(drawn_data: Path, tmp_path: Path) -> None:
    script = ROOT / "tests" / "helpers" / "dist_grads.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    single = tmp_path / "single.safetensors"
    subprocess.run([sys.executable, str(script), str(drawn_data), str(single), "2"], check=True, env=env, timeout=300)
    multi = tmp_path / "multi.safetensors"
    # --standalone: the rendezvous store binds a port the kernel picks. A port probed here and
    # handed over is only known to have been free when probed; in one full-suite run with it a rank
    # went missing and the other waited until the timeout (the cause was not seen; the port race is
    # the one this removes).
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    run = subprocess.Popen([*torchrun, str(script), str(drawn_data), str(multi), "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = run.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        run.send_signal(signal.SIGTERM)  # torchrun stops its ranks on SIGTERM (they run in sessions of their own)
        _, stderr = run.communicate(timeout=60)
        pytest.fail(f"torchrun did not finish in 300 s: {stderr[-3000:]}")
    assert run.returncode == 0, stderr[-3000:]
    a, b = load_file(str(single)), load_file(str(multi))
    assert a.keys() == b.keys() and len(a) > 10
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    scale = max(float(a[k].abs().max()) for k in a)
    assert worst <= 1e-5 * max(1.0, scale), worst


def test_lora_stage_trains_adapters_and_audio_layers(drawn_data: Path, tmp_path: Path) -> None:
    trainer = Trainer(_config(drawn_data, tmp_path / "lora", trainable="lora", lora_rank=4, max_steps=2))
    names = [n for n, p in trainer.transformer.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n in names)
    assert all("lora_" in n or n.startswith(("audio_projector.", "audio_layers.")) for n in names)
    history = trainer.train()
    assert len(history) == 2 and all(h["loss"] == h["loss"] for h in history)
    # the export is a plain Soul checkpoint with the adapters fused in: same outputs, no lora keys
    from soul.pipelines.soul_pipeline import SoulPipeline

    exported = SoulPipeline.from_pretrained(tmp_path / "lora" / "export", preset="tiny", torch_dtype=torch.float32).transformer
    assert not any("lora" in k for k in exported.state_dict())
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 48, 3, 4, 4, generator=g)
    text = torch.randn(1, 8, 32, generator=g)
    trainer.transformer.eval()
    with torch.no_grad():
        a = trainer.transformer(hidden_states=x, timestep=torch.tensor([500.0]), encoder_hidden_states=text, return_dict=False)[0]
        b = exported(hidden_states=x, timestep=torch.tensor([500.0]), encoder_hidden_states=text, return_dict=False)[0]
    assert torch.allclose(a, b, atol=1e-5)


def test_feature_cache_changes_nothing_but_speed(drawn_data: Path, tmp_path: Path) -> None:
    plain = Trainer(_config(drawn_data, tmp_path / "plain", max_steps=8)).train()
    cached_trainer = Trainer(_config(drawn_data, tmp_path / "cached", max_steps=8, cache_dir=str(tmp_path / "cache")))
    cached = cached_trainer.train()
    assert [h["loss"] for h in plain] == pytest.approx([h["loss"] for h in cached], abs=1e-6)
    assert cached_trainer.cache.misses > 0 and cached_trainer.cache.hits > 0  # the null prompt and repeated captions hit
    assert any((tmp_path / "cache" / kind).is_dir() for kind in ("text", "audio", "latents"))
    # another VAE (a different seed's random weights) never reads the first one's cache
    other = Trainer(_config(drawn_data, tmp_path / "other", max_steps=1, seed=1, cache_dir=str(tmp_path / "cache")))
    assert other.cache.namespace != cached_trainer.cache.namespace
