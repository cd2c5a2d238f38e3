import math

import pytest
import torch
from torch import nn

from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.diffusion.schedules import CosineSchedule, LinearSchedule, NoiseSchedule
from ddpm.errors import ConfigError
from ddpm.models.unet import UNet
from ddpm.sampling.guidance import Guided, guidance_scale
from ddpm.sampling.samplers import DDIMSampler, DDPMSampler, DPMSolverSampler, HeunSampler, SDEDPMSolverSampler


class PointMass(nn.Module):
    """The exact eps-predictor for data that is always `target`: eps = (x_t - sqrt(ab) target) / sqrt(1 - ab)."""

    null_label = 10

    def __init__(self, diffusion, target):
        super().__init__()
        self.d, self.target = diffusion, target

    def forward(self, x, t, labels=None):
        a = self.d.sqrt_alphas_cumprod[t].view(-1, 1, 1, 1)
        s = self.d.sqrt_one_minus_alphas_cumprod[t].view(-1, 1, 1, 1)
        return (x - a * self.target) / s


@pytest.fixture
def tiny_net():
    net = UNet(channels=8, channel_mults=(1, 2, 2), attention=True, num_classes=10).eval()
    for p in net.parameters():  # leave the zero-initialised identity so the output depends on the input
        nn.init.normal_(p, std=0.05)
    return net


@pytest.mark.parametrize("sampler", [DDPMSampler(), DDIMSampler(7, eta=0.5), SDEDPMSolverSampler(7)], ids=repr)
def test_same_seed_same_images(tiny_net, sampler):
    d = GaussianDiffusion(CosineSchedule(15))
    labels = torch.arange(4)
    noise = torch.randn(4, 1, 28, 28)

    def run(seed):
        return sampler.sample(tiny_net, d, noise, labels, 2.0, generator=torch.Generator().manual_seed(seed)).images

    first, again, other = run(0), run(0), run(1)
    assert first.shape == (4, 1, 28, 28) and first.abs().max() <= 1
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_trajectory_frames(tiny_net):
    d = GaussianDiffusion(CosineSchedule(12))
    result = DDIMSampler(12).sample(tiny_net, d, torch.randn(2, 1, 28, 28), trajectory_frames=5)
    assert [t for t, _ in result.trajectory] == [12, 10, 6, 3, 0]
    assert all(x.shape == (2, 1, 28, 28) for _, x in result.trajectory)
    torch.testing.assert_close(result.trajectory[-1][1].clamp(-1, 1), result.images)


def test_ddim_timesteps():
    assert DDIMSampler(10).timesteps(CosineSchedule(10)) == list(range(9, -1, -1))
    assert DDIMSampler(1).timesteps(LinearSchedule(1000)) == [999]
    steps = DDIMSampler(50).timesteps(CosineSchedule(1000))
    assert steps[0] == 999 and steps[-1] == 0 and len(set(steps)) == 50 and steps == sorted(steps, reverse=True)
    with pytest.raises(ConfigError, match="steps=11 exceeds"):
        DDIMSampler(11).timesteps(CosineSchedule(10))
    with pytest.raises(ConfigError, match="steps=0"):
        DDIMSampler(0)
    assert DDPMSampler().timesteps(CosineSchedule(5)) == [4, 3, 2, 1, 0]
    assert DDPMSampler(steps=3).timesteps(LinearSchedule(100)) == [99, 50, 0]


class Recorder(nn.Module):
    null_label = 10

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t, labels=None):
        self.calls.append((x.shape[0], None if labels is None else labels.clone()))
        return x * 0 + (labels.float().view(-1, 1, 1, 1) if labels is not None else 0)


