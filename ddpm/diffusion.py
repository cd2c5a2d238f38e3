"""The Gaussian diffusion process of Ho et al. 2020, for any schedule and any of three model parameterisations.

    forward:    q(x_t | x_0)        = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)
    posterior:  q(x_{t-1} | x_t, x_0) = N(mu~_t(x_t, x_0), beta~_t I)
    model:      predicts eps (default), x_0, or v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0 (Salimans & Ho 2022)
"""

import torch
from torch import nn

from ddpm.schedules import NoiseSchedule
from ddpm.errors import ConfigError

PREDICTIONS = ("eps", "x0", "v")


def extract(values: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    """values[t] shaped to broadcast over a batch of `ndim`-dimensional images."""
    return values[t].reshape(-1, *([1] * (ndim - 1)))


class GaussianDiffusion(nn.Module):
    def __init__(self, schedule: NoiseSchedule, prediction: str = "eps"):
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ConfigError(f"unknown prediction target {prediction!r}: use one of {', '.join(PREDICTIONS)}")
        self.schedule = schedule
        self.prediction = prediction
        self.timesteps = schedule.timesteps

        # Derived in float64 and stored in float32: the model and data run in float32.
        betas = schedule.betas
        alphas_cumprod = schedule.alphas_cumprod
        alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
        posterior_variance = betas * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod)
        buffers = {
            "betas": betas,
            "alphas_cumprod": alphas_cumprod,
            "alphas_cumprod_prev": alphas_cumprod_prev,
            "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1 - alphas_cumprod).sqrt(),
            "posterior_variance": posterior_variance,
            # beta~_0 = 0: take log(beta~_1) there, as improved-diffusion does, so the log stays finite.
            "posterior_log_variance_clipped": torch.log(torch.cat([posterior_variance[1:2], posterior_variance[1:]])),
            "posterior_mean_coef_x0": betas * alphas_cumprod_prev.sqrt() / (1 - alphas_cumprod),
            "posterior_mean_coef_xt": (1 - alphas_cumprod_prev) * (1 - betas).sqrt() / (1 - alphas_cumprod),
        }
        for name, value in buffers.items():
            # Not persistent: they are a pure function of the schedule, which the checkpoint's config rebuilds.
            self.register_buffer(name, value.to(torch.float32), persistent=False)

    def _coef(self, name: str, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return extract(getattr(self, name), t, x.ndim)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Sample x_t ~ q(x_t | x_0) in closed form."""
        return self._coef("sqrt_alphas_cumprod", t, x0) * x0 + self._coef("sqrt_one_minus_alphas_cumprod", t, x0) * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network is trained to output at (x_t, t)."""
        if self.prediction == "eps":
            return noise
        if self.prediction == "x0":
            return x0
        return self._coef("sqrt_alphas_cumprod", t, x0) * noise - self._coef("sqrt_one_minus_alphas_cumprod", t, x0) * x0

    def loss(self, model: nn.Module, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, labels=None, reduce=True):
        """Mean squared error between the network output and its target; per-sample when reduce=False."""
        x_t = self.q_sample(x0, t, noise)
        per_sample = (model(x_t, t, labels) - self.target(x0, noise, t)).pow(2).flatten(1).mean(1)
        return per_sample.mean() if reduce else per_sample

    def split_prediction(self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
        """(x0, eps) implied by the model output at (x_t, t), whatever the parameterisation."""
        a = self._coef("sqrt_alphas_cumprod", t, x_t)
        s = self._coef("sqrt_one_minus_alphas_cumprod", t, x_t)
        if self.prediction == "eps":
            eps = model_output
            x0 = (x_t - s * eps) / a
        elif self.prediction == "x0":
            x0 = model_output
            eps = (x_t - a * x0) / s
        else:
            x0 = a * x_t - s * model_output
            eps = s * x_t + a * model_output
        return x0, eps

    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor):
        """Mean, variance and clipped log variance of q(x_{t-1} | x_t, x_0)."""
        mean = self._coef("posterior_mean_coef_x0", t, x_t) * x0 + self._coef("posterior_mean_coef_xt", t, x_t) * x_t
        return mean, self._coef("posterior_variance", t, x_t), self._coef("posterior_log_variance_clipped", t, x_t)
