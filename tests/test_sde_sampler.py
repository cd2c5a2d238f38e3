"""DPM-Solver++(2M) and its SDE variant (Lu et al. 2022): with the exact denoiser of Gaussian data their samples
have the mean and std that the solvers' equations give, which reach the data distribution as the steps grow. (Their
first-order forms are DDIM's steps: tests/test_sampler_contract.py.)"""

import math

import pytest
import torch
from test_samplers import MU, S, gaussian_denoiser

from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.diffusion.schedules import CosineSchedule, LinearSchedule
from ddpm.errors import ConfigError
from ddpm.sampling.samplers import DPMSolverSampler, SDEDPMSolverSampler, evenly_spaced


def samples(sampler, schedule, n=1024, size=8):
    d = GaussianDiffusion(schedule).double()
    noise = torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return sampler.sample(gaussian_denoiser(schedule), d, noise, clip_x0=False,
                          generator=torch.Generator().manual_seed(1)).images


def sde_moments(schedule, timesteps, order=2, sde: bool = True) -> tuple[float, float]:
    """Mean and std of SDE-DPM-Solver++(2M)'s samples (sde=False: DPM-Solver++(2M)'s) for data N(MU, S^2), written
    from the paper's updates rather than from the sampler: with the exact denoiser E[x0 | x_t] = p x_t + q, each
    step is
        x' = (sigma' / sigma) e^-h x + alpha' (1 - e^-2h) D + sigma' sqrt(1 - e^-2h) z   (SDE)
        x' = (sigma' / sigma) x - alpha' (e^-h - 1) D                                    (ODE, eq. 9)
    D = x0_k + (x0_k - x0_{k-1}) / (2 r), r = h_{k-1} / h_k (first order at the first step and into t = 0), so x' is
    affine in (x_k, x_{k-1}) plus fresh noise: the recursion carries both means, variances and their covariance.
    The last step, to the clean data, returns x0_k."""
    ab = schedule.alphas_cumprod.tolist()
    lam = lambda a: 0.5 * math.log(a / (1 - a))  # noqa: E731
    mean, var = 0.0, 1.0  # of x_k
    prev = None  # (mean, var, cov with x_k, p, q, h) of x_{k-1}
    for t, t_prev in zip(timesteps, timesteps[1:] + [-1]):
        a = ab[t]
        p = math.sqrt(a) * S**2 / (a * S**2 + 1 - a)
        q = MU - p * math.sqrt(a) * MU
        if t_prev < 0:
            return p * mean + q, abs(p) * math.sqrt(var)
        a_prev = ab[t_prev]
        h = lam(a_prev) - lam(a)
        decay = 1 - math.exp(-2 * h) if sde else 0.0
        c_x = math.sqrt(1 - a_prev) / math.sqrt(1 - a) * (math.exp(-h) if sde else 1.0)
        c_d = math.sqrt(a_prev) * (decay if sde else 1 - math.exp(-h))
        # x' = A x_k + B x_{k-1} + C + noise
        if order == 2 and prev is not None and t_prev > 0:
            w = 1 / (2 * prev[5] / h)
            A, B, C = c_x + c_d * (1 + w) * p, -c_d * w * prev[3], c_d * ((1 + w) * q - w * prev[4])
            mean_before, var_before, cov = prev[0], prev[1], prev[2]
        else:
            A, B, C, mean_before, var_before, cov = c_x + c_d * p, 0.0, c_d * q, 0.0, 0.0, 0.0
        noise = (1 - a_prev) * decay
        new_mean = A * mean + B * mean_before + C
        new_var = A**2 * var + B**2 * var_before + 2 * A * B * cov + noise
        new_cov = A * var + B * cov  # Cov(x', x_k)
        prev = (mean, var, new_cov, p, q, h)
        mean, var = new_mean, new_var
    raise AssertionError("the timesteps must end at 0")


def test_the_reference_moments_reach_the_data_with_many_steps():
    """The reference itself: the SDE solver converges to the data distribution as the steps grow."""
    schedule = CosineSchedule(1000)
    for order in (1, 2):
        for sde in (True, False):
            mean, std = sde_moments(schedule, evenly_spaced(1000, 1000), order, sde)
            assert mean == pytest.approx(MU, abs=1e-3) and std == pytest.approx(S, rel=1e-2)
    few = sde_moments(schedule, evenly_spaced(1000, 8))
    assert abs(few[1] - S) > 1e-3  # 8 steps are visibly off: the sampler test below can tell its own errors


@pytest.mark.parametrize("sde", [True, False], ids=["sde", "ode"])
@pytest.mark.parametrize("steps", [8, 25])
@pytest.mark.parametrize("schedule", [LinearSchedule(1000), CosineSchedule(1000)], ids=["linear", "cosine"])
def test_dpm_solvers_give_the_mean_and_std_of_gaussian_data(schedule, steps, sde):
    sampler = (SDEDPMSolverSampler if sde else DPMSolverSampler)(steps)
    images = samples(sampler, schedule)
    mean, std = sde_moments(schedule, sampler.timesteps(schedule), sde=sde)
    # 65536 samples: the standard errors are about std / 256 for the mean and std / 362 for the std.
    assert images.mean().item() == pytest.approx(mean, abs=4 * std / 256)
    assert images.std().item() == pytest.approx(std, rel=4 / 362)


def test_second_order_differs_from_first_order_where_it_should():
    """The multistep correction is there: at 8 steps the two orders give different moments, and the sampler follows
    the second-order ones (a first-order step everywhere would fail the test above)."""
    schedule = CosineSchedule(1000)
    timesteps = evenly_spaced(1000, 8)
    first, second = sde_moments(schedule, timesteps, 1), sde_moments(schedule, timesteps, 2)
    assert abs(first[1] - second[1]) > 10 * S / 362


def test_order_is_one_or_two():
    with pytest.raises(ConfigError, match="sampler.order=3 is invalid: use one of 1, 2"):
        SDEDPMSolverSampler(10, order=3)
    assert repr(SDEDPMSolverSampler(10)) == "SDEDPMSolverSampler(steps=10)"
    assert repr(SDEDPMSolverSampler(10, order=1)) == "SDEDPMSolverSampler(steps=10, order=1)"
