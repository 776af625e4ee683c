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
from soul.training.distill import CFGDistiller, DistillCFGConfig, DistillDMDConfig, DistillStepsConfig, DMDDistiller, StepDistiller, load_distill_config

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


# ---------------------------------------------------------------- DMD2 step distillation


def _dmd_config(data: Path, out: Path, **extra: object) -> DistillDMDConfig:
    base = {**_base(data, out), "max_steps": 3, "timesteps": [1000, 500]}
    return DistillDMDConfig(**{**base, **extra})


def _trained(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}


def _changed(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(a[n], b[n]) for n in a)


def test_dmd_configs_parse_and_validate() -> None:
    tiny = load_distill_config(ROOT / "configs/distill/tiny-dmd.yaml", "dmd")
    mini = load_distill_config(ROOT / "configs/distill/mini16-dmd.yaml", "dmd")
    assert isinstance(tiny, DistillDMDConfig) and tiny.timesteps == [1000, 500] and tiny.regression_weight == 0.0
    assert mini.timesteps == [1000, 500] and mini.init_checkpoint == load_distill_config(ROOT / "configs/distill/mini16-steps.yaml", "steps").init_checkpoint
    with pytest.raises(ValueError):
        DistillDMDConfig(data={"path": "x"}, min_sigma=0.5, max_sigma=0.4)


def test_dmd_steps_train_student_and_fake_score_not_teacher(drawn_data: Path, tmp_path: Path) -> None:
    trainer = DMDDistiller(_dmd_config(drawn_data, tmp_path / "dmd"))
    assert trainer.sigmas == [1.0, 0.5]
    student, teacher, fake = _trained(trainer.transformer), {n: p.detach().clone() for n, p in trainer.teacher.named_parameters()}, _trained(trainer.fake)
    history = trainer.train()
    assert len(history) == 3 and all(math.isfinite(h["loss"]) and math.isfinite(h["fake_loss"]) for h in history)
    assert _changed(student, _trained(trainer.transformer))
    assert _changed(fake, _trained(trainer.fake))
    assert all(torch.equal(teacher[n], p) for n, p in trainer.teacher.named_parameters())
    # three different networks now: the fake score did not train the student's tensors or vice versa
    assert not torch.equal(trainer.fake.proj_out.weight, trainer.transformer.proj_out.weight)
    assert (tmp_path / "dmd" / "export" / "transformer").is_dir()


def test_dmd_fake_update_touches_neither_student_grads_nor_weights(drawn_data: Path, tmp_path: Path) -> None:
    trainer = DMDDistiller(_dmd_config(drawn_data, tmp_path / "iso"))
    s = trainer._prepare(trainer.load_samples([0])[0], 0)
    student = _trained(trainer.transformer)
    trainer.fake_update(s.x0.clone(), s)
    assert all(p.grad is None for p in trainer.transformer.parameters())
    assert not _changed(student, _trained(trainer.transformer))
    # and the student's step leaves the fake score's grads alone
    idx = [0]
    trainer.sample_losses(trainer.load_samples(idx), idx).mean().backward()
    assert all(p.grad is None for p in trainer.fake.parameters())
    assert any(p.grad is not None for p in trainer.transformer.parameters())


def test_dmd_resume_restores_the_fake_score_and_continues_exactly(drawn_data: Path, tmp_path: Path) -> None:
    straight = DMDDistiller(_dmd_config(drawn_data, tmp_path / "a", max_steps=4))
    straight_history = straight.train()
    first = DMDDistiller(_dmd_config(drawn_data, tmp_path / "b", max_steps=4))
    first_history = first.train(max_steps=2)
    saved_fake, saved_opt = _trained(first.fake), first.fake_optimizer.state_dict()
    resumed = DMDDistiller(_dmd_config(drawn_data, tmp_path / "b", max_steps=4), resume=True)
    assert resumed.step == 2
    assert not _changed(saved_fake, _trained(resumed.fake))
    assert _changed(saved_fake, _trained(straight.fake.__class__.from_config(straight.fake.config)))  # not just the init
    got_opt = resumed.fake_optimizer.state_dict()
    assert got_opt["param_groups"] == saved_opt["param_groups"] and got_opt["state"].keys() == saved_opt["state"].keys()
    for key, state in saved_opt["state"].items():
        assert all(torch.equal(v, got_opt["state"][key][name]) for name, v in state.items())
    second_history = resumed.train()
    combined = [(h["loss"], h["fake_loss"]) for h in first_history + second_history]
    expected = [(h["loss"], h["fake_loss"]) for h in straight_history]
    assert len(combined) == 4
    assert max(abs(a - b) for pair, want in zip(combined, expected) for a, b in zip(pair, want)) <= 1e-6
    assert max(float((a - b).abs().max()) for a, b in zip(_trained(straight.fake).values(), _trained(resumed.fake).values())) <= 1e-6
    assert max(float((a - b).abs().max()) for a, b in zip(_trained(straight.transformer).values(), _trained(resumed.transformer).values())) <= 1e-6


