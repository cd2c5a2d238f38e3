"""The contract every sampler in conf/sampler/ keeps, run over the yamls found there (a new sampler is tested by
adding its yaml): shapes and dtype, seeds, step counts and the network evaluations they cost, the guidance
interval's edges, the exact denoisers of a point mass and of Gaussian data, and the identities between samplers
where one is a special case of another."""

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from test_samplers import MU, PointMass, S, expected_moments, gaussian_denoiser
from torch import nn

from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.diffusion.schedules import CosineSchedule, LinearSchedule
from ddpm.errors import ConfigError
from ddpm.sampling.generate import generate
from ddpm.sampling.guidance import Guided

CONF = Path(__file__).resolve().parents[1] / "conf" / "sampler"
SAMPLER_NAMES = sorted(path.stem for path in CONF.glob("*.yaml"))
SCHEDULES = {"linear": LinearSchedule, "cosine": CosineSchedule}


def sampler_config(name: str, **overrides):
    """conf/sampler/<name>.yaml's sampler, with `overrides` of its options."""
    return instantiate(OmegaConf.load(CONF / f"{name}.yaml"), **overrides)


class Smooth(nn.Module):
    """A cheap network of (x, t, label) in any dtype, nonlinear in x, whose prediction guidance changes. Records
    (t, batch size) of every forward pass."""

    null_label = 10

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t, labels=None):
        self.calls.append((int(t[0]), x.shape[0]))
        shift = 0.0 if labels is None else 0.1 * (labels.to(x.dtype).view(-1, 1, 1, 1) - 4.5)
        return torch.tanh((0.5 + t.to(x.dtype).view(-1, 1, 1, 1) / 50) * x + shift)


def test_the_contract_sees_every_sampler_yaml():
    # A glob that found nothing would leave every test below with no cases, passing in silence.
    assert {"ddpm", "ddpm_beta", "ddim", "dpmpp", "sde_dpmpp", "heun"} <= set(SAMPLER_NAMES)


@pytest.mark.parametrize("name", SAMPLER_NAMES)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_set_timesteps_keeps_the_yaml_default_and_sets_n_steps(name, schedule):
    default = OmegaConf.load(CONF / f"{name}.yaml").steps  # null: every timestep
    sampler, schedule = sampler_config(name), SCHEDULES[schedule](1000)
    assert sampler.steps == default
    assert len(sampler.set_timesteps(None, schedule)) == (default or 1000) and sampler.steps == default
    for n in (1, 2, 7, 18, 1000):
        timesteps = sampler.set_timesteps(n, schedule)
        assert sampler.steps == n and timesteps == sampler.timesteps(schedule) and len(timesteps) == n
        # the schedule's own timesteps (the network was trained on those), never a respaced process's indices
        assert timesteps[0] == 999 and all(a > b >= 0 for a, b in zip(timesteps, timesteps[1:]))
        assert n == 1 or timesteps[-1] == 0
    with pytest.raises(ConfigError, match="steps=1001 exceeds the schedule's 1000 timesteps: use steps <= 1000"):
        sampler.set_timesteps(1001, schedule)
    with pytest.raises(ConfigError, match="steps=0 is invalid: use an integer from 1 to the schedule's timesteps"):
        sampler.set_timesteps(0, schedule)


