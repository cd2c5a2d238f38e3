"""Reverse-process samplers. Each one picks the timesteps it visits and how to step from x_t to x_{t_prev};
the loop, classifier-free guidance and x0 clipping are shared.

Guidance follows Ho & Salimans 2022: out = cond + w * (cond - uncond); w = 0 is plain conditional sampling.
The conditional and unconditional predictions come from one batched forward pass.
"""

import math
from dataclasses import dataclass, field

import torch

from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.errors import ConfigError
from ddpm.validation import integer, number, one_of


@dataclass
class SampleResult:
    images: torch.Tensor  # x_0 in [-1, 1]
    trajectory: list = field(default_factory=list)  # (t, x_t) pairs, first = pure noise, last = x_0


def guided_output(model, x: torch.Tensor, t: torch.Tensor, labels, guidance: float) -> torch.Tensor:
    if labels is None or guidance == 0:
        return model(x, t, labels)
    null = torch.full_like(labels, model.null_label)
    cond, uncond = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([labels, null])).chunk(2)
    return cond + guidance * (cond - uncond)


class Sampler:
    def timesteps(self, T: int) -> list[int]:
        """The timesteps visited, in decreasing order."""
        raise NotImplementedError

    def step(self, diffusion, x, x0, eps, t, t_prev, generator):
        raise NotImplementedError

    def reset(self):
        """Forget state carried between steps (multistep solvers)."""

    @torch.inference_mode()
    def sample(
        self,
        model,
        diffusion: GaussianDiffusion,
        noise: torch.Tensor,
        labels: torch.Tensor | None = None,
        guidance: float = 0.0,
        clip_x0: bool = True,
        generator: torch.Generator | None = None,
        trajectory_frames: int = 0,
        progress=None,
    ) -> SampleResult:
        """Run the reverse process from `noise`. Randomness comes only from `generator` (CPU), so a seed fixes
        the result. `progress` wraps the step iterator (e.g. tqdm)."""
        number("guidance", guidance, low=0, hint=" (0: no guidance; larger: more legible, less varied digits)")
        steps = self.timesteps(diffusion.timesteps)
        record = set()
        if trajectory_frames > 1:
            record = set(torch.linspace(0, len(steps) - 1, trajectory_frames - 1).round().long().tolist())
        self.reset()
        x = noise
        trajectory = [(diffusion.timesteps, x.cpu())] if record else []
        pairs = list(zip(steps, steps[1:] + [-1]))
        for i, (t_now, t_prev) in enumerate(progress(pairs) if progress else pairs):
            t = torch.full((x.shape[0],), t_now, device=x.device, dtype=torch.long)
            out = guided_output(model, x, t, labels, guidance)
            x0, eps = diffusion.split_prediction(out, x, t, clip=clip_x0)
            x = self.step(diffusion, x, x0, eps, t_now, t_prev, generator)
            if i in record:
                trajectory.append((max(t_prev, 0), x.cpu()))
        return SampleResult(x.clamp(-1, 1) if clip_x0 else x, trajectory)


def _randn_like(x: torch.Tensor, generator) -> torch.Tensor:
    # Drawn on the CPU so that a seed gives the same images on every device.
    return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)


def evenly_spaced(T: int, steps: int | None) -> list[int]:
    """`steps` timesteps from T-1 down to 0, evenly spaced (all T when steps is None)."""
    if steps is None:
        return list(range(T - 1, -1, -1))
    if steps > T:
        raise ConfigError(f"steps={steps} exceeds the schedule's {T} timesteps: use steps <= {T}")
    return torch.linspace(T - 1, 0, steps).round().long().tolist()


def _check_steps(steps, optional: bool = False) -> int | None:
    # The schedule's T is known only when sampling starts; evenly_spaced refuses steps > T then.
    allowed = "an integer from 1 to the schedule's timesteps" + (", or null for all of them" if optional else "")
    return integer("steps", steps, low=1, optional=optional, allowed=allowed)


