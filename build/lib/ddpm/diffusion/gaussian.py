"""The Gaussian diffusion process of Ho et al. 2020, for any schedule and any of three model parameterisations.

    forward:    q(x_t | x_0)        = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)
    posterior:  q(x_{t-1} | x_t, x_0) = N(mu~_t(x_t, x_0), beta~_t I)
    model:      predicts eps (default), x_0, or v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x_0 (Salimans & Ho 2022)
    loss:       mean squared error of that prediction, optionally min-SNR-gamma weighted (Hang et al. 2023)
"""

import torch
from torch import nn

from ddpm.diffusion.schedules import NoiseSchedule
from ddpm.validation import number, one_of

PREDICTIONS = ("eps", "x0", "v")


def extract(values: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    """values[t] shaped to broadcast over a batch of `ndim`-dimensional images."""
    return values[t].reshape(-1, *([1] * (ndim - 1)))


class GaussianDiffusion(nn.Module):
    def __init__(self, schedule: NoiseSchedule, prediction: str = "eps", min_snr_gamma: float | None = None):
        super().__init__()
        one_of("module.prediction", prediction, PREDICTIONS)
        number("module.min_snr_gamma", min_snr_gamma, low=0, low_open=True, optional=True,
               hint=" for the plain DDPM loss (5 is the paper's)")
        self.schedule = schedule
        self.prediction = prediction
        self.timesteps = schedule.timesteps
        self._log_snr = schedule.log_snr()

        # Derived in float64, stored in float32 for the training hot path (q_sample, targets); sampling reads the
        # float64 schedule through alpha_bar instead.
        alphas_cumprod = schedule.alphas_cumprod
        buffers = {
            "sqrt_alphas_cumprod": alphas_cumprod.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1 - alphas_cumprod).sqrt(),
            "loss_weight": self._loss_weight(alphas_cumprod, prediction, min_snr_gamma),
        }
        for name, value in buffers.items():
            # Not persistent: they are a pure function of the schedule, which the checkpoint's config rebuilds.
            self.register_buffer(name, value.to(torch.float32), persistent=False)

    @staticmethod
    def _loss_weight(alphas_cumprod: torch.Tensor, prediction: str, min_snr_gamma: float | None) -> torch.Tensor:
        """Per-timestep weight that turns each parameterisation's MSE into min(SNR, gamma) times the x0 error.

        Unweighted eps-MSE equals SNR times the x0 error, so the nearly clean steps dominate the gradient; capping
        SNR at gamma balances the noise levels and speeds up convergence (Hang et al. 2023, eq. 8)."""
        if min_snr_gamma is None:
            return torch.ones_like(alphas_cumprod)
        snr = alphas_cumprod / (1 - alphas_cumprod)
        x0_error_per_target = {"eps": snr, "x0": torch.ones_like(snr), "v": snr + 1}[prediction]
        return snr.clamp(max=min_snr_gamma) / x0_error_per_target

    def _coef(self, name: str, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return extract(getattr(self, name), t, x.ndim)

    def alpha_bar(self, t):
        """alpha_bar at timestep t, float64 from the schedule: a Python float for an int t, a CPU tensor for a tensor
        of them; t = -1 is the clean data (alpha_bar = 1), where a sampler's last step lands. The one read of the
        schedule behind the samplers' steps, the posterior and every conversion between a network output, x0 and eps
        (improved-diffusion's GaussianDiffusion owns these the same way)."""
        table = self.schedule.alphas_cumprod
        if isinstance(t, int):
            return table[t].item() if t >= 0 else 1.0
        t = t.cpu()
        return torch.where(t >= 0, table[t.clamp(min=0)], torch.ones((), dtype=table.dtype))

    def log_snr(self, t: int) -> float:
        """log(alpha_bar_t / (1 - alpha_bar_t)) of timestep t (float64 schedule), e.g. for a guidance interval."""
        return self._log_snr[t].item()

    def timestep_of_log_snr(self, log_snr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For each log-SNR, the timestep whose log-SNR is nearest, and how far off it is."""
        table = self._log_snr
        distance = (table[None, :] - log_snr.double().cpu()[:, None]).abs()
        nearest = distance.argmin(1)
        return nearest, distance[torch.arange(len(nearest)), nearest]

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Sample x_t ~ q(x_t | x_0) in closed form."""
        a, s = self._coef("sqrt_alphas_cumprod", t, x0), self._coef("sqrt_one_minus_alphas_cumprod", t, x0)
        return a * x0 + s * noise

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the network is trained to output at (x_t, t)."""
        if self.prediction == "eps":
            return noise
        if self.prediction == "x0":
            return x0
        a, s = self._coef("sqrt_alphas_cumprod", t, x0), self._coef("sqrt_one_minus_alphas_cumprod", t, x0)
        return a * noise - s * x0

    def loss(self, model: nn.Module, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, labels=None, reduce=True,
             weighted=True):
        """Mean squared error between the network output and its target, times the min-SNR weight unless
        weighted=False (validation reports the plain error, comparable across weightings); per-sample when
        reduce=False."""
        x_t = self.q_sample(x0, t, noise)
        per_sample = (model(x_t, t, labels) - self.target(x0, noise, t)).pow(2).flatten(1).mean(1)
        if weighted:
            per_sample = per_sample * self.loss_weight[t]
        return per_sample.mean() if reduce else per_sample

    def coefficients(self, t: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sqrt(alpha_bar_t) and sqrt(1 - alpha_bar_t) from the float64 schedule, in x's dtype and device, shaped to
        broadcast over x: the one lookup behind every conversion between a network output, x0 and eps (float64
        inputs, as the likelihood uses, keep all their digits)."""
        alphas_cumprod = self.alpha_bar(t)

        def shaped(values: torch.Tensor) -> torch.Tensor:
            return values.to(x.device, x.dtype).reshape(-1, *([1] * (x.ndim - 1)))

        return shaped(alphas_cumprod.sqrt()), shaped((1 - alphas_cumprod).sqrt())

    def split_prediction(self, model_output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, clip: bool = False):
        """(x0, eps) implied by the model output at (x_t, t), whatever the parameterisation. clip=True clamps x0 to
        the data range [-1, 1] and gives the eps consistent with the clamped x0 (what the samplers step with)."""
        a, s = self.coefficients(t, x_t)
        if self.prediction == "eps":
            eps = model_output
            x0 = (x_t - s * eps) / a
        elif self.prediction == "x0":
            x0 = model_output
            eps = (x_t - a * x0) / s
        else:
            x0 = a * x_t - s * model_output
            eps = s * x_t + a * model_output
        if clip:
            x0 = x0.clamp(-1, 1)
            eps = (x_t - a * x0) / s
        return x0, eps

    def q_posterior(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, t_prev: torch.Tensor | None = None):
        """Mean and variance beta~ of q(x_{t_prev} | x_t, x_0), and the step's beta (the other reverse variance).

        t_prev = t - 1 (default) is the DDPM posterior. A larger gap is the posterior of the respaced process
        (Nichol & Dhariwal 2021, sec. 4), whose beta is 1 - alpha_bar_t / alpha_bar_{t_prev}. The coefficients are
        computed in float64 from the schedule: 1 - alpha_bar ratio loses digits in float32 when beta is ~1e-4."""
        t = t.cpu()
        ab = self.alpha_bar(t)
        ab_prev = self.alpha_bar(t - 1 if t_prev is None else t_prev)
        beta = 1 - ab / ab_prev
        coef_x0 = ab_prev.sqrt() * beta / (1 - ab)
        coef_xt = (1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)
        variance = beta * (1 - ab_prev) / (1 - ab)

        def shaped(values: torch.Tensor) -> torch.Tensor:
            return values.to(x_t.device, x_t.dtype).reshape(-1, *([1] * (x_t.ndim - 1)))

        return shaped(coef_x0) * x0 + shaped(coef_xt) * x_t, shaped(variance), shaped(beta)