@pytest.mark.parametrize("name", SAMPLER_NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_shapes_dtype_range_and_trajectory(name, dtype):
    sampler = sampler_config(name)
    d = GaussianDiffusion(CosineSchedule(30))
    sampler.set_timesteps(6, d.schedule)
    noise = torch.randn(3, 1, 6, 5, dtype=dtype)
    result = sampler.sample(Smooth(), d, noise, torch.tensor([1, 2, 3]), 2.0, trajectory_frames=4,
                            generator=torch.Generator().manual_seed(0))
    assert result.images.shape == noise.shape and result.images.dtype == dtype
    assert result.images.abs().max() <= 1
    times = [t for t, _ in result.trajectory]
    assert times[0] == 30 and times[-1] == 0 and times == sorted(times, reverse=True) and len(times) == 4
    assert all(x.shape == noise.shape and x.dtype == dtype for _, x in result.trajectory)
    torch.testing.assert_close(result.trajectory[-1][1].clamp(-1, 1), result.images, rtol=0, atol=0)
    unclipped = sampler.sample(Smooth(), d, noise, clip_x0=False, generator=torch.Generator().manual_seed(0))
    assert unclipped.images.shape == noise.shape and unclipped.images.dtype == dtype


@pytest.mark.parametrize("name", SAMPLER_NAMES)
def test_the_same_seed_gives_the_same_images_and_another_seed_others(name):
    sampler = sampler_config(name)
    module = SimpleNamespace(net=Smooth(), diffusion=GaussianDiffusion(LinearSchedule(50)), device=torch.device("cpu"))
    sampler.set_timesteps(5, module.diffusion.schedule)

    def images(seed):
        return generate(module, sampler, 5, torch.arange(5), 2.0, seed=seed, batch_size=3).images

    first = images(0)
    assert torch.equal(first, images(0))
    assert not torch.equal(first, images(1))


@pytest.mark.parametrize("name", SAMPLER_NAMES)
@pytest.mark.parametrize("steps", [1, 2, 6])
@pytest.mark.parametrize("guidance", [0.0, 2.0])
def test_the_nfe_reported_is_the_forward_passes_counted(name, steps, guidance):
    """The network is called at the sampler's evaluations of the timesteps set_timesteps chose (each timestep
    visited first, at the schedule's own t), and the NFE per image reported is the passes counted: two per guided
    evaluation, in one batched pass of twice the images."""
    sampler, net = sampler_config(name), Smooth()
    d = GaussianDiffusion(LinearSchedule(50))
    timesteps = sampler.set_timesteps(steps, d.schedule)
    result = sampler.sample(net, d, torch.randn(3, 1, 4, 4), torch.tensor([1, 2, 3]), guidance,
                            generator=torch.Generator().manual_seed(0))
    evaluations = sampler.evaluations(timesteps)
    per_call = 2 if guidance else 1
    assert net.calls == [(t, 3 * per_call) for t in evaluations]
    assert result.nfe == sum(batch for _, batch in net.calls) // 3 == per_call * len(evaluations)
    assert evaluations[0] == timesteps[0] and set(evaluations) == set(timesteps)
    assert Guided(net, torch.tensor([1]), guidance).planned_nfe(evaluations) == result.nfe


def interval_run(sampler, d, guidance, interval=None, net=None):
    noise = torch.randn(4, 1, 5, 5, generator=torch.Generator().manual_seed(7))
    return sampler.sample(net or Smooth(), d, noise, torch.tensor([1, 3, 5, 7]), guidance, guidance_interval=interval,
                          generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", SAMPLER_NAMES)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_the_guidance_interval_guides_exactly_the_evaluations_inside_it_edges_included(name, schedule):
    """[lo, hi] with both ends the log-SNR of an evaluated timestep: those two and the ones between are guided (two
    halves in one pass), the others are one unguided pass, and the NFE counts both kinds."""
    sampler, net = sampler_config(name), Smooth()
    d = GaussianDiffusion(SCHEDULES[schedule](60))
    timesteps = sampler.set_timesteps(8, d.schedule)
    evaluations = sampler.evaluations(timesteps)
    lo, hi = d.log_snr(timesteps[2]), d.log_snr(timesteps[5])  # log-SNR rises as t falls
    result = interval_run(sampler, d, 2.0, (lo, hi), net)
    guided = [timesteps[2] >= t >= timesteps[5] for t in evaluations]
    assert net.calls == [(t, 8 if inside else 4) for t, inside in zip(evaluations, guided)]
    assert 0 < sum(guided) < len(evaluations) and result.nfe == len(evaluations) + sum(guided)
    assert Guided(net, torch.tensor([1]), 2.0, (lo, hi), d.log_snr).planned_nfe(evaluations) == result.nfe
    # Just inside the edges, the edge timesteps fall out.
    narrower = interval_run(sampler, d, 2.0, (math.nextafter(lo, math.inf), math.nextafter(hi, -math.inf)))
    assert narrower.nfe == result.nfe - evaluations.count(timesteps[2]) - evaluations.count(timesteps[5])


@pytest.mark.parametrize("name", SAMPLER_NAMES)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_an_interval_with_no_step_is_unguided_and_one_with_every_step_is_plain_guidance(name, schedule):
    sampler = sampler_config(name)
    d = GaussianDiffusion(SCHEDULES[schedule](40))
    evaluations = len(sampler.evaluations(sampler.set_timesteps(6, d.schedule)))
    unguided, plain = interval_run(sampler, d, 0.0), interval_run(sampler, d, 2.0)
    assert not torch.equal(unguided.images, plain.images)
    none = interval_run(sampler, d, 2.0, (50.0, 60.0))  # above every step's log-SNR
    every = interval_run(sampler, d, 2.0, (-60.0, 60.0))
    assert torch.equal(none.images, unguided.images) and none.nfe == unguided.nfe == evaluations
    assert torch.equal(every.images, plain.images) and every.nfe == plain.nfe == 2 * evaluations
    assert torch.equal(interval_run(sampler, d, 2.0, (-math.inf, math.inf)).images, plain.images)


@pytest.mark.parametrize("name", SAMPLER_NAMES)
@pytest.mark.parametrize("steps", [8, 25])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_the_exact_denoiser_of_a_point_mass_gives_the_point(name, steps, schedule):
    schedule = SCHEDULES[schedule](25)
    sampler = sampler_config(name)
    sampler.set_timesteps(steps, schedule)
    d = GaussianDiffusion(schedule)
    target = torch.rand(1, 1, 28, 28) * 1.6 - 0.8
    result = sampler.sample(PointMass(d, target), d, torch.randn(3, 1, 28, 28),
                            generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(result.images, target.expand(3, -1, -1, -1), rtol=0, atol=1e-3)


# Gaussian data N(MU, S^2) per pixel, with its exact denoiser, sampled over every one of T = 1000 timesteps: each
# sampler then reaches the data's mean and std up to its discretisation error, which at T steps is below 1% of the
# std for every sampler (DDPM's ancestral steps are the slowest, -0.78% under the linear schedule, checked against
# the closed form below), and the sampling error of 65536 values (standard errors S / 256 of the mean, S / 362 of
# the std). A sampler with wrong math (a variance, a coefficient, a missing noise term or sign) is off by O(S).
MOMENT_STEPS = 1000
DISCRETISATION = 0.01  # of the std


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_the_discretisation_allowance_holds_for_the_slowest_sampler(schedule):
    schedule = SCHEDULES[schedule](MOMENT_STEPS)
    every = list(range(MOMENT_STEPS - 1, -1, -1))
    for eta, beta in ((1.0, False), (1.0, True), (0.0, False)):
        mean, std = expected_moments(schedule, every, eta, beta)
        assert abs(mean - MU) < 1e-3 and abs(std / S - 1) < DISCRETISATION


@pytest.mark.parametrize("name", SAMPLER_NAMES)
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_samples_of_gaussian_data_have_its_mean_and_std(name, schedule):
    schedule = SCHEDULES[schedule](MOMENT_STEPS)
    d = GaussianDiffusion(schedule).double()
    sampler = sampler_config(name)
    sampler.set_timesteps(MOMENT_STEPS, schedule)
    noise = torch.randn(1024, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    images = sampler.sample(gaussian_denoiser(schedule), d, noise, clip_x0=False,
                            generator=torch.Generator().manual_seed(1)).images
    assert images.mean().item() == pytest.approx(MU, abs=4 * S / 256 + 1e-3)
    assert images.std().item() == pytest.approx(S, rel=4 / 362 + DISCRETISATION)


def constant_eps(x, t, labels=None):
    """An eps prediction that does not change along a step: Heun's correction has nothing to correct."""
    return torch.linspace(-0.5, 0.5, x[0].numel(), dtype=x.dtype).view_as(x[0]).expand_as(x)


# (sampler and options, the sampler it equals and options, the network, tolerance): one sampler as a special case of
# another, the same noise drawn at the same steps (the second visits the first's timesteps: Heun's are rho-spaced,
# DDIM's evenly spaced), over every timestep and over a respaced subset.
IDENTITIES = {
    # Song et al. 2021: DDIM's sigma at eta = 1 is the DDPM posterior's standard deviation.
    "ddim eta=1 is ddpm": (("ddim", {"eta": 1.0}), ("ddpm", {}), gaussian_denoiser, 1e-10),
    # 1 - e^-2h = (alpha'^2 - alpha^2) / (sigma^2 alpha'^2): SDE-DPM-Solver++1's noise is the posterior's variance.
    "sde_dpmpp order=1 is ddim eta=1": (("sde_dpmpp", {"order": 1}), ("ddim", {"eta": 1.0}), gaussian_denoiser, 1e-10),
    "dpmpp order=1 is ddim eta=0": (("dpmpp", {"order": 1}), ("ddim", {"eta": 0.0}), gaussian_denoiser, 1e-10),
    # Heun's predictor is DDIM's step (Euler in sigma); with eps constant its correction averages two equal slopes.
    "heun is ddim for a constant eps": (("heun", {}), ("ddim", {"eta": 0.0}), lambda schedule: constant_eps, 1e-10),
}


@pytest.mark.parametrize("identity", IDENTITIES)
@pytest.mark.parametrize("steps", [60, 7])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_identities_between_samplers(identity, steps, schedule):
    (name, options), (other, other_options), network, tolerance = IDENTITIES[identity]
    schedule = SCHEDULES[schedule](60)
    d = GaussianDiffusion(schedule).double()
    noise = torch.randn(16, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def images(sampler):
        return sampler.sample(network(schedule), d, noise, clip_x0=False,
                              generator=torch.Generator().manual_seed(1)).images

    first, second = sampler_config(name, **options), sampler_config(other, **other_options)
    timesteps = first.set_timesteps(steps, schedule)
    second.timesteps = lambda _: timesteps
    torch.testing.assert_close(images(first), images(second), rtol=0, atol=tolerance)
