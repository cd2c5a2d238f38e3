"""The variational bound (ddpm/diffusion/likelihood.py) on cases with a known answer, and its Monte-Carlo estimator
against the exact sum over all T terms."""

import math

import pytest
import torch
from torch import nn

from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.diffusion.likelihood import bits_per_dim, discretized_gaussian_log_likelihood, normal_kl
from ddpm.diffusion.schedules import CosineSchedule, LinearSchedule
from ddpm.models.unet import UNet


class Oracle(nn.Module):
    """The exact eps-predictor for data that is always `target` (in float64, whatever the input dtype)."""

    def __init__(self, diffusion, target):
        super().__init__()
        self.d, self.target = diffusion, target.double()

    def forward(self, x, t, labels=None):
        ab = self.d.schedule.alphas_cumprod[t].view(-1, 1, 1, 1)
        return (x.double() - ab.sqrt() * self.target) / (1 - ab).sqrt()


def test_discretized_gaussian_sums_to_one_over_the_256_levels():
    levels = torch.arange(256, dtype=torch.float64) / 127.5 - 1
    for mean, std in ((0.3, 0.05), (-0.99, 0.002), (2.5, 0.4), (0.0, 1e-4)):
        log_p = discretized_gaussian_log_likelihood(levels, torch.tensor(mean, dtype=torch.float64),
                                                    torch.tensor(std, dtype=torch.float64))
        assert torch.logsumexp(log_p, 0).exp().item() == pytest.approx(1.0, abs=1e-9)
    # far in the tail the mass is tiny but still finite and ordered
    far = discretized_gaussian_log_likelihood(torch.tensor([0.0, 0.5]), torch.tensor(-1.0), torch.tensor(0.01))
    assert torch.isfinite(far).all() and far[1] < far[0] < -1000


def test_normal_kl_against_its_formula():
    kl = normal_kl(torch.tensor(1.0), torch.tensor(2.0), torch.tensor(-0.5), torch.tensor(0.5))
    assert kl.item() == pytest.approx(0.5 * (math.log(0.5 / 2.0) + (2.0 + 1.5**2) / 0.5 - 1))


@pytest.mark.parametrize("schedule", [LinearSchedule(40), CosineSchedule(40)], ids=["linear", "cosine"])
def test_bound_of_a_point_mass_with_the_exact_denoiser(schedule):
    """With data that is one image and a network that knows it, every reverse-step KL is 0 (posterior variance),
    so the bound is the prior KL plus the decoder's mass, both in closed form."""
    d = GaussianDiffusion(schedule)
    pixels = torch.randint(0, 256, (1, 1, 28, 28), dtype=torch.uint8)
    pixels[0, 0, 0, :3] = torch.tensor([0, 255, 128], dtype=torch.uint8)  # both edge bins and an inner one
    x = pixels.double() / 127.5 - 1
    ab = schedule.alphas_cumprod
    prior = 0.5 * (ab[-1] * x**2 + (1 - ab[-1]) - 1 - torch.log(1 - ab[-1])).sum()
    sigma = (schedule.betas[1] * (1 - ab[0]) / (1 - ab[1])).sqrt()
    half_bin = torch.special.ndtr(torch.tensor(1 / 255, dtype=torch.float64) / sigma)
    edge = (pixels == 0) | (pixels == 255)
    decoder = -torch.where(edge, half_bin.log(), (2 * half_bin - 1).log()).sum()
    expected = ((prior + decoder) / (784 * math.log(2))).item()

    net = Oracle(d, x)
    exact = bits_per_dim(net, d, pixels.expand(3, -1, -1, -1), exact=True)
    assert exact["bits_per_dim"] == pytest.approx(expected, rel=1e-6)
    # Uniform Monte-Carlo over all T: T * L_t is T * decoder with probability 1/T and 0 otherwise; unbiased.
    mc = bits_per_dim(net, d, pixels.expand(400, -1, -1, -1), draws=4, seed=1, head=0, tail=0)
    assert abs(mc["bits_per_dim"] - expected) < 4 * mc["stderr"] and mc["stderr"] > 0
    # The default computes the ends exactly: here the decoder is all there is, so it is exact.
    assert bits_per_dim(net, d, pixels.expand(3, -1, -1, -1))["bits_per_dim"] == pytest.approx(expected, rel=1e-6)


def test_beta_variance_costs_more_than_the_posterior_on_the_point_mass():
    """With the exact mean, the KL is log(beta/beta~) + beta~/beta - 1 >= 0 per dim: positive for beta."""
    d = GaussianDiffusion(LinearSchedule(30))
    pixels = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    net = Oracle(d, pixels[:1].double() / 127.5 - 1)
    same = pixels[:1].expand(2, -1, -1, -1)
    posterior = bits_per_dim(net, d, same, exact=True)["bits_per_dim"]
    beta = bits_per_dim(net, d, same, exact=True, variance="beta")["bits_per_dim"]
    s = d.schedule
    ab = s.alphas_cumprod
    post_var = s.betas[1:] * (1 - ab[:-1]) / (1 - ab[1:])
    extra = (0.5 * (torch.log(s.betas[1:] / post_var) + post_var / s.betas[1:] - 1)).sum() * 784 / (784 * math.log(2))
    assert beta - posterior == pytest.approx(extra.item(), rel=1e-6)


def test_monte_carlo_agrees_with_the_exact_sum_on_a_network():
    """A small network (linear schedule, T = 50; its output layer starts near zero, so it predicts eps ~ 0 plus a
    little): per image, the mean of 25 one-draw Monte-Carlo estimates and the all-T sum differ by no more than their
    noise, which is small enough that weighting the sampled term by T/2 or 2T instead of T would be far outside it."""
    torch.manual_seed(0)
    net = UNet(channels=8, channel_mults=(1, 2), num_classes=10).eval()
    for p in net.out[-1].parameters():
        nn.init.normal_(p, std=0.01)
    d = GaussianDiffusion(LinearSchedule(50))
    images = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    exact = bits_per_dim(net, d, images, exact=True, seed=0)["per_image"]
    draws = bits_per_dim(net, d, images.repeat(25, 1, 1, 1), seed=1, batch_size=150, head=2, tail=1)["per_image"]
    draws = draws.view(25, 6)
    diff = draws.mean(0) - exact
    noise = (draws.var(0) / 25).sum().sqrt() / 6  # standard error of diff.mean(); the exact sum's noise is far smaller
    assert abs(diff.mean().item()) < 4 * noise.item()
    torch.testing.assert_close(bits_per_dim(net, d, images, exact=True, seed=0)["per_image"], exact)  # seeded
    assert exact.mean().item() > 1.0 and 4 * noise.item() < 0.3 * exact.mean().item()