def test_guidance_uses_one_batched_pass_with_null_labels():
    model = Recorder()
    labels = torch.tensor([3, 7])
    out = Guided(model, labels, guidance=2.0)(torch.zeros(2, 1, 2, 2), 5)
    assert len(model.calls) == 1 and model.calls[0][0] == 4
    assert model.calls[0][1].tolist() == [3, 7, 10, 10]
    # cond + w (cond - uncond) = y + 2 (y - 10)
    assert out[:, 0, 0, 0].tolist() == [3 + 2 * (3 - 10), 7 + 2 * (7 - 10)]
    model.calls.clear()
    Guided(model, labels, guidance=0.0)(torch.zeros(2, 1, 2, 2), 5)
    assert len(model.calls) == 1 and model.calls[0][0] == 2


def test_negative_guidance_is_refused(tiny_net):
    d = GaussianDiffusion(CosineSchedule(10))
    with pytest.raises(ConfigError, match="guidance=-1"):
        DDIMSampler(5).sample(tiny_net, d, torch.randn(1, 1, 28, 28), torch.tensor([1]), guidance=-1)


# Data x0 ~ N(MU, S^2) per pixel: the exact denoiser is known in closed form, and every sampler below is then an
# affine map of Gaussian noise, whose output mean and variance follow from the papers' formulas step by step.
MU, S = 0.3, 0.5


def gaussian_denoiser(schedule):
    """E[eps | x_t] for Gaussian data: (x_t - sqrt(ab) MU) sqrt(1 - ab) / (ab S^2 + 1 - ab)."""
    ab = schedule.alphas_cumprod

    def model(x, t, labels=None):
        a = ab[t].view(-1, 1, 1, 1)
        return (x - a.sqrt() * MU) * (1 - a).sqrt() / (a * S**2 + 1 - a)

    return model


def expected_moments(schedule, timesteps, eta: float, beta_variance: bool = False) -> tuple[float, float]:
    """Mean and std of the samples, written from the papers rather than from ddpm.sampling.samplers: each step is
    x' = sqrt(ab') x0 + sqrt(1 - ab' - sigma^2) eps + noise (Song et al. 2021, eq. 12), with x0 and eps the posterior
    means above and sigma^2 = eta^2 (1 - ab') / (1 - ab) (1 - ab / ab'); eta = 1 is DDPM's posterior (Ho et al. 2020,
    eq. 7, respaced as in Nichol & Dhariwal 2021). The added noise has variance sigma^2, or beta = 1 - ab / ab' for
    DDPM's other choice. The last step, to ab' = 1, returns x0."""
    ab = schedule.alphas_cumprod.tolist()
    mean, var = 0.0, 1.0
    for t, t_prev in zip(timesteps, timesteps[1:] + [-1]):
        a, a_prev = ab[t], ab[t_prev] if t_prev >= 0 else 1.0
        k = math.sqrt(a) * S**2 / (a * S**2 + 1 - a)  # E[x0 | x] = MU + k (x - sqrt(a) MU)
        sigma2 = eta**2 * (1 - a_prev) / (1 - a) * (1 - a / a_prev)
        direction = math.sqrt(1 - a_prev - sigma2)
        # E[eps | x] = (x - sqrt(a) E[x0 | x]) / sqrt(1 - a); both are affine in x: x' = A x + B + noise.
        A = math.sqrt(a_prev) * k + direction * (1 - math.sqrt(a) * k) / math.sqrt(1 - a)
        B = (math.sqrt(a_prev) - direction * math.sqrt(a) / math.sqrt(1 - a)) * MU * (1 - math.sqrt(a) * k)
        noise = (1 - a / a_prev if beta_variance else sigma2) if t_prev >= 0 else 0.0
        mean, var = A * mean + B, A**2 * var + noise
    return mean, math.sqrt(var)


def test_expected_moments_reach_the_data_with_many_steps():
    """The reference itself: over all 1000 steps both DDPM variances land on the data distribution."""
    schedule = LinearSchedule(1000)
    for eta, beta in ((1.0, False), (1.0, True), (0.0, False)):
        mean, std = expected_moments(schedule, list(range(999, -1, -1)), eta, beta)
        assert mean == pytest.approx(MU, abs=1e-3) and std == pytest.approx(S, rel=1e-2)


