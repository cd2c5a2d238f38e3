import pytest
import torch
from torch import nn

from ddpm.diffusion import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.samplers import DDIMSampler, DDPMSampler, guided_output
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


@pytest.mark.parametrize("sampler", [DDPMSampler(), DDPMSampler("beta"), DDIMSampler(10), DDIMSampler(20, eta=1.0)], ids=repr)
@pytest.mark.parametrize("schedule", [LinearSchedule(25), CosineSchedule(25)], ids=["linear", "cosine"])
def test_samplers_recover_a_point_mass(sampler, schedule):
    d = GaussianDiffusion(schedule)
    target = torch.rand(1, 1, 28, 28) * 1.6 - 0.8
    result = sampler.sample(PointMass(d, target), d, torch.randn(3, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(result.images, target.expand(3, -1, -1, -1), rtol=0, atol=1e-3)


def test_ddim_with_eta_1_over_all_steps_is_ddpm():
    d = GaussianDiffusion(LinearSchedule(30))
    model = lambda x, t, labels: 0.3 * x + 0.01 * t.view(-1, 1, 1, 1)  # noqa: E731
    noise = torch.randn(2, 1, 28, 28)
    ddpm = DDPMSampler().sample(model, d, noise, clip_x0=False, generator=torch.Generator().manual_seed(5))
    ddim = DDIMSampler(30, eta=1.0).sample(model, d, noise, clip_x0=False, generator=torch.Generator().manual_seed(5))
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
