"""Flow schedules and samplers against closed-form velocity fields.

For a Gaussian target x0 ~ N(mu, s^2) the exact flow-matching velocity is known in closed form, and
the probability-flow ODE maps the starting noise eps to mu + s * eps. That gives exact answers for
every sampler without a trained model.
"""

from __future__ import annotations

import math

import pytest
import torch

from soul.errors import InputError
from soul.sampling.schedules import (
    EulerSampler,
    UniPCSampler,
    X0RenoiseSampler,
    add_noise,
    check_sigmas,
    distilled_sigmas,
    flow_sigmas,
    make_sampler,
    predict_x0,
    resolve_sigmas,
    shift_sigma,
    shift_sigmas,
    to_timestep,
    velocity_target,
)
from soul.sampling.seeds import mix_seed


def gaussian_velocity(mu: torch.Tensor, s: float):
    """Exact E[eps - x0 | x_t] for x0 ~ N(mu, s^2 I), eps ~ N(0, I)."""

    def v(x: torch.Tensor, t: float) -> torch.Tensor:
        var = (1 - t) ** 2 * s**2 + t**2
        centred = x - (1 - t) * mu
        e_eps = t / var * centred
        e_x0 = mu + (1 - t) * s**2 / var * centred
        return e_eps - e_x0

    return v


def run(sampler, x: torch.Tensor, field) -> torch.Tensor:
    for i in range(sampler.num_steps):
        x = sampler.step(field(x, sampler.sigma(i)), i, x)
    return x


def test_shift_formula_and_end_points() -> None:
    sig = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    out = shift_sigmas(sig, 5.0)
    expected = [0.0, 5 * 0.25 / (1 + 4 * 0.25), 5 * 0.5 / (1 + 4 * 0.5), 1.0]
    assert out.tolist() == pytest.approx(expected)
    assert shift_sigmas(sig, 1.0).tolist() == pytest.approx(sig.tolist())
    with pytest.raises(InputError):
        shift_sigmas(sig, 0.0)


def test_flow_sigmas_shape_and_monotone() -> None:
    s = flow_sigmas(10, shift=5.0)
    assert s.shape == (11,)
    assert s[0] == 1.0 and s[-1] == 0.0
    assert torch.all(s[1:] < s[:-1])
    # shift pushes the schedule toward high noise
    assert torch.all(s[1:-1] > flow_sigmas(10, 1.0)[1:-1])
    with pytest.raises(InputError):
        flow_sigmas(0)


def test_check_sigmas_validation() -> None:
    assert check_sigmas([1.0, 0.5]).tolist() == [1.0, 0.5, 0.0]
    assert check_sigmas([1.0, 0.5, 0.0]).tolist() == [1.0, 0.5, 0.0]
    for bad in ([], [0.5, 0.7], [1.2, 0.5], [1.0, 1.0, 0.5], [1.0, -0.1], [float("nan")]):
        with pytest.raises(InputError):
            check_sigmas(bad)
    assert distilled_sigmas().tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert resolve_sigmas(sigmas=[1.0, 0.5], shift=7.0).tolist() == [1.0, 0.5, 0.0]
    with pytest.raises(InputError):
        resolve_sigmas(num_steps=3, sigmas=[1.0, 0.5])
    with pytest.raises(InputError):
        resolve_sigmas()
    with pytest.raises(InputError):
        make_sampler("heun", flow_sigmas(2))


def test_forward_process_round_trip() -> None:
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 3, generator=g)
    eps = torch.randn(2, 3, generator=g)
    t = torch.tensor([0.3, 0.8])
    xt = add_noise(x0, eps, t)
    assert torch.allclose(predict_x0(xt, velocity_target(x0, eps), t), x0, atol=1e-6)


@pytest.mark.parametrize("name", ["euler", "unipc", "x0"])
def test_point_target_is_reached(name: str) -> None:
    g = torch.Generator().manual_seed(1)
    mu = torch.randn(4, 5, generator=g)  # UniPC wants a batch dimension
    x = torch.randn(4, 5, generator=g)
    sampler = make_sampler(name, flow_sigmas(6, shift=3.0), generator=torch.Generator().manual_seed(2))
    out = run(sampler, x, gaussian_velocity(mu, 0.0))
    assert torch.allclose(out, mu, atol=1e-4)


def test_euler_follows_the_ode_of_a_gaussian_target() -> None:
    g = torch.Generator().manual_seed(3)
    mu, s = torch.randn(4, 16, generator=g), 0.5
    eps = torch.randn(4, 16, generator=g)
    exact = mu + s * eps
    err = [
        (run(EulerSampler(flow_sigmas(n, 1.0)), eps.clone(), gaussian_velocity(mu, s)) - exact).abs().max().item()
        for n in (4, 16, 256)
    ]
    assert err[0] > err[1] > err[2]  # first order: the error shrinks with the step size
    assert err[2] < 0.02
    unipc = run(UniPCSampler(flow_sigmas(16, 1.0)), eps.clone(), gaussian_velocity(mu, s))
    assert (unipc - exact).abs().max().item() < err[1]  # higher order beats Euler at equal steps


