import pytest
import torch

from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.diffusion.schedules import CosineSchedule, LinearSchedule
from ddpm.errors import ConfigError


@pytest.mark.parametrize("schedule", [LinearSchedule(1000), CosineSchedule(1000)], ids=["linear", "cosine"])
def test_forward_noising_statistics(schedule):
    d = GaussianDiffusion(schedule)
    x0 = torch.full((20000, 1, 2, 2), 0.7)
    for t_value in (0, 250, 999):
        t = torch.full((len(x0),), t_value)
        xt = d.q_sample(x0, t, torch.randn_like(x0))
        ab = schedule.alphas_cumprod[t_value].item()
        assert xt.mean().item() == pytest.approx(0.7 * ab**0.5, abs=0.01)
        assert xt.std().item() == pytest.approx((1 - ab) ** 0.5, rel=0.02, abs=0.002)


@pytest.mark.parametrize("schedule", [LinearSchedule(1000), CosineSchedule(100)], ids=["linear", "cosine"])
def test_posterior_matches_bayes_rule(schedule):
    """q(x_{t-1} | x_t, x_0) ∝ q(x_t | x_{t-1}) q(x_{t-1} | x_0): a product of two Gaussians, in float64."""
    d = GaussianDiffusion(schedule)
    x0, xt = torch.randn(5, 1, 3, 3), torch.randn(5, 1, 3, 3)
    for t_value in (1, 10, schedule.timesteps // 2, schedule.timesteps - 1):
        beta = schedule.betas[t_value].item()
        ab_prev = schedule.alphas_cumprod[t_value - 1].item()
        precision = 1 / (1 - ab_prev) + (1 - beta) / beta
        expected_mean = (ab_prev**0.5 * x0.double() / (1 - ab_prev)
                         + (1 - beta) ** 0.5 * xt.double() / beta) / precision
        mean, variance, step_beta = d.q_posterior(x0, xt, torch.full((5,), t_value))
        torch.testing.assert_close(mean.double(), expected_mean, rtol=1e-5, atol=1e-6)
        assert variance[0].item() == pytest.approx(1 / precision, rel=1e-5)
        assert step_beta[0].item() == pytest.approx(beta, rel=1e-5)


def test_respaced_posterior_matches_bayes_rule():
    """Skipping from t to s < t - 1 is one Gaussian step with alpha = alpha_bar_t / alpha_bar_s."""
    schedule = CosineSchedule(1000)
    d = GaussianDiffusion(schedule)
    x0, xt = torch.randn(2, 1, 3, 3), torch.randn(2, 1, 3, 3)
    t, s = 800, 650
    ab_t, ab_s = schedule.alphas_cumprod[t].item(), schedule.alphas_cumprod[s].item()
    alpha = ab_t / ab_s
    precision = 1 / (1 - ab_s) + alpha / (1 - alpha)
    expected_mean = (ab_s**0.5 * x0.double() / (1 - ab_s) + alpha**0.5 * xt.double() / (1 - alpha)) / precision
    mean, variance, step_beta = d.q_posterior(x0, xt, torch.full((2,), t), torch.full((2,), s))
    torch.testing.assert_close(mean.double(), expected_mean, rtol=1e-5, atol=1e-6)
    assert variance[0].item() == pytest.approx(1 / precision, rel=1e-5)
    assert step_beta[0].item() == pytest.approx(1 - alpha, rel=1e-6)


def test_posterior_at_t0_returns_x0():
    d = GaussianDiffusion(LinearSchedule(1000))
    x0, xt = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    mean, variance, _ = d.q_posterior(x0, xt, torch.zeros(3, dtype=torch.long))
    torch.testing.assert_close(mean, x0)
    assert variance.abs().max() == 0


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_target_and_split_prediction_are_inverse(prediction):
    d = GaussianDiffusion(CosineSchedule(1000), prediction)
    x0, eps = torch.randn(8, 1, 4, 4), torch.randn(8, 1, 4, 4)
    t = torch.tensor([0, 1, 10, 100, 500, 900, 990, 998])
    xt = d.q_sample(x0, t, eps)
    x0_hat, eps_hat = d.split_prediction(d.target(x0, eps, t), xt, t)
    torch.testing.assert_close(x0_hat, x0, rtol=1e-3, atol=2e-3)
    torch.testing.assert_close(eps_hat, eps, rtol=1e-3, atol=2e-3)


def test_loss_is_zero_for_an_oracle_and_positive_otherwise():
    d = GaussianDiffusion(LinearSchedule(100))
    x0, noise, t = torch.randn(4, 1, 4, 4), torch.randn(4, 1, 4, 4), torch.tensor([0, 5, 50, 99])
    oracle = lambda x, t, labels: noise  # noqa: E731
    assert d.loss(oracle, x0, t, noise).item() == pytest.approx(0)
    assert d.loss(lambda x, t, labels: torch.zeros_like(x), x0, t, noise, reduce=False).shape == (4,)


def test_unknown_prediction_is_refused():
    with pytest.raises(ConfigError, match="eps, x0, v"):
        GaussianDiffusion(CosineSchedule(10), "score")


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_min_snr_loss_is_capped_snr_times_the_x0_error(prediction):
    d = GaussianDiffusion(CosineSchedule(1000), prediction, min_snr_gamma=5.0)
    x0, noise = torch.randn(6, 1, 4, 4), torch.randn(6, 1, 4, 4)
    t = torch.tensor([0, 50, 300, 600, 900, 999])
    output = torch.randn(6, 1, 4, 4)
    fixed = lambda x, t, labels: output  # noqa: E731  a network that always answers `output`
    weighted = d.loss(fixed, x0, t, noise, reduce=False)
    x0_hat, _ = d.split_prediction(output, d.q_sample(x0, t, noise), t)
    x0_error = (x0_hat - x0).pow(2).flatten(1).mean(1)
    ab = d.schedule.alphas_cumprod[t].float()
    torch.testing.assert_close(weighted, (ab / (1 - ab)).clamp(max=5.0) * x0_error, rtol=1e-3, atol=1e-5)
    # Validation reports the plain error of the target, the same with or without weighting.
    plain = GaussianDiffusion(CosineSchedule(1000), prediction).loss(fixed, x0, t, noise, reduce=False)
    torch.testing.assert_close(d.loss(fixed, x0, t, noise, reduce=False, weighted=False), plain)
    assert not torch.allclose(weighted, plain)


def test_min_snr_gamma_must_be_positive():
    with pytest.raises(ConfigError, match="min_snr_gamma=0"):
        GaussianDiffusion(CosineSchedule(10), "eps", min_snr_gamma=0)


@pytest.mark.parametrize("schedule", [LinearSchedule(1000), CosineSchedule(1000), CosineSchedule(300)], ids=repr)
def test_timestep_of_log_snr_is_the_nearest(schedule):
    d = GaussianDiffusion(schedule)
    wanted = torch.tensor([-6.0, 0.0, 5.0])
    t, distance = d.timestep_of_log_snr(wanted)
    table = schedule.log_snr()
    assert torch.allclose(distance, (table[t] - wanted.double()).abs())
    # no other timestep is nearer, and the table is monotone, so the neighbours bracket the value
    assert ((table - wanted.double()[:, None]).abs().min(1).values == distance).all()
    assert (distance < 0.1).all()