class DDPMSampler(Sampler):
    """Ancestral sampling (Ho et al. 2020, Algorithm 2) over all T steps, or over `steps` evenly spaced ones with
    the respaced process's posterior (Nichol & Dhariwal 2021). `variance` picks the reverse variance:
    'posterior' (beta~_t, the lower bound) or 'beta' (beta_t, the upper bound)."""

    def __init__(self, steps: int | None = None, variance: str = "posterior"):
        self.steps = _check_steps(steps, optional=True)
        self.variance = one_of("sampler.variance", variance, ("posterior", "beta"))

    def timesteps(self, T: int) -> list[int]:
        return evenly_spaced(T, self.steps)

    def step(self, diffusion, x, x0, eps, t, t_prev, generator):
        batch = lambda value: torch.full((x.shape[0],), value, dtype=torch.long)  # noqa: E731
        mean, posterior_variance, beta = diffusion.q_posterior(x0, x, batch(t), batch(t_prev))
        if t_prev < 0:
            return mean
        variance = posterior_variance if self.variance == "posterior" else beta
        return mean + variance.sqrt() * _randn_like(x, generator)

    def __repr__(self) -> str:
        return f"DDPMSampler(steps={self.steps}, variance={self.variance!r})"


class DDIMSampler(Sampler):
    """Song et al. 2021: a non-Markovian reverse process over any `steps` <= T timesteps, evenly spaced from T-1
    down to 0. eta = 0 is deterministic; eta = 1 is DDPM with the posterior variance."""

    def __init__(self, steps: int = 50, eta: float = 0.0):
        self.steps = _check_steps(steps)
        # Above 1, sigma would exceed the noise level of the step's target and the formula stops being DDIM's.
        self.eta = number("sampler.eta", eta, 0, 1, hint=" (0: deterministic, 1: DDPM-like)")

    def timesteps(self, T: int) -> list[int]:
        return evenly_spaced(T, self.steps)

    def step(self, diffusion, x, x0, eps, t, t_prev, generator):
        ab = diffusion.schedule.alphas_cumprod[t].item()
        ab_prev = diffusion.schedule.alphas_cumprod[t_prev].item() if t_prev >= 0 else 1.0
        sigma = self.eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)) ** 0.5
        x_prev = ab_prev**0.5 * x0 + max(1 - ab_prev - sigma**2, 0.0) ** 0.5 * eps
        if sigma > 0 and t_prev >= 0:
            x_prev = x_prev + sigma * _randn_like(x, generator)
        return x_prev

    def __repr__(self) -> str:
        return f"DDIMSampler(steps={self.steps}, eta={self.eta})"


class DPMSolverSampler(Sampler):
    """DPM-Solver++(2M) (Lu et al. 2022): a second-order multistep solver of the diffusion ODE in the data
    (x0) prediction, stepping in lambda = log(alpha / sigma), over the same evenly spaced timesteps as DDIM.
    Deterministic; 10-20 steps compete with DDIM's 50. The first step is first order (no history yet), and so
    are the last two ("lower order final"): the step into t = 0, where lambda grows fastest and extrapolating
    from the previous step overshoots, and the one to the clean sample (lambda = infinity)."""

    def __init__(self, steps: int = 20):
        self.steps = _check_steps(steps)
        self.reset()

    def reset(self):
        self._previous = None  # (x0 prediction, step size h) of the step before

    def timesteps(self, T: int) -> list[int]:
        return evenly_spaced(T, self.steps)

    def step(self, diffusion, x, x0, eps, t, t_prev, generator):
        if t_prev < 0:
            return x0
        ab, ab_prev = diffusion.schedule.alphas_cumprod[t].item(), diffusion.schedule.alphas_cumprod[t_prev].item()
        alpha_prev, sigma, sigma_prev = ab_prev**0.5, (1 - ab) ** 0.5, (1 - ab_prev) ** 0.5
        h = 0.5 * (math.log(ab_prev / (1 - ab_prev)) - math.log(ab / (1 - ab)))
        denoised = x0
        if self._previous is not None and t_prev > 0:
            x0_before, h_before = self._previous
            r = h_before / h
            denoised = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_before
        self._previous = (x0, h)
        return (sigma_prev / sigma) * x - alpha_prev * math.expm1(-h) * denoised

    def __repr__(self) -> str:
        return f"DPMSolverSampler(steps={self.steps})"