def test_x0_renoise_converges_to_euler_for_a_smooth_field() -> None:
    # A field whose x0 prediction is a smooth curve m(t), independent of x: both samplers must
    # end at m(0) as steps grow, whatever noise the re-noising sampler draws.
    g = torch.Generator().manual_seed(4)
    mu, d = torch.randn(3, 8, generator=g), torch.randn(3, 8, generator=g)

    def m(t: float) -> torch.Tensor:
        return mu + math.sin(3 * t) * d

    def field(x: torch.Tensor, t: float) -> torch.Tensor:
        return (x - m(t)) / t

    x = torch.randn(3, 8, generator=g)
    euler = run(EulerSampler(flow_sigmas(400, 1.0)), x.clone(), field)
    many = run(X0RenoiseSampler(flow_sigmas(400, 1.0), torch.Generator().manual_seed(5)), x.clone(), field)
    few = run(X0RenoiseSampler(flow_sigmas(2, 3.0), torch.Generator().manual_seed(5)), x.clone(), field)
    assert torch.allclose(many, euler, atol=0.05)
    assert torch.allclose(euler, mu, atol=0.05)
    assert (few - euler).abs().max().item() > 0.3


def test_x0_renoise_is_no_base_model_sampler() -> None:
    # With fresh noise at every level the re-noising sampler under-disperses a Gaussian target
    # (std tends to s/sqrt(2)) while Euler recovers it: it is only for students trained for it.
    mu, s = 1.5, 0.5
    eps = torch.randn(20000, generator=torch.Generator().manual_seed(4))
    field = gaussian_velocity(torch.tensor(mu), s)
    euler = run(EulerSampler(flow_sigmas(256, 1.0)), eps.clone(), field)
    x0 = run(X0RenoiseSampler(flow_sigmas(256, 1.0), torch.Generator().manual_seed(5)), eps.clone(), field)
    assert euler.mean().item() == pytest.approx(mu, abs=0.02)
    assert euler.std().item() == pytest.approx(s, abs=0.02)
    assert x0.mean().item() == pytest.approx(mu, abs=0.02)
    assert x0.std().item() == pytest.approx(s / math.sqrt(2), abs=0.02)


def test_x0_renoise_uses_only_the_given_generator() -> None:
    mu = torch.zeros(8)
    field = gaussian_velocity(mu, 1.0)
    x = torch.ones(8)

    def sample(seed: int) -> torch.Tensor:
        return run(X0RenoiseSampler(distilled_sigmas(), torch.Generator().manual_seed(seed)), x.clone(), field)

    torch.manual_seed(0)
    a = sample(7)
    torch.manual_seed(99)
    b = sample(7)
    assert torch.equal(a, b)
    assert not torch.equal(a, sample(8))


def test_unipc_uses_explicit_sigmas_unshifted() -> None:
    sig = check_sigmas([0.9, 0.6, 0.3])
    sampler = UniPCSampler(sig)
    assert sampler.scheduler.sigmas.tolist() == pytest.approx([0.9, 0.6, 0.3, 0.0])
    assert sampler.timestep(1) == pytest.approx(600.0)
    with pytest.raises(RuntimeError):
        sampler.step(torch.zeros(2), 1, torch.zeros(2))
    assert math.isclose(sampler.sigma(0), 0.9)


def test_scalar_shift_and_timestep_are_the_tensor_maths() -> None:
    levels = [1e-4, 0.1, 0.37, 0.5, 0.999, 1.0]
    for shift in (1.0, 3.0, 5.0, 0.5):
        tensor = shift_sigmas(torch.tensor(levels, dtype=torch.float64), shift).tolist()
        assert [shift_sigma(s, shift) for s in levels] == tensor
        # the closed form the trainer used to write inline, bit for bit
        assert [shift_sigma(s, shift) for s in levels] == [shift * s / (1 + (shift - 1) * s) for s in levels]
    with pytest.raises(InputError):
        shift_sigma(0.5, 0.0)
    assert to_timestep(0.25) == 250.0 and isinstance(to_timestep(0.25), float)
    assert torch.equal(to_timestep(distilled_sigmas()), torch.tensor([1000.0, 750.0, 500.0, 250.0, 0.0], dtype=torch.float64))
    assert make_sampler("euler", flow_sigmas(4, 3.0)).timestep(1) == to_timestep(float(flow_sigmas(4, 3.0)[1]))


def test_one_seed_mixing_scheme_for_chunks_and_training_samples() -> None:
    from soul.sampling.chunks import chunk_seed
    from soul.training.trainer import sample_generator

    # chunk seeds are exactly what they were before mix_seed existed (recorded values): long videos
    # made with a seed keep their noise
    assert [chunk_seed(7, i) for i in range(4)] == [7, 793649811123725967, 2167195393923510900, 7443599362937997628]
    assert chunk_seed(-3, 5) == 4476747994473087314 and chunk_seed(2**40 + 1, 123) == 1020691960203671062
    assert all(chunk_seed(s, i) == mix_seed(s, i) for s in (0, 7, 2**40) for i in range(1, 5))
    # training samples draw from the same scheme: a pure function of (seed, global sample index)
    draw = lambda seed, index: torch.rand(4, generator=sample_generator(seed, index))  # noqa: E731
    assert torch.equal(draw(3, 10), draw(3, 10))
    assert torch.equal(draw(3, 10), torch.rand(4, generator=torch.Generator().manual_seed(mix_seed(3, 10))))
    assert not torch.equal(draw(3, 10), draw(3, 11)) and not torch.equal(draw(3, 10), draw(4, 10))
    assert 0 <= mix_seed(-1, 2**40) < 2**63