@pytest.mark.parametrize(
    "sampler, schedule, eta, beta",
    [
        (DDPMSampler(), LinearSchedule(100), 1.0, False),
        (DDPMSampler(variance="beta"), LinearSchedule(100), 1.0, True),
        (DDPMSampler(steps=20), CosineSchedule(1000), 1.0, False),
        (DDPMSampler(steps=20, variance="beta"), CosineSchedule(1000), 1.0, True),
        (DDIMSampler(20, eta=0.5), CosineSchedule(1000), 0.5, False),
        (DDIMSampler(10, eta=1.0), LinearSchedule(1000), 1.0, False),
    ],
    ids=lambda v: repr(v) if not isinstance(v, (float, bool)) else str(v),
)
def test_samplers_give_the_mean_and_std_of_gaussian_data(sampler, schedule, eta, beta):
    """The point-mass test cannot see the reverse variances (the data has none); Gaussian data can."""
    d = GaussianDiffusion(schedule).double()
    noise = torch.randn(1024, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    images = sampler.sample(gaussian_denoiser(schedule), d, noise, clip_x0=False,
                            generator=torch.Generator().manual_seed(1)).images
    mean, std = expected_moments(schedule, sampler.timesteps(schedule), eta, beta)
    # 65536 samples: the standard errors are about std / 256 for the mean and std / 362 for the std.
    assert images.mean().item() == pytest.approx(mean, abs=4 * std / 256)
    assert images.std().item() == pytest.approx(std, rel=4 / 362)


class LogSNRLinear(NoiseSchedule):
    """log(alpha_bar / (1 - alpha_bar)) falls linearly from 4 to -6: evenly spaced timesteps are then evenly spaced
    in lambda, DPM-Solver's variable, so every step has the same size h and the error follows h^order."""

    def _betas(self):
        alphas_cumprod = torch.sigmoid(torch.linspace(4.0, -6.0, self.timesteps, dtype=torch.float64))
        return 1 - alphas_cumprod / torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])


def probability_flow_endpoint(schedule, noise: torch.Tensor) -> torch.Tensor:
    """The exact answer of every deterministic sampler for Gaussian data: the probability-flow ODE maps
    N(sqrt(ab) MU, v(ab)), v(ab) = ab S^2 + 1 - ab, to N(sqrt(ab') MU, v(ab')) affinely, from t = T-1 to t = 0; the
    last step returns E[x0 | x_0]."""
    ab = schedule.alphas_cumprod
    first, last = ab[-1].item(), ab[0].item()
    v = lambda a: a * S**2 + 1 - a  # noqa: E731
    at_zero = math.sqrt(last) * MU + math.sqrt(v(last) / v(first)) * (noise - math.sqrt(first) * MU)
    return MU + math.sqrt(last) * S**2 / v(last) * (at_zero - math.sqrt(last) * MU)


