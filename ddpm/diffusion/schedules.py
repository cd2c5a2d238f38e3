"""Noise schedules: each one defines beta_t for t = 0 .. T-1, everything else follows from it.

Adding a schedule = one subclass here + one yaml in conf/schedule/.
All tensors are float64: the products and ratios of many (1 - beta) terms lose several digits in float32.
"""

import math

import torch

from ddpm.errors import ConfigError
from ddpm.validation import integer, number, refuse


class NoiseSchedule:
    """Base class: subclasses implement `_betas()`; derived quantities are computed once, here."""

    def __init__(self, timesteps: int = 1000):
        self.timesteps = integer("schedule.timesteps", timesteps, low=2, hint=", e.g. 1000")
        betas = self._betas().to(torch.float64)
        if betas.shape != (self.timesteps,) or not bool(((betas > 0) & (betas < 1)).all()):
            raise ConfigError(f"{self!r} gives betas outside (0, 1) in float64: choose less extreme schedule.* values")
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)

    def _betas(self) -> torch.Tensor:
        raise NotImplementedError

    def log_snr(self) -> torch.Tensor:
        """log(alpha_bar / (1 - alpha_bar)): the signal-to-noise ratio in log space, per timestep."""
        return torch.log(self.alphas_cumprod) - torch.log1p(-self.alphas_cumprod)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(timesteps={self.timesteps})"


class LinearSchedule(NoiseSchedule):
    """Ho et al. 2020: betas linear in t. Both ends scale by 1000/T so that other T keep the same total noise
    (the rescaling of improved-diffusion)."""

    def __init__(self, timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
        number("schedule.beta_end", beta_end, 0, 1, low_open=True, high_open=True, hint=", e.g. 0.02")
        number("schedule.beta_start", beta_start, 0, beta_end, low_open=True, high_open=True,
               hint=" (below schedule.beta_end), e.g. 1e-4")
        self.beta_start, self.beta_end = beta_start, beta_end
        super().__init__(timesteps)

    def _betas(self) -> torch.Tensor:
        scale = 1000 / self.timesteps
        end = self.beta_end * scale
        if end >= 1:
            raise refuse("schedule.beta_end", self.beta_end,
                         f"a value below {self.timesteps / 1000:g} with schedule.timesteps={self.timesteps} "
                         f"(both ends scale "
                         f"by 1000/T), or use more timesteps")
        return torch.linspace(self.beta_start * scale, end, self.timesteps, dtype=torch.float64)

    def __repr__(self) -> str:
        return f"LinearSchedule(timesteps={self.timesteps}, beta_start={self.beta_start}, beta_end={self.beta_end})"


class AlphaBarSchedule(NoiseSchedule):
    """A schedule defined by a continuous alpha_bar(u), u in [0, 1]; beta_t = 1 - alpha_bar(t+1)/alpha_bar(t),
    capped at max_beta so that the last steps stay invertible (Nichol & Dhariwal 2021, eq. 17)."""

    def __init__(self, timesteps: int = 1000, max_beta: float = 0.999):
        number("schedule.max_beta", max_beta, 0, 1, low_open=True, high_open=True, hint=", e.g. 0.999")
        self.max_beta = max_beta
        super().__init__(timesteps)

    def alpha_bar(self, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _betas(self) -> torch.Tensor:
        u = torch.arange(self.timesteps + 1, dtype=torch.float64) / self.timesteps
        alpha_bar = self.alpha_bar(u)
        betas = 1 - alpha_bar[1:] / alpha_bar[:-1]
        return betas.clamp(max=self.max_beta)


class CosineSchedule(AlphaBarSchedule):
    """Nichol & Dhariwal 2021: alpha_bar(t) = f(t)/f(0), f(t) = cos^2(((t/T) + s)/(1 + s) * pi/2).
    The offset s keeps beta_0 from being vanishingly small."""

    def __init__(self, timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999):
        number("schedule.s", s, low=0, low_open=True, hint=", e.g. 0.008")
        self.s = s
        super().__init__(timesteps, max_beta)

    def alpha_bar(self, u: torch.Tensor) -> torch.Tensor:
        f = torch.cos((u + self.s) / (1 + self.s) * math.pi / 2) ** 2
        return f / math.cos(self.s / (1 + self.s) * math.pi / 2) ** 2

    def __repr__(self) -> str:
        return f"CosineSchedule(timesteps={self.timesteps}, s={self.s})"


class SigmoidSchedule(AlphaBarSchedule):
    """Jabri et al. 2022 ("Scalable Adaptive Computation"): alpha_bar follows a rescaled sigmoid of
    u*(end-start)+start over temperature tau; it spends more steps at mid noise levels than cosine."""

    def __init__(self, timesteps: int = 1000, start: float = -3.0, end: float = 3.0, tau: float = 1.0,
                 max_beta: float = 0.999):
        number("schedule.end", end, hint=", e.g. 3")
        number("schedule.start", start, high=end, high_open=True, hint=" (below schedule.end), e.g. -3")
        number("schedule.tau", tau, low=0, low_open=True, hint=", e.g. 1")
        self.start, self.end, self.tau = start, end, tau
        super().__init__(timesteps, max_beta)

    def alpha_bar(self, u: torch.Tensor) -> torch.Tensor:
        v_start = torch.sigmoid(torch.tensor(self.start / self.tau, dtype=torch.float64))
        v_end = torch.sigmoid(torch.tensor(self.end / self.tau, dtype=torch.float64))
        v = torch.sigmoid((u * (self.end - self.start) + self.start) / self.tau)
        return (v_end - v) / (v_end - v_start)

    def __repr__(self) -> str:
        return f"SigmoidSchedule(timesteps={self.timesteps}, start={self.start}, end={self.end}, tau={self.tau})"
