from types import SimpleNamespace

import pytest
import torch
from torch import nn

from ddpm.diffusion import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.generate import sampling_guidance
from ddpm.samplers import DDIMSampler, DDPMSampler, DPMSolverSampler, guided_output
from ddpm.schedules import CosineSchedule, LinearSchedule
from ddpm.unet import UNet


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


@pytest.mark.parametrize(
    "sampler",
    [DDPMSampler(), DDPMSampler(variance="beta"), DDPMSampler(steps=6), DDIMSampler(10), DDIMSampler(20, eta=1.0), DPMSolverSampler(8)],
    ids=repr,
)
@pytest.mark.parametrize("schedule", [LinearSchedule(25), CosineSchedule(25)], ids=["linear", "cosine"])
def test_samplers_recover_a_point_mass(sampler, schedule):
    d = GaussianDiffusion(schedule)
    target = torch.rand(1, 1, 28, 28) * 1.6 - 0.8
    result = sampler.sample(PointMass(d, target), d, torch.randn(3, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(result.images, target.expand(3, -1, -1, -1), rtol=0, atol=1e-3)


@pytest.mark.parametrize("steps", [30, 7])
def test_ddim_with_eta_1_is_ddpm(steps):
    """Over all steps and over a respaced subset alike: DDIM's sigma at eta = 1 is the posterior's variance."""
    d = GaussianDiffusion(LinearSchedule(30))
    model = lambda x, t, labels: 0.3 * x + 0.01 * t.view(-1, 1, 1, 1)  # noqa: E731
    noise = torch.randn(2, 1, 28, 28)
    ddpm = DDPMSampler(steps).sample(model, d, noise, clip_x0=False, generator=torch.Generator().manual_seed(5))
    ddim = DDIMSampler(steps, eta=1.0).sample(model, d, noise, clip_x0=False, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(ddim.images, ddpm.images, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("sampler", [DDPMSampler(), DDIMSampler(7, eta=0.5)], ids=repr)
def test_same_seed_same_images(tiny_net, sampler):
    d = GaussianDiffusion(CosineSchedule(15))
    labels = torch.arange(4)
    noise = torch.randn(4, 1, 28, 28)
    run = lambda seed: sampler.sample(tiny_net, d, noise, labels, 2.0, generator=torch.Generator().manual_seed(seed)).images  # noqa: E731
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
    assert DDIMSampler(10).timesteps(10) == list(range(9, -1, -1))
    assert DDIMSampler(1).timesteps(1000) == [999]
    steps = DDIMSampler(50).timesteps(1000)
    assert steps[0] == 999 and steps[-1] == 0 and len(set(steps)) == 50 and steps == sorted(steps, reverse=True)
    with pytest.raises(ConfigError, match="steps=11 exceeds"):
        DDIMSampler(11).timesteps(10)
    with pytest.raises(ConfigError, match="steps=0"):
        DDIMSampler(0)
    assert DDPMSampler().timesteps(5) == [4, 3, 2, 1, 0]
    assert DDPMSampler(steps=3).timesteps(100) == [99, 50, 0]


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
    out = guided_output(model, torch.zeros(2, 1, 2, 2), torch.tensor([5, 5]), labels, guidance=2.0)
    assert len(model.calls) == 1 and model.calls[0][0] == 4
    assert model.calls[0][1].tolist() == [3, 7, 10, 10]
    # cond + w (cond - uncond) = y + 2 (y - 10)
    assert out[:, 0, 0, 0].tolist() == [3 + 2 * (3 - 10), 7 + 2 * (7 - 10)]
    model.calls.clear()
    guided_output(model, torch.zeros(2, 1, 2, 2), torch.tensor([5, 5]), labels, guidance=0.0)
    assert len(model.calls) == 1 and model.calls[0][0] == 2


def test_negative_guidance_is_refused(tiny_net):
    d = GaussianDiffusion(CosineSchedule(10))
    with pytest.raises(ConfigError, match="guidance=-1"):
        DDIMSampler(5).sample(tiny_net, d, torch.randn(1, 1, 28, 28), torch.tensor([1]), guidance=-1)


def test_dpm_solver_is_second_order():
    """On a Gaussian data distribution the exact eps-predictor is known in closed form, and the ODE's endpoint
    from a fixed noise is a deterministic map; DPM-Solver++(2M)'s error against a 1000-step solve must shrink
    about 4x when the step count doubles (second order), and beat DDIM (first order) at equal steps."""
    d = GaussianDiffusion(CosineSchedule(1000))
    mean, std = 0.3, 0.5  # data ~ N(mean, std^2) per pixel

    def model(x, t, labels=None):
        ab = d.sqrt_alphas_cumprod[t].view(-1, 1, 1, 1) ** 2
        # E[eps | x_t] for Gaussian data: (x_t - sqrt(ab) mean) sqrt(1 - ab) / (ab std^2 + 1 - ab)
        return (x - ab.sqrt() * mean) * (1 - ab).sqrt() / (ab * std**2 + 1 - ab)

    noise = torch.randn(64, 1, 4, 4, dtype=torch.float64)
    d = d.double()
    reference = DDIMSampler(1000).sample(model, d, noise, clip_x0=False).images
    error = lambda sampler: (sampler.sample(model, d, noise, clip_x0=False).images - reference).abs().max().item()  # noqa: E731
    e10, e20 = error(DPMSolverSampler(10)), error(DPMSolverSampler(20))
    assert e20 < e10 / 4
    assert e20 < error(DDIMSampler(20)) / 4
    assert e10 < error(DDIMSampler(10)) / 2


def test_unconditional_sampling_has_no_guidance():
    conditional, unconditional = SimpleNamespace(conditional=True), SimpleNamespace(conditional=False)
    assert sampling_guidance(conditional, 2.0) == 2.0
    assert sampling_guidance(conditional, 2.0, unconditional=True) == 0.0
    assert sampling_guidance(unconditional, 2.0) == 0.0
