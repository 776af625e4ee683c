"""CFG and step distillation on the trainer's path, and the few-step sampler at pipeline level."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from soul.miniature.clips import write_clip_shards
from soul.sampling.guidance import Conditions, Guidance
from soul.sampling.loop import denoise_chunk
from soul.sampling.schedules import distilled_sigmas, flow_sigmas
from soul.training.distill import CFGDistiller, DistillCFGConfig, DistillStepsConfig, StepDistiller, load_distill_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def drawn_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("drawn")
    write_clip_shards(out, num_clips=4, seconds=2.0, fps=16, size=64, seed=1, clips_per_shard=4)
    return out


def _base(data: Path, out: Path) -> dict[str, object]:
    return {
        "preset": "tiny",
        "data": {"path": str(data), "num_frames": 17, "fps": 16, "buckets": [[64, 64]]},
        "conditioning": {"max_prefix_latents": 1},
        "optim": {"lr": 1e-3, "batch_size": 2},
        "max_steps": 25,
        "checkpoint_every": 100,
        "output": str(out),
    }


def _fixed_loss(trainer: CFGDistiller | StepDistiller) -> float:
    """The distillation loss on fixed samples (deterministic per index): comparable across steps."""
    idx = list(range(10_000, 10_006))
    with torch.no_grad():
        return float(trainer.sample_losses(trainer.load_samples(idx), idx).mean())


def test_shipped_distill_configs_parse() -> None:
    assert isinstance(load_distill_config(ROOT / "configs/distill/tiny-cfg.yaml", "cfg"), DistillCFGConfig)
    steps = load_distill_config(ROOT / "configs/distill/tiny-steps.yaml", "steps")
    assert isinstance(steps, DistillStepsConfig) and steps.timesteps == [1000, 750, 500, 250]
    with pytest.raises(ValueError):
        DistillStepsConfig(data={"path": "x"}, timesteps=[500, 750])


def test_cfg_distillation_matches_the_teacher_guided_velocity_better(drawn_data: Path, tmp_path: Path) -> None:
    trainer = CFGDistiller(DistillCFGConfig(**_base(drawn_data, tmp_path / "cfg")))
    assert trainer.guidance.num_passes() == 3  # tiny: text 5, audio 4
    before = _fixed_loss(trainer)
    trainer.train()
    after = _fixed_loss(trainer)
    assert after < 0.6 * before
    # the teacher stayed the starting model; the export is the student
    assert not torch.equal(trainer.teacher.proj_out.weight, trainer.transformer.proj_out.weight)
    assert (tmp_path / "cfg" / "export" / "transformer").is_dir()


def test_step_distillation_loss_decreases(drawn_data: Path, tmp_path: Path) -> None:
    cfg = DistillStepsConfig(**_base(drawn_data, tmp_path / "steps"), teacher_steps=3)
    trainer = StepDistiller(cfg)
    assert trainer.sigmas == [1.0, 0.75, 0.5, 0.25]
    before = _fixed_loss(trainer)
    trainer.train()
    assert _fixed_loss(trainer) < 0.7 * before


class _SmoothX0Field(torch.nn.Module):
    """A stand-in transformer whose x0 prediction is a smooth curve m(t) independent of x, read
    from the per-token timesteps the pipeline builds (frame-0 tokens carry t = 0)."""

    def __init__(self, mu: torch.Tensor, d: torch.Tensor) -> None:
        super().__init__()
        self.config = SimpleNamespace(patch_size=(1, 2, 2))
        self.patch_embedding = torch.nn.Linear(1, 1)
        self.mu, self.d = mu, d

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor, **_: object) -> tuple[torch.Tensor]:
        t = float(timestep.max()) / 1000.0
        m = self.mu + math.sin(3 * t) * self.d
        return ((hidden_states - m) / t,)


def test_x0_renoise_with_many_steps_converges_to_euler_in_denoise_chunk() -> None:
    g = torch.Generator().manual_seed(0)
    mu, d = torch.randn(1, 48, 3, 2, 2, generator=g), torch.randn(1, 48, 3, 2, 2, generator=g)
    model = _SmoothX0Field(mu, d)
    noise = torch.randn(1, 48, 3, 2, 2, generator=g)
    prefix = torch.randn(1, 48, 1, 2, 2, generator=g)
    conds = Conditions(text=torch.zeros(1, 4, 8))
    off = Guidance(enabled=False)

    def run(sampler: str, sigmas: torch.Tensor) -> torch.Tensor:
        return denoise_chunk(model, noise, prefix, conds, sigmas, guidance=off, sampler=sampler, generator=torch.Generator().manual_seed(1))

    euler = run("euler", flow_sigmas(200, 1.0))
    many = run("x0", flow_sigmas(200, 1.0))
    four = run("x0", distilled_sigmas())
    assert torch.equal(euler[:, :, :1], prefix) and torch.equal(many[:, :, :1], prefix)
    assert torch.allclose(many[:, :, 1:], euler[:, :, 1:], atol=0.05)
    assert torch.allclose(euler[:, :, 1:], mu[:, :, 1:], atol=0.05)
    assert (four - euler).abs().max() > 0.2  # 4 re-noised jumps are not the ODE solution


def test_cli_distill_vae_writes_a_loadable_decoder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from soul.cli import main
    from soul.models.light_vae import LightDecoder

    cfg = tmp_path / "vae.yaml"
    cfg.write_text("preset: tiny\nnum_clips: 2\neval_clips: 1\nmax_steps: 3\n", encoding="utf-8")
    main(["distill", "vae", str(cfg), "--output", str(tmp_path / "run"), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == 3 and summary["eval_psnr_vs_full"] is not None
    LightDecoder.from_pretrained(summary["output"])


def _inline_teacher_solution(trainer: StepDistiller, x: torch.Tensor, sigma: float, s: object) -> torch.Tensor:
    """The teacher loop as distill.py wrote it before it called ``denoise_chunk``: the reference."""
    from soul.sampling.guidance import guided_velocity
    from soul.sampling.layout import token_timesteps
    from soul.sampling.loop import as_velocity_model
    from soul.sampling.schedules import EulerSampler

    teacher = as_velocity_model(trainer.teacher)
    patch = tuple(int(v) for v in trainer.transformer.config.patch_size)
    run = EulerSampler(torch.linspace(sigma, 0.0, trainer.teacher_steps + 1, dtype=torch.float64))
    x = x.clone()
    p = s.prefix
    for i in range(run.num_steps):
        t = token_timesteps(run.sigma(i) * 1000, s.shape, patch, p, 1, trainer.device)
        v = guided_velocity(teacher, x, t, s.conds, trainer.teacher_guidance)
        x = run.step(v, i, x)
        x[:, :, :p] = s.x0[:, :, :p]
    return x


@pytest.mark.parametrize("teacher_guidance", [True, False])
def test_teacher_solution_is_the_inference_loop(drawn_data: Path, tmp_path: Path, teacher_guidance: bool) -> None:
    cfg = DistillStepsConfig(**_base(drawn_data, tmp_path / "teacher"), teacher_steps=3, teacher_guidance=teacher_guidance)
    trainer = StepDistiller(cfg)
    with torch.no_grad():  # move the student away from the teacher: running the student by mistake would show
        for p in trainer.transformer.parameters():
            p.add_(0.01)
    prefixes = set()
    for index in range(6):
        s = trainer._prepare(trainer.load_samples([index])[0], index)
        prefixes.add(s.prefix)
        sigma = trainer.sigmas[index % len(trainer.sigmas)]
        x = s.noised(torch.randn(s.x0.shape, generator=torch.Generator().manual_seed(index)), sigma)
        got = trainer.teacher_solution(x, sigma, s)
        want = _inline_teacher_solution(trainer, x, sigma, s)
        assert torch.equal(got, want), float((got - want).abs().max())
        assert torch.equal(got[:, :, : s.prefix], s.x0[:, :, : s.prefix])
        assert (got - x).abs().max() > 1e-3  # the teacher moved the noisy frames
    assert prefixes == {1, 2}  # both prefix lengths the sampler sees were checked