def test_dmd_resume_rejects_a_checkpoint_without_fake_score(drawn_data: Path, tmp_path: Path) -> None:
    from soul.errors import InputError

    StepDistiller(DistillStepsConfig(**{**_base(drawn_data, tmp_path / "run"), "max_steps": 1}, teacher_steps=1)).train()
    with pytest.raises(InputError, match="fake-score"):
        DMDDistiller(_dmd_config(drawn_data, tmp_path / "run"), resume=True)


def test_dmd_gradient_vanishes_when_fake_equals_real_score(drawn_data: Path, tmp_path: Path) -> None:
    trainer = DMDDistiller(_dmd_config(drawn_data, tmp_path / "zero", teacher_guidance=False))
    trainer.fake.load_state_dict(trainer.teacher.state_dict())

    def grad(index: int) -> torch.Tensor:
        s = trainer._prepare(trainer.load_samples([index])[0], index)
        x0 = s.x0 + 0.3 * torch.randn(s.x0.shape, generator=torch.Generator().manual_seed(index))
        x0[:, :, : s.prefix] = s.x0[:, :, : s.prefix]
        return trainer.dmd_gradient(x0, s)

    assert max(float(grad(i).abs().max()) for i in range(2)) < 1e-5
    with torch.no_grad():  # a fake score that differs from the real one gives a gradient
        for p in trainer.fake.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(7)))
    assert min(float(grad(i).abs().mean()) for i in range(2)) > 1e-3
    # with guidance on, the real score is the guided teacher, no longer the fake's conditional pass
    trainer.fake.load_state_dict(trainer.teacher.state_dict())
    trainer.teacher_guidance = trainer.guidance
    assert float(grad(0).abs().mean()) > 1e-3


def test_cli_distill_dmd_writes_an_export(drawn_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from soul.cli import main

    cfg = tmp_path / "dmd.yaml"
    cfg.write_text((ROOT / "configs/distill/tiny-dmd.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    main(["distill", "dmd", str(cfg), "--max-steps", "2", "--data", str(drawn_data), "--output", str(tmp_path / "run"), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == 2 and summary["export"] == str(tmp_path / "run" / "export")  # --max-steps is the run's target
    assert (tmp_path / "run" / "export" / "transformer").is_dir()
    assert (tmp_path / "run" / "checkpoints" / "step-000000002").is_dir()
    main(["distill", "dmd", str(cfg), "--max-steps", "3", "--resume", "--data", str(drawn_data), "--output", str(tmp_path / "run"), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == 3 and summary["first_loss"] is not None  # one more step after the resume
    # the export is a pipeline directory holding the student (the checkpoint's trained weights)
    from safetensors.torch import load_file

    from soul.pipelines.soul_pipeline import SoulPipeline

    pipe = SoulPipeline.from_pretrained(str(tmp_path / "run" / "export"), preset="tiny", torch_dtype=torch.float32)
    student = load_file(str(tmp_path / "run" / "checkpoints" / "step-000000003" / "trainable.safetensors"))
    exported = pipe.transformer.state_dict()
    assert torch.equal(exported["proj_out.weight"], student["proj_out.weight"])


def test_cli_distill_vae_learns_from_latents_a_pipeline_sampled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`sampled_from`: the CLI samples drawn faces with that pipeline and the distiller reports on held-out sampled latents."""
    from soul.cli import main
    from soul.pipelines.soul_pipeline import SoulPipeline

    SoulPipeline.from_preset("tiny", seed=0).save_pretrained(tmp_path / "pipe")
    cfg = tmp_path / "vae.yaml"
    cfg.write_text(
        "preset: tiny\nnum_clips: 1\neval_clips: 1\nnum_frames: 9\nmax_steps: 2\n"
        f"sampled_from: {tmp_path / 'pipe'}\nsampled_clips: 1\nsampled_eval_clips: 1\nsampled_frames: 9\nlowfreq_weight: 1.0\n",
        encoding="utf-8",
    )
    main(["distill", "vae", str(cfg), "--output", str(tmp_path / "run"), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == 2
    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["eval_sampled_psnr_vs_full"] > 0 and last["eval_sampled_flicker_full"] >= 0