def ode_errors(make_sampler) -> list[float]:
    """The largest error against the closed-form probability-flow map at 11, 21 and 41 steps: the step size in
    lambda halves each time (960 = 10 * 96, so every count lands on whole timesteps)."""
    schedule = LogSNRLinear(961)
    d = GaussianDiffusion(schedule).double()
    noise = torch.randn(64, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact, model = probability_flow_endpoint(schedule, noise), gaussian_denoiser(schedule)
    return [(make_sampler(n).sample(model, d, noise, clip_x0=False).images - exact).abs().max().item()
            for n in (11, 21, 41)]


def test_dpm_solver_is_second_order():
    """Doubling the steps divides DPM-Solver++(2M)'s error by at least 4 (second order), DDIM's by about 2 (first
    order)."""
    dpm, ddim = ode_errors(DPMSolverSampler), ode_errors(DDIMSampler)
    assert dpm[1] < dpm[0] / 4 and dpm[2] < dpm[1] / 4
    assert 1.7 < ddim[0] / ddim[1] < 2.3 and 1.7 < ddim[1] / ddim[2] < 2.3
    assert dpm[1] < ddim[1] / 10


def test_heun_is_second_order():
    """Heun's error falls about 4x when the steps double (measured 4.24 and 4.12 at its rho-spaced steps, which
    halve too, up to the rounding to whole timesteps), DDIM's, its Euler predictor alone, about 2x: the trapezoidal
    correction is what raises the order. A correction with a wrong weight or at the wrong point leaves the method
    first order (ratio ~2)."""
    heun, ddim = ode_errors(HeunSampler), ode_errors(DDIMSampler)
    assert 3.6 < heun[0] / heun[1] < 4.6 and 3.6 < heun[1] / heun[2] < 4.6
    assert 1.7 < ddim[0] / ddim[1] < 2.3 and 1.7 < ddim[1] / ddim[2] < 2.3
    assert heun[1] < ddim[1] / 5


def noise_levels(schedule) -> torch.Tensor:
    """sigma = sqrt((1 - alpha_bar) / alpha_bar) of every timestep (Karras et al. 2022, Table 1, VP)."""
    ab = schedule.alphas_cumprod
    return ((1 - ab) / ab).sqrt()


@pytest.mark.parametrize("steps", [2, 18, 25, 100])
@pytest.mark.parametrize("schedule", [LinearSchedule(1000), CosineSchedule(1000)], ids=["linear", "cosine"])
def test_heun_steps_at_the_rho_spaced_noise_levels(schedule, steps):
    """Karras et al. 2022, eq. 5 (rho = 7), written here from the paper: N levels from sigma_max = sigma(T-1) down to
    sigma_min = sigma(0), evenly spaced in sigma^(1/7). Heun visits, for each, the timestep whose sigma is nearest in
    log sigma; where levels crowd closer than the schedule's timesteps, the next free one instead, so the count stays
    N: below the step before next to sigma_max on the cosine schedule (its last timestep jumps from sigma 640 to
    20,000), above the steps still to come next to sigma_min at 100 steps."""
    sigma = noise_levels(schedule)
    timesteps = HeunSampler(steps).timesteps(schedule)
    visited = sigma[timesteps]
    assert len(timesteps) == steps and timesteps[0] == 999 and timesteps[-1] == 0
    assert bool((visited[1:] < visited[:-1]).all())
    ramp = torch.arange(steps, dtype=torch.float64) / (steps - 1)
    levels = (sigma[-1] ** (1 / 7) + ramp * (sigma[0] ** (1 / 7) - sigma[-1] ** (1 / 7))) ** 7
    nearest = (sigma.log()[None, :] - levels.log()[:, None]).abs().argmin(1).tolist()
    crowded = [k for k in range(1, steps) if timesteps[k] != nearest[k]]
    for k in crowded:
        below_the_step_before = nearest[k] >= timesteps[k - 1] and timesteps[k] == timesteps[k - 1] - 1
        above_the_steps_to_come = nearest[k] < timesteps[k] == steps - 1 - k
        assert below_the_step_before or above_the_steps_to_come
    if steps <= 25 and isinstance(schedule, LinearSchedule):
        assert crowded == []  # sigma from 157 to 0.01: the levels lie farther apart than the timesteps
    elif steps <= 25:  # the crowded levels are those above sigma 60 (18 steps: 10 of them)
        assert crowded == list(range(1, len(crowded) + 1)) and sigma[timesteps[len(crowded) + 1]] < 60


def heun_std(schedule, timesteps) -> float:
    """The std of Heun's samples of Gaussian data N(MU, S^2) with its exact denoiser, from Algorithm 1 step by step:
    the ODE dx^/dsigma = (x^ - D) / sigma with D = MU + S^2 / (S^2 + sigma^2) (x^ - MU) is linear in y = x^ - MU,
    dy/dsigma = g(sigma) y with g = sigma / (S^2 + sigma^2), so the Euler step (line 5) multiplies y by
    1 + h g(sigma_i), h = sigma_{i+1} - sigma_i, and the trapezoid (line 8) by 1 + h (g(sigma_i) + g(sigma_{i+1})
    (1 + h g(sigma_i))) / 2; the last step returns D, S^2 / (S^2 + sigma_min^2) y. x^ starts as the noise over
    sqrt(alpha_bar), std sqrt(1 + sigma_max^2)."""
    sigma = noise_levels(schedule)[timesteps].tolist()
    g = lambda s: s / (S**2 + s**2)  # noqa: E731
    std = math.sqrt(1 + sigma[0] ** 2)
    for a, b in zip(sigma, sigma[1:]):
        h = b - a
        std *= 1 + h * (g(a) + g(b) * (1 + h * g(a))) / 2
    return std * S**2 / (S**2 + sigma[-1] ** 2)


@pytest.mark.parametrize("schedule, steps, error", [(CosineSchedule(1000), 18, 0.45), (CosineSchedule(1000), 50, 0.05),
                                                   (LinearSchedule(1000), 18, 0.07)], ids=["cosine18", "cosine50",
                                                                                           "linear18"])
def test_heun_samples_gaussian_data_at_few_steps_on_every_schedule(schedule, steps, error):
    """The samples' std follows Algorithm 1 over the visited sigmas (heun_std), and at 18 rho-spaced steps the cosine
    schedule's is within 45% of the data's (+41% measured, +4.4% at 50 steps; linear: +6.6%). Over evenly spaced
    timesteps the cosine schedule's first step, from sigma 20,000 to 11, alone tripled it: +202% at 18 steps."""
    d = GaussianDiffusion(schedule).double()
    sampler = HeunSampler(steps)
    noise = torch.randn(1024, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    images = sampler.sample(gaussian_denoiser(schedule), d, noise, clip_x0=False).images
    expected = heun_std(schedule, sampler.timesteps(schedule))
    # 65536 samples: the standard errors are about std / 256 for the mean and std / 362 for the std.
    assert images.std().item() == pytest.approx(expected, rel=4 / 362)
    assert images.mean().item() == pytest.approx(MU, abs=4 * expected / 256)
    assert abs(expected / S - 1) < error
    if steps == 18 and isinstance(schedule, CosineSchedule):
        assert heun_std(schedule, DDIMSampler(steps).timesteps(schedule)) / S - 1 > 1.9


def test_unconditional_sampling_has_no_guidance():
    assert guidance_scale(2.0, conditional=True) == 2.0
    assert guidance_scale(2.0, conditional=False) == 0.0
    model = Recorder()
    Guided(model, None, guidance=2.0)(torch.zeros(2, 1, 2, 2), 5)  # no labels: one unguided pass
    assert len(model.calls) == 1 and model.calls[0] == (2, None)


def test_every_seed_and_batch_draws_from_its_own_stream():
    """The old scheme seeded batch k of seed s like seed s + 1 + k, so runs of neighbouring seeds shared noise;
    SeedSequence children never coincide, and each stream is reproducible."""
    from ddpm.sampling.generate import fixed_noise, stream

    draws = {(seed, child): torch.randn(256, generator=stream(seed, child)) for seed in range(4) for child in range(4)}
    values = list(draws.values())
    for i in range(len(values)):
        for j in range(i + 1, len(values)):
            assert abs(torch.corrcoef(torch.stack([values[i], values[j]]))[0, 1]) < 0.3
    assert torch.equal(torch.randn(256, generator=stream(1, 2)), draws[(1, 2)])
    assert torch.equal(fixed_noise(4, 7), fixed_noise(4, 7)) and not torch.equal(fixed_noise(4, 7), fixed_noise(4, 8))
